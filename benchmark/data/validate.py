"""`python -m benchmark validate --data DIR`: MEDS + sidecar checks, and leakage-relevant checks.

Each problem is a Finding that names the file, the field and the fix. Errors make the command exit
non-zero; warnings are printed. Checks read parquet footers first and then scan columns lazily,
so a large cohort is validated without loading it into memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.errors import UserError

RECOMMENDED_SPLITS = {"train", "tuning", "held_out"}


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning"
    file: str
    field: str | None
    message: str
    fix: str

    def render(self) -> str:
        where = self.file + (f": field '{self.field}'" if self.field else "")
        return f"{self.level.upper()}: {where}: {self.message}\n  fix: {self.fix}"


class _Collector:
    def __init__(self, root: Path):
        self.root = root
        self.findings: list[Finding] = []

    def rel(self, p: Path) -> str:
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            return str(p)

    def error(self, p: Path, field: str | None, message: str, fix: str) -> None:
        self.findings.append(Finding("error", self.rel(p), field, message, fix))

    def warn(self, p: Path, field: str | None, message: str, fix: str) -> None:
        self.findings.append(Finding("warning", self.rel(p), field, message, fix))


def _check_shard_schema(c: _Collector, f: Path) -> bool:
    try:
        schema = pq.read_schema(f)
    except Exception as e:  # noqa: BLE001 - any unreadable parquet is the user's file problem
        c.error(f, None, f"not a readable parquet file ({e})", "rewrite the shard with pyarrow or polars")
        return False
    names = set(schema.names)
    ok = True
    for col in ("subject_id", "time", "code"):
        if col not in names:
            c.error(f, col, "required MEDS column is missing",
                    f"add '{col}' (MEDS DataSchema: subject_id int64, time timestamp[us], code string)")
            ok = False
    if not ok:
        return False
    t = schema.field("subject_id").type
    if not pa.types.is_integer(t):
        c.error(f, "subject_id", f"has type {t}, MEDS requires int64", "cast subject_id to int64")
        ok = False
    t = schema.field("time").type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        sample = pl.scan_parquet(f).select(pl.col("time")).drop_nulls().head(100_000).collect()["time"]
        parsed = sample.str.to_datetime(strict=False)
        bad = sample.filter(parsed.is_null())
        msg = "is stored as text; MEDS requires timestamp[us]"
        if bad.len():
            msg += f" and {bad.len()} values cannot be parsed as times (e.g. {bad[0]!r})"
        c.error(f, "time", msg, "convert the column with e.g. polars `.str.to_datetime()` and "
                                "write it as timestamp[us]; fix or drop unparseable values")
        ok = False
    elif not pa.types.is_timestamp(t):
        c.error(f, "time", f"has type {t}, MEDS requires timestamp[us]", "cast time to timestamp[us]")
        ok = False
    elif t.unit != "us":
        c.warn(f, "time", f"has unit {t.unit}; MEDS uses microseconds", "cast time to timestamp[us]")
    if not (pa.types.is_string(schema.field("code").type) or pa.types.is_large_string(schema.field("code").type)
            or pa.types.is_dictionary(schema.field("code").type)):
        c.error(f, "code", f"has type {schema.field('code').type}, MEDS requires string", "cast code to string")
        ok = False
    if "numeric_value" in names:
        t = schema.field("numeric_value").type
        if pa.types.is_float64(t):
            c.error(f, "numeric_value", "is float64; MEDS DataSchema requires float32",
                    "cast numeric_value to float32 (pl.col('numeric_value').cast(pl.Float32))")
            ok = False
        elif not pa.types.is_floating(t):
            c.error(f, "numeric_value", f"has type {t}; MEDS requires float32", "cast numeric_value to float32")
            ok = False
    return ok


def validate_cohort(root: str | Path, predicates_file: str | Path | None = None) -> list[Finding]:
    """Run every check on a cohort folder.

    Args:
        root: the cohort folder.
        predicates_file: overrides <root>/predicates.yaml.

    Returns:
        All findings (errors and warnings), in check order.
    """
    root = Path(root)
    c = _Collector(root)
    if not root.is_dir():
        c.error(root, None, "cohort folder not found", "pass the folder that holds data/ and metadata/")
        return c.findings
    shards = sorted((root / "data").rglob("*.parquet"))
    if not shards:
        c.error(root / "data", None, "no parquet shards found", "write data/<split>/<shard>.parquet files")
        return c.findings
    good = [f for f in shards if _check_shard_schema(c, f)]

    # content checks, per shard (bounded memory)
    subject_shards: list[pl.DataFrame] = []
    for f in good:
        lf = pl.scan_parquet(f).select("subject_id", "time", "code")
        stats = lf.select(
            pl.col("subject_id").null_count().alias("null_sid"),
            pl.col("code").null_count().alias("null_code"),
            (pl.col("subject_id").diff().fill_null(0) < 0).sum().alias("unsorted_sid"),
        ).collect()
        if stats["null_sid"][0]:
            c.error(f, "subject_id", f"{stats['null_sid'][0]} rows have no subject_id", "drop or fill those rows")
        if stats["null_code"][0]:
            c.error(f, "code", f"{stats['null_code'][0]} rows have no code", "drop those rows or give them a code")
        if stats["unsorted_sid"][0]:
            c.error(f, "subject_id", "rows are not sorted by subject_id", "sort each shard by subject_id, time")
        unsorted_t = (lf.filter(pl.col("time").is_not_null())
                      .select(((pl.col("time").diff().over("subject_id").dt.total_microseconds().fill_null(0)) < 0)
                              .sum()).collect().item())
        if unsorted_t:
            c.error(f, "time", f"{unsorted_t} events are out of time order within their subject",
                    "sort each shard by subject_id, time")
        subject_shards.append(lf.select(pl.col("subject_id").unique()).collect()
                              .with_columns(pl.lit(c.rel(f)).alias("shard")))
    data_subjects = pl.concat(subject_shards) if subject_shards else pl.DataFrame(
        schema={"subject_id": pl.Int64, "shard": pl.String})
    multi = data_subjects.group_by("subject_id").agg(pl.len().alias("n")).filter(pl.col("n") > 1)
    if multi.height:
        c.error(root / "data", "subject_id", f"{multi.height} subjects appear in more than one shard "
                f"(e.g. {multi['subject_id'][0]})", "keep all events of a subject in one shard")

    # splits
    sp = root / "metadata" / "subject_splits.parquet"
    if not sp.exists():
        c.error(sp, None, "subject splits file is missing",
                "write metadata/subject_splits.parquet with columns subject_id (int64), split (string)")
    else:
        splits = pl.read_parquet(sp)
        missing = [col for col in ("subject_id", "split") if col not in splits.columns]
        for col in missing:
            c.error(sp, col, "required column is missing", "SubjectSplitSchema: subject_id int64, split string")
        if not missing:
            dup = splits.group_by("subject_id").agg(pl.col("split").n_unique().alias("k"), pl.len().alias("n"))
            two = dup.filter(pl.col("k") > 1)
            if two.height:
                c.error(sp, "split", f"{two.height} subjects are in more than one split "
                        f"(e.g. subject {two['subject_id'][0]})", "give each subject exactly one split")
            elif dup.filter(pl.col("n") > 1).height:
                c.warn(sp, "subject_id", "some subjects are listed twice", "deduplicate the rows")
            odd = set(splits["split"].unique().to_list()) - RECOMMENDED_SPLITS
            if odd:
                c.warn(sp, "split", f"non-standard split names {sorted(odd)}",
                       "use train, tuning and held_out so the benchmark knows which to train and test on")
            no_split = data_subjects.join(splits.select(pl.col("subject_id").cast(pl.Int64)), on="subject_id", how="anti")
            if no_split.height:
                c.error(sp, "subject_id", f"{no_split.height} subjects in data/ have no split "
                        f"(e.g. {no_split['subject_id'][0]})", "add them to subject_splits.parquet")

    # metadata
    cp = root / "metadata" / "codes.parquet"
    if not cp.exists():
        c.warn(cp, None, "code metadata is missing", "write metadata/codes.parquet (code, description, parent_codes)")
    else:
        cols = pq.read_schema(cp).names
        for col in ("code", "description", "parent_codes"):
            if col not in cols:
                c.warn(cp, col, "CodeMetadataSchema column is missing", f"add '{col}'")
    dj = root / "metadata" / "dataset.json"
    if dj.exists():
        try:
            json.loads(dj.read_text())
        except ValueError as e:
            c.error(dj, None, f"is not valid JSON ({e})", "rewrite dataset.json as a JSON object")
    else:
        c.warn(dj, None, "dataset metadata is missing", "write metadata/dataset.json (MEDS DatasetMetadataSchema)")

    _check_modalities(c, root)
    if good:
        _check_leakage_relevant(c, root, good)
    pf = Path(predicates_file) if predicates_file else root / "predicates.yaml"
    if pf.exists() and good:
        _check_predicates(c, pf, good)
    elif not pf.exists():
        c.warn(pf, None, "no predicates map; tasks cannot be labeled on this cohort",
               "write predicates.yaml (name -> code rule) or pass --predicates FILE")
    return c.findings


def _check_modalities(c: _Collector, root: Path) -> None:
    d = root / "modalities"
    if not d.is_dir():
        return
    for f in sorted(d.glob("*.parquet")):
        schema = pq.read_schema(f)
        names = set(schema.names)
        for col in ("subject_id", "time"):
            if col not in names:
                c.error(f, col, "required sidecar column is missing", "a modality table has subject_id, time, and "
                        "embedding or path")
        if "embedding" not in names and "path" not in names:
            c.error(f, None, "has neither 'embedding' nor 'path'", "add embedding (fixed-size list<float32>) "
                    "or path (file relative to the cohort folder)")
        if "embedding" in names:
            t = schema.field("embedding").type
            if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
                c.error(f, "embedding", f"has type {t}", "store embeddings as fixed-size list<float32>")
            elif not pa.types.is_fixed_size_list(t):
                lens = pl.scan_parquet(f).select(pl.col("embedding").list.len().n_unique()).collect().item()
                if lens > 1:
                    c.error(f, "embedding", "embeddings have different lengths", "use one size per modality")
        if "time" in names and f.stem != "prs":
            t = schema.field("time").type
            if not pa.types.is_timestamp(t):
                c.error(f, "time", f"has type {t}", "cast time to timestamp[us]")
            else:
                nulls = pl.scan_parquet(f).select(pl.col("time").null_count()).collect().item()
                if nulls:
                    c.warn(f, "time", f"{nulls} studies have no time; they will be visible at every prediction time",
                           "give time-stamped studies their acquisition time (null only for static data such as prs)")
        if "path" in names:
            paths = pl.scan_parquet(f).select("path").drop_nulls().head(200).collect()["path"].to_list()
            gone = [p for p in paths if not (root / p).exists()]
            if gone:
                c.error(f, "path", f"{len(gone)} of the first {len(paths)} files do not exist (e.g. {gone[0]})",
                        "paths are relative to the cohort folder; copy the files or fix the paths")


def _check_leakage_relevant(c: _Collector, root: Path, shards: list[Path]) -> None:
    lf = pl.scan_parquet(shards).select(pl.col("subject_id").cast(pl.Int64), pl.col("time").cast(pl.Datetime("us")),
                                        pl.col("code"))
    bounds = lf.group_by("subject_id").agg(
        pl.col("time").filter(pl.col("code") == "MEDS_BIRTH").min().alias("birth"),
        pl.col("time").filter(pl.col("code") == "MEDS_DEATH").min().alias("death"),
    )
    ev = lf.filter(pl.col("time").is_not_null()).join(bounds, on="subject_id")
    stats = ev.select(
        (pl.col("time") < pl.col("birth")).sum().alias("before_birth"),
        (pl.col("time") > pl.col("death") + pl.duration(days=1)).sum().alias("after_death"),
        (pl.col("time").dt.time() == pl.time(0)).mean().alias("midnight"),
    ).collect(engine="streaming")
    if stats["before_birth"][0]:
        c.warn(root / "data", "time", f"{stats['before_birth'][0]} events are before the subject's birth",
               "check the source's date shifting")
    if stats["after_death"][0]:
        c.warn(root / "data", "time", f"{stats['after_death'][0]} events are more than a day after MEDS_DEATH; "
               "they may reveal the outcome to models", "drop or re-time post-mortem events")
    frac = stats["midnight"][0] or 0.0
    if frac > 0.3:
        c.warn(root / "data", "time", f"{frac:.0%} of events are at 00:00:00 (date-only times); an event "
               "recorded at the day's start may be known only later that day, so it can leak into a "
               "same-day prediction time", "give date-only events the end of their day, or set task offsets "
               "of at least 1 day")


def _check_predicates(c: _Collector, pf: Path, shards: list[Path]) -> None:
    from benchmark.predicates import load_predicate_map
    try:
        rules = load_predicate_map(pf)
    except UserError as e:
        c.error(pf, e.field, e.message, e.fix or "")
        return
    lf = pl.scan_parquet(shards).select("code", pl.col("numeric_value").cast(pl.Float32) if "numeric_value"
                                        in pq.read_schema(shards[0]).names else pl.lit(None, pl.Float32).alias("numeric_value"))
    codes = lf.group_by("code").agg(pl.col("numeric_value").min().alias("lo"),
                                    pl.col("numeric_value").max().alias("hi")).collect(engine="streaming")
    for name, rule in rules.items():
        if codes.filter(rule.code_expr()).height == 0:
            c.warn(pf, name, "matches no code that occurs in the data", "check the code spelling and vocabulary "
                   "prefix (MEDS codes look like LOINC/2160-0)")
