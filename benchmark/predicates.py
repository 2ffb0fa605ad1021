"""Named predicates: dataset code rules (predicates.yaml) and derived lab rules (in task files).

A dataset's ``predicates.yaml`` maps each name to one code rule (ACES style)::

    death: {code: MEDS_DEATH}
    metastasis: {prefix: [ICD10CM/C77, ICD10CM/C78, ICD10CM/C79]}
    anc: {code: LOINC/751-8}
    fever: {code: LOINC/8310-5, value_min: 38.3}

Task files add predicates that build on those names: value bounds on a named predicate
(``{of: anc, value_max: 500}``), unions (``{any_of_predicates: [mace_event, death]}``) and derived
lab rules that ACES cannot express (``kdigo_aki``, ``neutropenic_fever``). Built-in names that every
dataset has: ``_any_event`` (any timed event) and ``_record_start`` (first timed event).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from benchmark.durations import parse_duration
from benchmark.errors import UserError

BUILTIN_PREDICATES = ("_any_event", "_record_start")


# ---------------------------------------------------------------------------- strict YAML reading
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CodeRule(_Strict):
    """One dataset predicate: exactly one code matcher, optional inclusive numeric bounds."""

    code: str | None = None
    any_of: tuple[str, ...] | None = None
    prefix: str | tuple[str, ...] | None = None
    regex: str | None = None
    value_min: float | None = None
    value_max: float | None = None

    @model_validator(mode="after")
    def _one_matcher(self) -> "CodeRule":
        given = [k for k in ("code", "any_of", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of code, any_of, prefix, regex "
                             f"(got {', '.join(given) or 'none'})")
        if self.regex is not None:
            check_regex(self.regex)
        return self

    def code_expr(self) -> pl.Expr:
        """Polars boolean expression over the ``code`` column."""
        c = pl.col("code")
        if self.code is not None:
            return c == self.code
        if self.any_of is not None:
            return c.is_in(list(self.any_of))
        if self.prefix is not None:
            prefixes = (self.prefix,) if isinstance(self.prefix, str) else self.prefix
            e = c.str.starts_with(prefixes[0])
            for p in prefixes[1:]:
                e = e | c.str.starts_with(p)
            return e
        return c.str.contains(self.regex)

    def expr(self) -> pl.Expr:
        """Polars boolean expression over ``code`` and ``numeric_value`` (null-safe)."""
        e = self.code_expr()
        if self.value_min is not None:
            e = e & (pl.col("numeric_value") >= self.value_min).fill_null(False)
        if self.value_max is not None:
            e = e & (pl.col("numeric_value") <= self.value_max).fill_null(False)
        return e


class BoundedPredicate(_Strict):
    """A named predicate restricted to a numeric range, e.g. ``{of: anc, value_max: 500}``."""

    of: str
    value_min: float | None = None
    value_max: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> "BoundedPredicate":
        if self.value_min is None and self.value_max is None:
            raise ValueError("give value_min and/or value_max")
        return self


class UnionPredicate(_Strict):
    """Any of several named predicates, e.g. ``{any_of_predicates: [mace_event, death]}``."""

    any_of_predicates: tuple[str, ...]


class KdigoAki(_Strict):
    """KDIGO acute kidney injury from serum creatinine (mg/dL).

    An AKI event is a creatinine measurement at time t with either
    value - min(creatinine in [t - abs_window, t)) >= abs_rise  (0.3 mg/dL in 48 h), or
    value / min(creatinine in [t - rel_window, t)) >= rel_rise  (1.5x the 7-day baseline).
    """

    creatinine: str = "creatinine"
    abs_rise: float = 0.3
    abs_window: str = "48h"
    rel_rise: float = 1.5
    rel_window: str = "7d"

    @field_validator("abs_window", "rel_window")
    @classmethod
    def _dur(cls, v: str) -> str:
        parse_duration(v)
        return v


class NeutropenicFever(_Strict):
    """Neutropenic fever: ANC < anc_max with temperature >= temp_min within ``within`` of each other.

    The event time is the later of the two measurements (when both facts are known).
    """

    anc: str = "anc"
    temperature: str = "temperature"
    anc_max: float = 500.0
    temp_min: float = 38.3
    within: str = "24h"

    @field_validator("within")
    @classmethod
    def _dur(cls, v: str) -> str:
        parse_duration(v)
        return v


class DerivedRule(_Strict):
    """Task-local predicate: exactly one of the forms below."""

    of: str | None = None
    value_min: float | None = None
    value_max: float | None = None
    any_of_predicates: tuple[str, ...] | None = None
    kdigo_aki: KdigoAki | None = None
    neutropenic_fever: NeutropenicFever | None = None

    @model_validator(mode="after")
    def _one_form(self) -> "DerivedRule":
        forms = [k for k in ("of", "any_of_predicates", "kdigo_aki", "neutropenic_fever")
                 if getattr(self, k) is not None]
        if len(forms) != 1:
            raise ValueError("a task predicate needs exactly one of: of (+ value_min/value_max), "
                             f"any_of_predicates, kdigo_aki, neutropenic_fever (got {forms or 'none'})")
        if self.of is None and (self.value_min is not None or self.value_max is not None):
            raise ValueError("value_min/value_max only go with 'of'")
        if self.of is not None and self.value_min is None and self.value_max is None:
            raise ValueError("'of' needs value_min and/or value_max")
        return self

    def inputs(self) -> tuple[str, ...]:
        """Names of the predicates this rule reads."""
        if self.of is not None:
            return (self.of,)
        if self.any_of_predicates is not None:
            return tuple(self.any_of_predicates)
        if self.kdigo_aki is not None:
            return (self.kdigo_aki.creatinine,)
        assert self.neutropenic_fever is not None
        return (self.neutropenic_fever.anc, self.neutropenic_fever.temperature)


def _validation_message(err: ValidationError) -> tuple[str, str]:
    first = err.errors()[0]
    loc = ".".join(str(x) for x in first["loc"])
    return loc, first["msg"]


def load_predicate_map(path: str | Path) -> dict[str, CodeRule]:
    """Read a dataset's predicates.yaml (name -> code rule).

    Args:
        path: the YAML file.

    Returns:
        Mapping of predicate name to CodeRule.

    Raises:
        UserError: naming the file and the predicate that is malformed.
    """
    path = Path(path)
    if not path.exists():
        raise UserError("predicates file not found", file=path,
                        fix="put a predicates.yaml in the cohort folder or pass --predicates FILE")
    raw = read_yaml_file(path) or {}
    if not isinstance(raw, dict):
        raise UserError("expected a mapping of predicate name -> rule", file=path,
                        fix="write one 'name: {code: ...}' entry per line")
    out: dict[str, CodeRule] = {}
    for name, rule in raw.items():
        if not isinstance(rule, dict):
            raise UserError("a rule must be a mapping such as {code: MEDS_DEATH}", file=path,
                            field=str(name), fix="write the rule as {code|any_of|prefix|regex: ...}")
        try:
            out[str(name)] = CodeRule.model_validate(rule)
        except ValidationError as e:
            loc, msg = _validation_message(e)
            fix = ("rewrite the regex without look-around or backreferences (or list the codes with any_of)"
                   if "linear-time regex engine" in msg
                   else "allowed keys: code, any_of, prefix, regex, value_min, value_max")
            raise UserError(msg.removeprefix("Value error, "), file=path, field=f"{name}.{loc}".rstrip("."),
                            fix=fix) from None
    return out


Kind = Literal["code", "bounded", "union", "kdigo_aki", "neutropenic_fever", "builtin"]


def predicate_rules_digest(rules: dict[str, Any]) -> dict[str, Any]:
    """JSON-able view of resolved rules, for hashing label caches."""
    return {k: (v.model_dump(exclude_none=True) if isinstance(v, BaseModel) else v)
            for k, v in sorted(rules.items())}
