"""Strict reading of user YAML files (task files, predicate maps, dataset profiles) and the regex check
that keeps load-time and scan-time regex rules equal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import yaml

from benchmark.errors import UserError


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping key given twice; carries the key for the error's field."""

    def __init__(self, key, first_line: int, mark):
        self.key = key
        super().__init__(None, None, f"duplicate key {key!r} on line {mark.line + 1} "
                                     f"(first given on line {first_line})", mark)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a mapping key given twice (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable key: let the base class report it
                continue
            if first is not None:
                raise _DuplicateKey(key, first, key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml_file(path: str | Path) -> Any:
    """Read a user's YAML file strictly: UTF-8 only, valid YAML, no duplicate keys.

    Args:
        path: the YAML file (a task file or a predicates.yaml).

    Returns:
        The parsed document (None for an empty file).

    Raises:
        UserError: naming the file, the line (and key) that is wrong, and the fix.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read the file ({e.strerror or e})", file=path,
                        fix="check that the path exists and is a readable file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise UserError(f"not UTF-8 text (byte 0x{raw[e.start]:02x} on line {line})", file=path,
                        field=f"line {line}", fix="save the file with UTF-8 encoding") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as e:
        raise UserError(e.problem, file=path, field=str(e.key),
                        fix="give each key once; remove or merge the repeated one") from None
    except yaml.YAMLError as e:
        raise UserError(f"not valid YAML: {e}", file=path, fix="fix the YAML syntax") from None


def check_regex(pattern: str) -> None:
    """Raise ValueError unless polars (the linear-time engine that scans the data) accepts `pattern`.

    Python's `re` accepts look-around and backreferences, which polars rejects only at scan time,
    deep inside a run; checking with polars itself keeps the load-time and scan-time rules equal.
    """
    try:
        pl.select(pl.lit("", dtype=pl.String).str.contains(pattern))
    except Exception as e:  # noqa: BLE001 - polars raises ComputeError / PanicException variants
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip().startswith("error:")]
        why = lines[0].removeprefix("error:").strip() if lines else type(e).__name__
        raise ValueError(f"regex {pattern!r} is not supported by the linear-time regex engine "
                         f"(no look-around or backreferences): {why}") from None
