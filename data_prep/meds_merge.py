"""Adding events and files to an existing MEDS cohort in one transaction (the MIMIC-CXR and
MIMIC-IV-Note converters use it): raw CSV reading with clear errors, merging events into each
subject's existing shard (kept sorted, original column types), code metadata, and `run_edit`, which
stages every file, backs up what it replaces, re-runs the integrity check and restores the cohort
byte for byte on any error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.data.integrity import integrity_findings
from benchmark.errors import UserError


def raw_file(raw: Path, name: str, *, required: bool = True, fix: str = "") -> Path | None:
    """`raw/name`, or the same file uncompressed (`.csv`); UserError (or None) when neither exists."""
    for p in (raw / name, raw / name.removesuffix(".gz")):
        if p.is_file():
            return p
    if required:
        raise UserError("required MIMIC file not found", file=raw / name,
                        fix=fix or f"pass --raw the folder that holds {name} (the unmodified PhysioNet files)")
    return None


def read_csv(path: Path, columns: dict[str, pl.DataType], *, fix: str = "use the unmodified file from PhysioNet") -> pl.DataFrame:
    """Read the named columns of a (gzipped) CSV with the given types.

    Args:
        path: the file.
        columns: column name -> polars type, all required.
        fix: the fix sentence of the errors.

    Returns:
        The columns, in the given order.

    Raises:
        UserError: unreadable file, a missing column (named), or a value of the wrong type.
    """
    try:
        header = pl.read_csv(path, n_rows=0, infer_schema_length=0).columns
    except Exception as e:  # noqa: BLE001 - any unreadable file is a problem of the user's file
        raise UserError(f"cannot be read as CSV ({str(e).splitlines()[0][:200]})", file=path, fix=fix) from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise UserError(f"required column is missing (the file has: {', '.join(header[:20])})", file=path,
                        field=missing[0], fix=f"{fix}; it has the columns {', '.join(columns)}")
    raw = pl.read_csv(path, columns=list(columns), infer_schema_length=0)  # all text: we cast and report
    for col, dtype in columns.items():
        bad = raw.filter(pl.col(col).is_not_null() & pl.col(col).cast(dtype, strict=False).is_null())
        if bad.height:
            raise UserError(f"{bad.height} values are not {dtype} (e.g. {bad[col][0]!r})", file=path, field=col,
                            fix=fix)
    return raw.select(pl.col(c).cast(t) for c, t in columns.items())


class CohortEdit:
    """Stage file writes in a cohort, commit them together, or roll every change back.

    Each staged file is written to a hidden temp file next to its target (names that no `*.parquet`
    glob sees); commit() keeps a hard-link backup of every file it replaces, so rollback() restores
    the cohort byte for byte and removes the files and folders it created.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.staged: list[tuple[Path, Path]] = []     # (temp, target)
        self.done: list[tuple[Path, Path | None]] = []  # (target, backup or None when new)
        self.created: list[Path] = []                 # files and folders created outside staging

    def stage(self, target: Path, write) -> None:
        """Write `target` later: `write(tmp_path)` fills the temp file now."""
        self.mkdir(target.parent)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        self.staged.append((tmp, target))
        write(tmp)

    def mkdir(self, folder: Path) -> None:
        """Create `folder` (and parents), remembering what was created so a rollback removes it."""
        missing = [p for p in [folder, *folder.parents] if not p.exists()]
        for p in reversed(missing):
            p.mkdir()
            self.created.append(p)

    def commit(self) -> None:
        """Move every staged file into place (each replace is atomic; backups allow a rollback)."""
        for tmp, target in self.staged:
            backup = None
            if target.exists():
                backup = target.with_name(f".{target.name}.{os.getpid()}.bak")
                try:
                    os.link(target, backup)
                except OSError:
                    shutil.copy2(target, backup)
            os.replace(tmp, target)
            self.done.append((target, backup))
        self.staged = []

    def rollback(self) -> None:
        """Undo everything: restore replaced files, delete new files, temp files and created folders."""
        for target, backup in reversed(self.done):
            if backup is not None:
                os.replace(backup, target)
            else:
                target.unlink(missing_ok=True)
        for tmp, _ in self.staged:
            tmp.unlink(missing_ok=True)
        for p in reversed(self.created):
            if p.is_symlink() or p.is_file():
                p.unlink()
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()
        self.done, self.staged, self.created = [], [], []

    def finish(self) -> None:
        """Drop the backups after a successful commit."""
        for _, backup in self.done:
            if backup is not None:
                backup.unlink(missing_ok=True)
        self.done = []


