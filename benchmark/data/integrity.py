"""Cohort integrity: the checks `validate` and `run` share (one function, two callers).

`integrity_findings(root)` returns every integrity finding (errors and warnings) of a cohort folder:

- data shards: readable parquet; the required MEDS columns (REQUIRED_COLUMNS) in every shard with
  the right types (never read as nulls when absent); times parseable; no null subject or code;
  codes valid UTF-8; sorted; each subject in one shard; NaN/inf numeric values (a warning: they
  are read as null, "no value", so they never reach a model);
- subject splits: readable, both columns present, each subject listed once and in one split, every
  subject with data has a split, a `train` and a `held_out` split exist;
- modality sidecars: readable parquet, required columns, embeddings of one size without NaN/inf,
  image paths relative and inside the cohort folder (and present);
- null-time rows: a row with a null time is a static fact only when its code never occurs with a
  time and no task uses it as an index, outcome or censoring event (`nonstatic_null_codes`); other
  null-time rows are reported (a warning) and the cohort reader drops them from model inputs;
- the predicate map loads.

`validate` prints all findings and adds slower, advisory checks (code metadata, events after death,
date-only times, predicates matching nothing). `run` calls `require_integrity(cohort)` before any
label extraction: any error refuses the cohort with the same messages (UserError, exit 2); a
passed check is cached by the cohort fingerprint so repeated runs do not re-scan.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.errors import UserError
from benchmark.paths import cache_dir, tasks_dir
from benchmark.predicates import CodeRule, load_predicate_map
from benchmark.task_registry import load_tasks

if TYPE_CHECKING:  # only for annotations: cohort.py imports this module
    from benchmark.data.cohort import Cohort

CHECK_VERSION = "1"
# MEDS DataSchema columns MEHR-Bench needs in every shard. MEDS lets an ETL omit numeric_value, but
# reading a shard without it as "all values null" silently changes value-based labels (AKI,
# neutropenic fever), so it is required here; text_value is optional (absent = no text).
REQUIRED_COLUMNS = ("subject_id", "time", "code", "numeric_value")
OPTIONAL_COLUMNS = ("text_value",)
REQUIRED_SPLITS = ("train", "held_out")
STANDARD_SPLITS = ("train", "tuning", "held_out")
DEATH_CODE = "MEDS_DEATH"  # MEDS's death code; the label extractor censors on it whatever the task says
MAX_LISTED = 5  # codes named in one message


@dataclass(frozen=True)
class Finding:
    """One problem: where it is (file, field), what it is, and how to fix it."""

    level: str  # "error" | "warning"
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

    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    def raise_first_error(self) -> None:
        """Raise the first error as a UserError (for readers that cannot go on)."""
        errs = self.errors()
        if errs:
            raise errs[0].user_error(self.root)


def _short(e: Exception) -> str:
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
        c.error(f, None, f"{kind} is not a readable parquet file ({_short(e)})",
                "rewrite it with pyarrow or polars (`df.write_parquet(path)`), or delete it")
        return None


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or (
        pa.types.is_dictionary(t) and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)))


# ---------------------------------------------------------------------------- data shards
CASTS = {"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String, "numeric_value": pl.Float32,
         "text_value": pl.String}
_CAST_OPTIONS = dict(integer_cast="upcast", float_cast="downcast", datetime_cast=["nanosecond-downcast"])


def scan_shards(files: list[Path], columns: tuple[str, ...],
                schemas: dict[Path, pa.Schema] | None = None) -> pl.LazyFrame:
    """Lazy scan of MEDS shards with one schema (CASTS) whatever each shard wrote.

    Shards whose footers agree are read in one multi-file scan (the fast path); shards that differ
    (time units, extra or optional columns) are scanned one by one and concatenated. A column in
    OPTIONAL_COLUMNS that a shard lacks is null; required columns are checked by check_shard_footer.
    `schemas` (file -> footer schema) saves re-reading footers.
    """
    schemas = [(schemas or {}).get(f) or pq.read_schema(f) for f in files]
    wanted = [c for c in columns if c in CASTS]
    first = {c: schemas[0].field(c).type for c in wanted if c in schemas[0].names}
    same = all({c: s.field(c).type for c in wanted if c in s.names} == first for s in schemas)
    if same and all(c in first for c in wanted):
        lf = pl.scan_parquet(files, extra_columns="ignore", cast_options=pl.ScanCastOptions(**_CAST_OPTIONS))
        return lf.select([pl.col(c).cast(CASTS[c]) for c in columns])
    parts = [pl.scan_parquet(f).select([pl.col(c).cast(CASTS[c]) if c in s.names else pl.lit(None, CASTS[c]).alias(c)
                                        for c in columns]) for f, s in zip(files, schemas)]
    return pl.concat(parts, how="vertical")


def check_shard_footer(c: Collector, f: Path) -> bool:
    """Readable parquet with the required MEDS columns of the right types. Returns True if usable."""
    schema = read_footer(c, f, "data shard")
    if schema is None:
        return False
    names = set(schema.names)
    missing = [col for col in REQUIRED_COLUMNS if col not in names]
    for col in missing:
        extra = (" (MEDS lets an ETL omit it, but a missing column would be read as 'no values' and "
                 "silently change value-based labels)" if col == "numeric_value" else "")
        c.error(f, col, f"required MEDS column is missing{extra}",
                f"add '{col}' to this shard (MEDS DataSchema: subject_id int64, time timestamp[us], code string, "
                "numeric_value float32, null where absent)")
    if missing:
        return False
    ok = True
    t = schema.field("subject_id").type
    if not pa.types.is_integer(t):
        c.error(f, "subject_id", f"has type {t}, MEDS requires int64", "cast subject_id to int64")
        ok = False
    t = schema.field("time").type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        msg = "is stored as text; MEDS requires timestamp[us]"
        try:
            sample = pl.scan_parquet(f).select(pl.col("time")).drop_nulls().head(100_000).collect()["time"]
            bad = sample.filter(sample.str.to_datetime(strict=False).is_null())
            if bad.len():
                msg += f" and {bad.len()} values cannot be parsed as times (e.g. {bad[0]!r})"
        except Exception:  # noqa: BLE001 - the type error below is reported either way
            pass
        c.error(f, "time", msg, "convert the column with e.g. polars `.str.to_datetime()` and "
                                "write it as timestamp[us]; fix or drop unparseable values")
        ok = False
    elif not pa.types.is_timestamp(t):
        c.error(f, "time", f"has type {t}, MEDS requires timestamp[us]", "cast time to timestamp[us]")
        ok = False
    elif t.unit != "us":
        c.warn(f, "time", f"has unit {t.unit}; MEDS uses microseconds (read as microseconds)",
               "cast time to timestamp[us]")
    if not _is_string(schema.field("code").type):
        c.error(f, "code", f"has type {schema.field('code').type}, MEDS requires string", "cast code to string")
        ok = False
    t = schema.field("numeric_value").type
    if pa.types.is_float64(t):
        c.error(f, "numeric_value", "is float64; MEDS DataSchema requires float32",
                "cast numeric_value to float32 (pl.col('numeric_value').cast(pl.Float32))")
        ok = False
    elif not (pa.types.is_floating(t) or pa.types.is_null(t)):
        c.error(f, "numeric_value", f"has type {t}; MEDS requires float32", "cast numeric_value to float32")
        ok = False
    if "text_value" in names and not (_is_string(schema.field("text_value").type)
                                      or pa.types.is_null(schema.field("text_value").type)):
        c.error(f, "text_value", f"has type {schema.field('text_value').type}; MEDS requires string",
                "cast text_value to string")
        ok = False
    return ok


def check_shard_contents(c: Collector, f: Path) -> pl.DataFrame | None:
    """Nulls, UTF-8, ordering and NaN/inf of one shard. Returns its unique subject ids (None if unreadable)."""
    lf = pl.scan_parquet(f).select(pl.col("subject_id").cast(pl.Int64), pl.col("time").cast(pl.Datetime("us")),
                                   pl.col("code").cast(pl.String), pl.col("numeric_value").cast(pl.Float32))
    try:
        stats, order, subjects = pl.collect_all([
            lf.select(
                pl.col("subject_id").null_count().alias("null_sid"),
                pl.col("code").null_count().alias("null_code"),
                (pl.col("subject_id").diff().fill_null(0) < 0).sum().alias("unsorted_sid"),
                (pl.col("numeric_value").is_nan() | pl.col("numeric_value").is_infinite()).sum().alias("nonfinite"),
            ),
            # within a subject, timed events must not go back in time (null-time rows are ignored)
            lf.filter(pl.col("time").is_not_null()).select(
                ((pl.col("time").diff().dt.total_microseconds() < 0)
                 & (pl.col("subject_id") == pl.col("subject_id").shift(1))).fill_null(False).sum().alias("unsorted_t")),
            lf.select(pl.col("subject_id").unique()),
        ])
    except Exception as e:  # noqa: BLE001 - e.g. invalid UTF-8 in a string column
        utf = "utf-8" in str(e).lower()
        c.error(f, "code" if utf else None,
                "holds text that is not valid UTF-8" if utf else f"cannot be read ({_short(e)})",
                "re-encode the strings as UTF-8 (MEDS codes are UTF-8 strings) and rewrite the shard" if utf
                else "rewrite the shard with pyarrow or polars")
        return None
    s = stats.row(0, named=True) | order.row(0, named=True)
    if s["null_sid"]:
        c.error(f, "subject_id", f"{s['null_sid']} rows have no subject_id", "drop or fill those rows")
    if s["null_code"]:
        c.error(f, "code", f"{s['null_code']} rows have no code", "drop those rows or give them a code")
    if s["unsorted_sid"]:
        c.error(f, "subject_id", "rows are not sorted by subject_id", "sort each shard by subject_id, time")
    if s["unsorted_t"]:
        c.error(f, "time", f"{s['unsorted_t']} events are out of time order within their subject",
                "sort each shard by subject_id, time")
    if s["nonfinite"]:
        c.warn(f, "numeric_value", f"{s['nonfinite']} values are NaN or infinite; they are read as null "
               "(no value) and never reach a model or a value-based label",
               "write null for a missing value, and fix infinite values at the source")
    return subjects.with_columns(pl.lit(c.rel(f)).alias("shard"))


def check_shards(c: Collector, root: Path) -> tuple[list[Path], pl.DataFrame]:
    """Every data shard: footer, contents, one shard per subject, consistent optional columns.

    Returns:
        (usable shards, subject_id -> shard table of their subjects)
    """
    empty = pl.DataFrame(schema={"subject_id": pl.Int64, "shard": pl.String})
    shards = sorted((root / "data").rglob("*.parquet"))
    if not shards:
        c.error(root / "data", None, "no parquet shards found", "write data/<split>/<shard>.parquet files")
        return [], empty
    good = [f for f in shards if check_shard_footer(c, f)]
    parts = [p for p in (check_shard_contents(c, f) for f in good) if p is not None]
    subjects = pl.concat(parts) if parts else empty
    multi = subjects.group_by("subject_id").agg(pl.len().alias("n")).filter(pl.col("n") > 1)
    if multi.height:
        c.error(root / "data", "subject_id", f"{multi.height} subjects appear in more than one shard "
                f"(e.g. {multi['subject_id'].min()})", "keep all events of a subject in one shard")
    with_text = [f for f in good if "text_value" in pq.read_schema(f).names]
    if with_text and len(with_text) < len(good):
        lacking = next(f for f in good if f not in with_text)
        c.warn(lacking, "text_value", f"{len(good) - len(with_text)} of {len(good)} shards have no text_value; "
               "their text is read as null", "add a null text_value column if those shards truly have no text")
    return good, subjects


# ---------------------------------------------------------------------------- splits
def check_splits(c: Collector, root: Path, data_subjects: pl.DataFrame) -> None:
    """Subject splits: readable, SubjectSplitSchema columns, disjoint and unique, complete, train + held_out."""
    sp = root / "metadata" / "subject_splits.parquet"
    fix_schema = "write metadata/subject_splits.parquet with columns subject_id (int64), split (string)"
    if not sp.exists():
        c.error(sp, None, "subject splits file is missing", fix_schema)
        return
    schema = read_footer(c, sp, "subject splits file")
    if schema is None:
        return
    missing = [col for col in ("subject_id", "split") if col not in schema.names]
    for col in missing:
        c.error(sp, col, "required column is missing", "SubjectSplitSchema: subject_id int64, split string")
    if missing:
        return
    if not pa.types.is_integer(schema.field("subject_id").type):
        c.error(sp, "subject_id", f"has type {schema.field('subject_id').type}", "cast subject_id to int64")
        return
    if not _is_string(schema.field("split").type):
        c.error(sp, "split", f"has type {schema.field('split').type}", "store split names as strings")
        return
    try:
        splits = pl.read_parquet(sp, columns=["subject_id", "split"]).with_columns(pl.col("subject_id").cast(pl.Int64),
                                                                                 pl.col("split").cast(pl.String))
    except Exception as e:  # noqa: BLE001
        c.error(sp, None, f"cannot be read ({_short(e)})", fix_schema)
        return
    if splits["subject_id"].null_count() or splits["split"].null_count():
        c.error(sp, "split", "some rows have no subject_id or no split", "give every row a subject_id and a split")
    per = splits.group_by("subject_id").agg(pl.col("split").n_unique().alias("k"), pl.len().alias("n"),
                                            pl.col("split").unique().sort().alias("names"))
    two = per.filter(pl.col("k") > 1).sort("subject_id")
    if two.height:
        ex = two.row(0, named=True)
        c.error(sp, "split", f"{two.height} subjects are in more than one split (e.g. subject {ex['subject_id']} "
                f"in {', '.join(ex['names'])}); a subject in train and held_out inflates every test metric",
                "give each subject exactly one split")
    dup = per.filter((pl.col("k") == 1) & (pl.col("n") > 1)).sort("subject_id")
    if dup.height:
        c.error(sp, "subject_id", f"{dup.height} subjects are listed more than once in the same split "
                f"(e.g. subject {dup['subject_id'][0]})", "deduplicate the rows (one row per subject)")
    names = set(splits["split"].drop_nulls().unique().to_list())
    for need in REQUIRED_SPLITS:
        if need not in names:
            c.error(sp, "split", f"no subject is in the {need!r} split (splits present: {sorted(names) or 'none'})",
                    f"assign subjects to {', '.join(STANDARD_SPLITS)}; models train on 'train' and are "
                    "scored on 'held_out'")
    if "tuning" not in names and names:
        c.warn(sp, "split", "no 'tuning' split; thresholds and early stopping have no validation data",
               "assign some subjects to 'tuning'")
    odd = names - set(STANDARD_SPLITS)
    if odd:
        c.warn(sp, "split", f"non-standard split names {sorted(odd)}; their subjects are not used",
               "use train, tuning and held_out so the benchmark knows which to train and test on")
    no_split = data_subjects.join(splits.select("subject_id"), on="subject_id", how="anti")
    if no_split.height:
        c.error(sp, "subject_id", f"{no_split.height} subjects in data/ have no split "
                f"(e.g. {no_split['subject_id'].min()})", "add them to subject_splits.parquet")


# ---------------------------------------------------------------------------- modalities
def inside_root(root: Path, rel: str) -> Path | None:
    """`root / rel` if `rel` is a relative path that stays inside root, else None.

    The check is on the path value (what a sidecar row can say): absolute paths, drive letters or
    schemes, backslashes and '..' segments are refused. A symlink that sits inside the cohort
    folder (e.g. `images -> /data/mimic-cxr-jpg`, the usual way to point a cohort at a large image
    store) was put there by the cohort's owner and is followed.
    """
    if not isinstance(rel, str) or pl.select(escaping_paths(pl.lit(rel))).item():
        return None
    return Path(root) / rel


def check_modality(c: Collector, root: Path, f: Path) -> None:
    """One sidecar: readable, subject_id + time + (embedding | path), finite embeddings, confined paths."""
    schema = read_footer(c, f, "modality file")
    if schema is None:
        return
    names = set(schema.names)
    for col in ("subject_id", "time"):
        if col not in names:
            c.error(f, col, "required sidecar column is missing",
                    "a modality table has subject_id, time, and embedding or path")
    if "embedding" not in names and "path" not in names:
        c.error(f, None, "has neither 'embedding' nor 'path'", "add embedding (fixed-size list<float32>) "
                "or path (file relative to the cohort folder)")
    try:
        if "embedding" in names:
            _check_embeddings(c, f, schema.field("embedding").type)
        if "time" in names and f.stem != "prs":
            t = schema.field("time").type
            if not pa.types.is_timestamp(t):
                c.error(f, "time", f"has type {t}", "cast time to timestamp[us]")
            else:
                nulls = pl.scan_parquet(f).select(pl.col("time").null_count()).collect().item()
                if nulls:
                    c.warn(f, "time", f"{nulls} studies have no time; they will be visible at every prediction "
                           "time", "give time-stamped studies their acquisition time (null only for static data "
                           "such as prs)")
        if "path" in names:
            _check_paths(c, root, f)
    except Exception as e:  # noqa: BLE001 - e.g. invalid UTF-8 in a path
        c.error(f, None, f"cannot be read ({_short(e)})", "rewrite the modality file with pyarrow or polars")


def _check_embeddings(c: Collector, f: Path, t: pa.DataType) -> None:
    if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
        c.error(f, "embedding", f"has type {t}", "store embeddings as fixed-size list<float32>")
        return
    if not (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        c.error(f, "embedding", f"has element type {t.value_type}", "store embeddings as fixed-size list<float32>")
        return
    emb = pl.col("embedding").cast(pl.List(pl.Float64))  # fixed-size lists arrive as polars Array
    stats = pl.scan_parquet(f).select(
        emb.list.len().n_unique().alias("sizes"),
        emb.list.eval(pl.element().is_finite().not_()).list.any().fill_null(False).sum().alias("nonfinite"),
    ).collect()
    if not pa.types.is_fixed_size_list(t) and stats["sizes"][0] > 1:
        c.error(f, "embedding", "embeddings have different lengths", "use one size per modality")
    if stats["nonfinite"][0]:
        c.error(f, "embedding", f"{stats['nonfinite'][0]} embeddings contain NaN or infinite values; a model "
                "would train on them", "recompute those embeddings, or drop their rows (the study is then missing)")


def escaping_paths(paths: pl.Expr) -> pl.Expr:
    """True where a path string is absolute, has a '..' segment, a backslash or a scheme/drive
    (vectorized, so a sidecar of 100k images is checked in milliseconds)."""
    return (paths.str.starts_with("/") | paths.str.contains(r"(^|/)\.\.(/|$)") | paths.str.contains("\\", literal=True)
            | paths.str.contains(r"^[^/]*:") | (paths.str.len_chars() == 0))


def _check_paths(c: Collector, root: Path, f: Path) -> None:
    paths = pl.scan_parquet(f).select(pl.col("path").cast(pl.String)).drop_nulls().unique(maintain_order=True)
    flagged = paths.with_columns(escaping_paths(pl.col("path")).alias("bad")).collect()
    outside = flagged.filter(pl.col("bad"))["path"]
    if outside.len():
        c.error(f, "path", f"{outside.len()} paths are absolute or lead outside the cohort "
                f"folder (e.g. {outside[0]!r})", "store each path relative to the cohort folder, inside it "
                "(e.g. images/cxr/123.png); never absolute, never with '..'")
    first = flagged.filter(~pl.col("bad"))["path"].head(200).to_list()
    gone = [p for p in first if not (root / p).exists()]
    if gone:
        c.error(f, "path", f"{len(gone)} of the first {len(first)} files do not exist (e.g. {gone[0]})",
                "paths are relative to the cohort folder; copy the files or fix the paths")


def check_modalities(c: Collector, root: Path) -> None:
    d = root / "modalities"
    if d.is_dir():
        for f in sorted(d.glob("*.parquet")):
            check_modality(c, root, f)


# ---------------------------------------------------------------------------- null-time rows
def label_code_rules(predicates_file: Path) -> dict[str, tuple[CodeRule, list[str]]]:
    """Dataset predicates that some task uses as index / outcome / censoring: name -> (rule, task names).

    A missing predicate map gives {} (no task can be labeled then); an invalid one raises UserError.
    """
    if not Path(predicates_file).exists():
        return {}
    rules = load_predicate_map(predicates_file)
    out: dict[str, tuple[CodeRule, list[str]]] = {}
    for name, task in load_tasks().items():
        for p in sorted(task.label_event_predicates()):
            if p in rules:
                out.setdefault(p, (rules[p], []))[1].append(name)
    return out


def nonstatic_null_codes(shards: list[Path], predicates_file: Path) -> dict[str, dict]:
    """Codes whose null-time rows may not be read as static facts.

    A code is static only if it never occurs with a time and no task uses it as an index, outcome or
    censoring event (MEDS_DEATH always counts as an outcome: the label extractor censors on it).

    Args:
        shards: the data shards (already checked for the required columns).
        predicates_file: the cohort's predicate map (task predicates are resolved through it).

    Returns:
        code -> {"rows": null-time rows, "timed": rows with a time, "why": reason}, sorted by code.
    """
    if not shards:
        return {}
    lf = scan_shards(shards, ("time", "code"))
    nulls = (lf.filter(pl.col("time").is_null()).group_by("code").agg(pl.len().alias("rows"))
             .collect(engine="streaming"))
    if nulls.height == 0:
        return {}
    timed = (lf.filter(pl.col("time").is_not_null() & pl.col("code").is_in(nulls["code"].to_list()))
             .group_by("code").agg(pl.len().alias("timed")).collect(engine="streaming"))
    table = nulls.join(timed, on="code", how="left").with_columns(pl.col("timed").fill_null(0)).sort("code")
    used = label_code_rules(predicates_file)
    uses: dict[str, list[str]] = {}
    for pname, (rule, tasks) in used.items():
        for code in table.filter(rule.code_expr())["code"].to_list():
            uses.setdefault(code, []).append(f"predicate {pname!r} of {tasks[0]}"
                                             + (f" and {len(tasks) - 1} more task(s)" if len(tasks) > 1 else ""))
    out = {}
    for r in table.iter_rows(named=True):
        why = []
        if r["timed"]:
            why.append(f"also occurs with a time ({r['timed']} rows)")
        if r["code"] == DEATH_CODE:
            why.append("is the MEDS death code (an outcome)")
        if r["code"] in uses:
            why.append("is an index/outcome/censoring event (" + "; ".join(uses[r["code"]][:2]) + ")")
        if why:
            out[r["code"]] = {"rows": int(r["rows"]), "timed": int(r["timed"]), "why": "; ".join(why)}
    return out


def null_time_message(blocked: dict[str, dict]) -> str:
    """One sentence naming the dropped null-time rows: total, and the first codes with counts and reasons."""
    total = sum(v["rows"] for v in blocked.values())
    items = sorted(blocked.items(), key=lambda kv: -kv[1]["rows"])
    listed = "; ".join(f"{code}: {v['rows']} rows, {v['why']}" for code, v in items[:MAX_LISTED])
    more = f"; and {len(items) - MAX_LISTED} more codes" if len(items) > MAX_LISTED else ""
    return (f"{total} rows with a null time have codes that are not static facts ({listed}{more}); "
            "they are dropped from model inputs")


def check_null_time(c: Collector, root: Path, shards: list[Path], predicates_file: Path) -> dict[str, dict]:
    """Report null-time rows of non-static codes (a warning: readers drop them). Returns the codes."""
    try:
        blocked = nonstatic_null_codes(shards, predicates_file)
    except UserError:
        return {}  # an invalid predicate map is reported by check_predicate_map
    if blocked:
        c.warn(root / "data", "time", null_time_message(blocked),
               "give these events their real time; a null time is only for static facts (sex, race)")
    return blocked


def check_predicate_map(c: Collector, pf: Path) -> None:
    if pf.exists():
        try:
            load_predicate_map(pf)
        except UserError as e:
            c.error(pf, e.field, e.message, e.fix or "")


# ---------------------------------------------------------------------------- the shared check
def integrity_findings(root: str | Path, predicates_file: str | Path | None = None) -> list[Finding]:
    """Every integrity check on a cohort folder (the checks `run` requires to pass).

    Args:
        root: the cohort folder.
        predicates_file: overrides <root>/predicates.yaml.

    Returns:
        The findings (errors and warnings), in check order.
    """
    root = Path(root)
    c = Collector(root)
    if not root.is_dir():
        c.error(root, None, "cohort folder not found", "pass the folder that holds data/ and metadata/")
        return c.findings
    pf = Path(predicates_file) if predicates_file else root / "predicates.yaml"
    good, subjects = check_shards(c, root)
    check_splits(c, root, subjects)
    check_modalities(c, root)
    check_predicate_map(c, pf)
    if good and not c.errors():
        check_null_time(c, root, good, pf)
    return c.findings


def _tasks_digest() -> str:
    """Hash of the task files (the null-time rule depends on which predicates tasks use)."""
    h = hashlib.sha256()
    root = tasks_dir()
    for p in sorted(Path(root).rglob("*.yaml")) if Path(root).is_dir() else []:
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _cache_file(cohort: "Cohort") -> Path:
    key = hashlib.sha256("|".join([CHECK_VERSION, str(cohort.root.resolve()), cohort.fingerprint(),
                                   _tasks_digest()]).encode()).hexdigest()[:20]
    return cache_dir() / "integrity" / f"{key}.json"


def require_integrity(cohort: "Cohort", *, use_cache: bool = True) -> list[Finding]:
    """`run`'s gate: refuse a cohort that fails any integrity check, before any label or cell.

    Prints (plain text on stderr, once per call) how many null-time rows are dropped from model inputs.
    A passed check is cached under the cache folder, keyed by the cohort fingerprint and the task files.

    Args:
        cohort: the cohort to run on.
        use_cache: read / write the cached verdict.

    Returns:
        The warnings (the check passed).

    Raises:
        UserError: the first error, naming the file, the field and the fix (with the error count).
    """
    cohort.data_files()  # a clear error for a folder without shards
    cache = _cache_file(cohort)
    findings = None
    if use_cache:
        try:
            findings = [Finding(**d) for d in json.loads(cache.read_text())["warnings"]]
        except (OSError, ValueError, KeyError, TypeError):
            findings = None
    if findings is None:
        findings = integrity_findings(cohort.root, cohort.predicates_file)
        errors = [f for f in findings if f.level == "error"]
        if errors:
            e = errors[0]
            more = f" ({len(errors) - 1} more error(s): run `python -m benchmark validate --data {cohort.root}`)" \
                if len(errors) > 1 else ""
            raise UserError(e.message + more, file=cohort.root / e.file, field=e.field, fix=e.fix)
        if use_cache:
            _write_atomic(cache, json.dumps({"warnings": [asdict(f) for f in findings]}))
    for f in findings:
        if f.field == "time" and "null time" in f.message:
            print(f"warning: {cohort.root / f.file}: {f.message}", file=sys.stderr)
    return findings


def _write_atomic(path: Path, text: str) -> None:
    """Write via a unique temp file + rename; a cache that cannot be written is skipped."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(text)}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except (OSError, UnboundLocalError):
            pass


__all__ = ["Finding", "Collector", "REQUIRED_COLUMNS", "OPTIONAL_COLUMNS", "integrity_findings",
           "require_integrity", "nonstatic_null_codes", "inside_root", "check_shard_footer", "read_footer"]
