"""`python -m benchmark validate --data DIR`: MEDS + sidecar checks, and leakage-relevant checks.

The integrity checks (benchmark/data/integrity.py) are shared with `run`, which refuses a cohort
with any of their errors. Each problem is a Finding that names the file, the field and the fix. Errors make the command exit
non-zero; warnings are printed. Checks read parquet footers first and then scan columns lazily,
so a large cohort is validated without loading it into memory.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from benchmark.data.findings import Collector, Finding, read_footer
from benchmark.data.integrity import integrity_findings
from benchmark.data.shard_checks import scan_shards
from benchmark.errors import UserError
from benchmark.predicate_maps import load_predicate_map

__all__ = ["Finding", "validate_cohort"]


def validate_cohort(root: str | Path, predicates_file: str | Path | None = None) -> list[Finding]:
    """Run every check on a cohort folder: the shared integrity checks (benchmark.data.integrity,
    which `run` also requires) plus advisory ones (code metadata, leakage-relevant times, predicates).

    Args:
        root: the cohort folder.
        predicates_file: overrides <root>/predicates.yaml.

    Returns:
        All findings (errors and warnings), in check order.
    """
    root = Path(root)
    findings = integrity_findings(root, predicates_file)
    c = Collector(root)
    c.findings = findings
    if not root.is_dir() or not (root / "data").is_dir():
        return c.findings
    _check_metadata(c, root)
    shards = [f for f in sorted((root / "data").rglob("*.parquet")) if not _has_finding(c, f)]
    if shards:
        _check_leakage_relevant(c, root, shards)
    pf = Path(predicates_file) if predicates_file else root / "predicates.yaml"
    if pf.exists() and shards and not _has_finding(c, pf):
        _check_predicates(c, pf, shards)
    elif not pf.exists():
        c.warn(pf, None, "no predicates map; tasks cannot be labeled on this cohort",
               "write predicates.yaml (name -> code rule) or pass --predicates FILE")
    return c.findings


def _has_finding(c: Collector, f: Path) -> bool:
    """True if an error was already reported for this file (later checks would only repeat it or crash)."""
    rel = c.rel(f)
    return any(x.level == "error" and x.file == rel for x in c.findings)


def _check_metadata(c: Collector, root: Path) -> None:
    cp = root / "metadata" / "codes.parquet"
    if not cp.exists():
        c.warn(cp, None, "code metadata is missing", "write metadata/codes.parquet (code, description, parent_codes)")
    else:
        schema = read_footer(c, cp, "code metadata file")
        for col in ("code", "description", "parent_codes"):
            if schema is not None and col not in schema.names:
                c.warn(cp, col, "CodeMetadataSchema column is missing", f"add '{col}'")
    dj = root / "metadata" / "dataset.json"
    if dj.exists():
        try:
            json.loads(dj.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            c.error(dj, None, f"is not valid JSON ({e})", "rewrite dataset.json as a JSON object")
    else:
        c.warn(dj, None, "dataset metadata is missing", "write metadata/dataset.json (MEDS DatasetMetadataSchema)")


def _scan(shards: list[Path], columns: tuple[str, ...]) -> pl.LazyFrame:
    """The shards with one schema whatever each shard wrote (shards may differ in types and extras)."""
    return scan_shards(shards, columns)


def _check_leakage_relevant(c: Collector, root: Path, shards: list[Path]) -> None:
    lf = _scan(shards, ("subject_id", "time", "code"))
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


def _check_predicates(c: Collector, pf: Path, shards: list[Path]) -> None:
    """Warn about predicates that match no code in the data (the map itself loads: integrity checked it)."""
    try:
        rules = load_predicate_map(pf)
    except UserError:
        return
    lf = _scan(shards, ("code", "numeric_value"))
    codes = lf.group_by("code").agg(pl.col("numeric_value").min().alias("lo"),
                                    pl.col("numeric_value").max().alias("hi")).collect(engine="streaming")
    for name, rule in rules.items():
        if codes.filter(rule.code_expr()).height == 0:
            c.warn(pf, name, "matches no code that occurs in the data", "check the code spelling and vocabulary "
                   "prefix (MEDS codes look like LOINC/2160-0)")