def subject_shards(root: Path) -> pl.DataFrame:
    """subject_id -> shard path (str) of every subject with data in the cohort."""
    shards = sorted((Path(root) / "data").rglob("*.parquet"))
    if not shards:
        raise UserError("no data shards found", file=Path(root) / "data",
                        fix="pass --data the MEDS cohort built from MIMIC-IV (prepare mimic-iv first)")
    parts = [pl.scan_parquet(f).select(pl.col("subject_id").cast(pl.Int64)).unique()
             .with_columns(pl.lit(str(f)).alias("shard")) for f in shards]
    return pl.concat(pl.collect_all(parts))


def _write_arrow(df: pl.DataFrame, schema: pa.Schema, path: Path) -> None:
    """Write `df` with the shard's original arrow types where they still fit (MEDS readers expect them)."""
    table = df.to_arrow()
    try:
        text = schema.field("code").type if "code" in schema.names else pa.string()  # a new text_value: code's type
        fields = [schema.field(n) if n in schema.names else
                  table.schema.field(n).with_type(text) if pa.types.is_large_string(table.schema.field(n).type)
                  else table.schema.field(n) for n in table.column_names]
        table = table.cast(pa.schema(fields, metadata=schema.metadata))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError):
        pass  # keep polars' types; integrity_findings checks the result
    pq.write_table(table, path)


def merge_events(edit: CohortEdit, root: Path, events: pl.DataFrame, replace: pl.Expr, *,
                 add_text_value: bool = False) -> list[str]:
    """Merge new MEDS events into their subjects' existing shards (staged in `edit`).

    Args:
        edit: the transaction.
        root: the cohort folder.
        events: subject_id, time, code, and optionally text_value; every subject has a shard.
        replace: rows of the shards that the new events replace (e.g. earlier runs' codes).
        add_text_value: give shards without a text_value column a null one (so every shard has it).

    Returns:
        The rewritten shards (paths relative to the cohort).
    """
    where = subject_shards(root)
    events = events.join(where, on="subject_id", how="inner")
    rewritten = []
    for shard in where["shard"].unique().sort().to_list():
        f = Path(shard)
        schema = pq.read_schema(f)
        new = events.filter(pl.col("shard") == shard).drop("shard")
        lacks_text = add_text_value and "text_value" not in schema.names
        stale = pl.scan_parquet(f).filter(replace).select(pl.len()).collect().item()
        if new.height == 0 and not stale and not lacks_text:
            continue
        old = pl.read_parquet(f).filter(~replace)
        if lacks_text:
            old = old.with_columns(pl.lit(None, pl.String).alias("text_value"))
        new = new.select([pl.col(c).cast(t) if c in new.columns else pl.lit(None, t).alias(c)
                          for c, t in old.schema.items()])
        merged = pl.concat([old, new]).sort("subject_id", "time", nulls_last=False, maintain_order=True)
        edit.stage(f, lambda tmp, m=merged, s=schema: _write_arrow(m, s, tmp))
        rewritten.append(f.relative_to(root).as_posix())
    return rewritten


def add_code_metadata(edit: CohortEdit, root: Path, descriptions: dict[str, str]) -> None:
    """Add rows for new codes to metadata/codes.parquet (if the cohort has one), staged in `edit`."""
    f = Path(root) / "metadata" / "codes.parquet"
    if not f.exists():
        return
    codes = pl.read_parquet(f)
    known = set(codes["code"].to_list()) if "code" in codes.columns else set()
    rows = pl.DataFrame({"code": [c for c in descriptions if c not in known],
                         "description": [d for c, d in descriptions.items() if c not in known]})
    if rows.height == 0 or "code" not in codes.columns:
        return
    rows = rows.select([pl.col(c).cast(t) if c in rows.columns else
                        (pl.lit([], t) if isinstance(t, pl.List) else pl.lit(None, t)).alias(c)
                        for c, t in codes.schema.items()])
    schema = pq.read_schema(f)
    edit.stage(f, lambda tmp: _write_arrow(pl.concat([codes, rows]), schema, tmp))


def run_edit(root: Path, build) -> None:
    """Run `build(edit)` (which stages files), commit, re-run the integrity check; roll back on any error.

    Raises:
        UserError: from `build`, or the first integrity error of the changed cohort (then it is restored).
    """
    edit = CohortEdit(root)
    try:
        build(edit)
        edit.commit()
        errors = [f for f in integrity_findings(root) if f.level == "error"]
        if errors:
            e = errors[0]
            raise UserError(f"the cohort fails its integrity check after the change, so nothing was changed: "
                            f"{e.message}", file=Path(root) / e.file, field=e.field, fix=e.fix)
    except BaseException:
        edit.rollback()
        raise
    edit.finish()


# ---------------------------------------------------------------------------- CXR
