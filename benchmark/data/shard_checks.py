"""Data-shard checks: readable parquet, the required MEDS columns with the right types (never read as
nulls when absent), parseable times, no null subject or code, valid UTF-8, sorted, each subject in
one shard, NaN/inf values (a warning); and the null-time rows that are not static facts.

A row with a null time is a static fact only when its code never occurs with a time and no task uses
it as an index, outcome or censoring event (`nonstatic_null_codes`); other null-time rows are
reported (a warning) and the cohort reader drops them from model inputs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.artifacts import cached_artifact
from benchmark.data.findings import Collector, is_string, read_footer, short_error
from benchmark.errors import UserError
from benchmark.paths import cache_dir, tasks_dir
from benchmark.predicate_maps import load_predicate_map
from benchmark.predicates import CodeRule
from benchmark.task_registry import load_tasks

# MEDS DataSchema columns MEHR-Bench needs in every shard. MEDS lets an ETL omit numeric_value, but
# reading a shard without it as "all values null" silently changes value-based labels (AKI,
# neutropenic fever), so it is required here; text_value is optional (absent = no text).
REQUIRED_COLUMNS = ("subject_id", "time", "code", "numeric_value")
OPTIONAL_COLUMNS = ("text_value",)
DEATH_CODE = "MEDS_DEATH"  # MEDS's death code; the label extractor censors on it whatever the task says
MAX_LISTED = 5  # codes named in one message

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
    if not is_string(schema.field("code").type):
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
    if "text_value" in names and not (is_string(schema.field("text_value").type)
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
                "holds text that is not valid UTF-8" if utf else f"cannot be read ({short_error(e)})",
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
    # a copy: the frame polars' unique() returns keeps the capacity of the whole shard's column alive
    # (~13 MB per 1.6M-row shard, 2.6 GB of a cold 1M-subject run's peak when kept for 200 shards)
    ids = np.array(subjects["subject_id"].to_numpy(), dtype=np.int64, copy=True)
    return pl.DataFrame({"subject_id": ids}).with_columns(pl.lit(c.rel(f), dtype=pl.String).alias("shard"))


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


NULL_TIME_VERSION = "1"  # bump when nonstatic_null_codes' rule changes: its cached answers go stale


def nonstatic_null_codes(shards: list[Path], predicates_file: Path) -> dict[str, dict]:
    """`_nonstatic_null_codes`, cached under the cache folder by the shards' names, sizes and mtimes,
    the predicate map's and the task files' contents: the answer takes a scan of every event (a
    minute at 1M subjects), and the integrity check and the cohort reader of every run ask for it."""
    if not shards:
        return {}
    h = hashlib.sha256(f"{NULL_TIME_VERSION}\n".encode())
    for f in shards:
        st = Path(f).stat()
        h.update(f"{Path(f).resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    pf = Path(predicates_file)
    h.update(str(pf.resolve()).encode() + b"\0" + (pf.read_bytes() if pf.is_file() else b"<none>"))
    root = Path(tasks_dir())
    for t in sorted(root.rglob("*.yaml")) if root.is_dir() else []:
        h.update(t.relative_to(root).as_posix().encode() + b"\0" + t.read_bytes())
    return cached_artifact(cache_dir() / "null_time" / f"{h.hexdigest()[:24]}.json",
                           lambda: _nonstatic_null_codes(shards, predicates_file),
                           read=lambda path: json.loads(path.read_text()),
                           write=lambda tmp, value: tmp.write_text(json.dumps(value)), lock=False, best_effort=True)


def _nonstatic_null_codes(shards: list[Path], predicates_file: Path) -> dict[str, dict]:
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
