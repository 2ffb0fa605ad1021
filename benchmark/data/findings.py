"""Integrity findings: `Finding` (file, field, message, fix), the `Collector` every check writes
to, and the parquet footer reader the shard, split and sidecar checks share.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.errors import UserError


@dataclass(frozen=True)
class Finding:
    """One problem: where it is (file, field), what it is, and how to fix it."""

    level: str  # "error" | "warning" | "info" (worth knowing, nothing to fix in the map or the data format)
    file: str
    field: str | None
    message: str
    fix: str

    def render(self) -> str:
        """'LEVEL: file: field 'x': message' and a fix line (plain text, never console markup)."""
        where = self.file + (f": field '{self.field}'" if self.field else "")
        return f"{self.level.upper()}: {where}: {self.message}\n  fix: {self.fix}"

    def user_error(self, root: Path) -> UserError:
        """The finding as the UserError the CLI prints (exit 2)."""
        return UserError(self.message, file=root / self.file, field=self.field, fix=self.fix)


class Collector:
    """Accumulates findings with file paths relative to the cohort root."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.findings: list[Finding] = []

    def rel(self, p: Path) -> str:
        try:
            return Path(p).relative_to(self.root).as_posix()
        except ValueError:
            return str(p)

    def error(self, p: Path, field: str | None, message: str, fix: str) -> None:
        self.findings.append(Finding("error", self.rel(p), field, message, fix))

    def warn(self, p: Path, field: str | None, message: str, fix: str) -> None:
        self.findings.append(Finding("warning", self.rel(p), field, message, fix))

    def info(self, p: Path, field: str | None, message: str, fix: str) -> None:
        self.findings.append(Finding("info", self.rel(p), field, message, fix))

    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    def raise_first_error(self) -> None:
        """Raise the first error as a UserError (for readers that cannot go on)."""
        errs = self.errors()
        if errs:
            raise errs[0].user_error(self.root)


def short_error(e: Exception) -> str:
    """An exception's first line, for a finding's message."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def read_footer(c: Collector, f: Path, kind: str) -> pa.Schema | None:
    """The parquet schema of `f`, or None after recording an error (zero-byte, not parquet)."""
    try:
        if f.stat().st_size == 0:
            c.error(f, None, f"{kind} is an empty (zero-byte) file", "rewrite it with pyarrow or polars, "
                    "or delete it")
            return None
        return pq.read_schema(f)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a problem of the user's file
        c.error(f, None, f"{kind} is not a readable parquet file ({short_error(e)})",
                "rewrite it with pyarrow or polars (`df.write_parquet(path)`), or delete it")
        return None


def is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or (
        pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)))
