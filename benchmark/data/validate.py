"""`python -m benchmark validate --data DIR`: MEDS + sidecar checks, and leakage-relevant checks.

The integrity checks (benchmark/data/integrity.py) are shared with `run`, which refuses a cohort
with any of their errors. Each problem is a Finding that names the file, the field and the fix. Errors make the command exit
non-zero; warnings are printed. Checks read parquet footers first and then scan columns lazily,
so a large cohort is validated without loading it into memory.
"""

from __future__ import annotations

import difflib
import json
import re
from datetime import timedelta
from pathlib import Path

import polars as pl

from benchmark.data.findings import Collector, Finding, read_footer
from benchmark.data.integrity import integrity_findings
from benchmark.data.plausibility import check_plausibility
from benchmark.data.shard_checks import DEATH_CODE, scan_shards
from benchmark.errors import UserError
from benchmark.predicate_maps import load_predicate_map
from benchmark.predicates import CodeRule, DatasetRule, RuleUnion, resolve_descendants
from benchmark.units import canonical_unit

__all__ = ["Finding", "validate_cohort"]

# events up to this long after the (latest possible) death time are accepted: ICU charting closes
# infusions, medications and the transfer record minutes to hours after a recorded deathtime
AFTER_DEATH_TOLERANCE = timedelta(hours=24)


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
        _check_predicates(c, pf, root, shards)
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
        pl.col("time").filter(pl.col("code") == "MEDS_BIRTH").min().alias("birth"))
    ev = lf.filter(pl.col("time").is_not_null()).join(bounds, on="subject_id")
    stats = ev.select(
        (pl.col("time") < pl.col("birth")).sum().alias("before_birth"),
        (pl.col("time").dt.time() == pl.time(0)).mean().alias("midnight"),
    ).collect(engine="streaming")
    if stats["before_birth"][0]:
        c.warn(root / "data", "time", f"{stats['before_birth'][0]} events are before the subject's birth",
               "check the source's date shifting")
    check_after_death(c, root, lf)
    frac = stats["midnight"][0] or 0.0
    if frac > 0.3:
        c.warn(root / "data", "time", f"{frac:.0%} of events are at 00:00:00 (date-only times); an event "
               "recorded at the day's start may be known only later that day, so it can leak into a "
               "same-day prediction time", "give date-only events the end of their day, or set task offsets "
               "of at least 1 day")


def check_after_death(c: Collector, root: Path, lf: pl.LazyFrame,
                      tolerance: timedelta = AFTER_DEATH_TOLERANCE) -> dict:
    """Warn about events more than `tolerance` after the latest time the subject can have died.

    A MEDS_DEATH at exactly 00:00 is read as date-only (MIMIC-IV's `dod`, most registries): the
    death happened some time that day, so the whole day is allowed before the tolerance starts.

    Args:
        c: where the finding goes.
        root: the cohort folder.
        lf: the shards' subject_id, time, code.
        tolerance: how long after death an event is still accepted (late charting of the death itself).

    Returns:
        {"subjects", "rows", "date_only_subjects", "max_gap"} of the events after death.
    """
    death = (lf.filter(pl.col("code") == DEATH_CODE).drop_nulls("time")
             .with_columns((pl.col("time").dt.time() == pl.time(0)).alias("date_only"))
             .with_columns(pl.when(pl.col("date_only")).then(pl.col("time") + pl.duration(days=1))
                           .otherwise(pl.col("time")).alias("latest"))
             .group_by("subject_id").agg(pl.col("latest").max(), pl.col("date_only").all()))
    late = (lf.drop_nulls("time").filter(pl.col("code") != DEATH_CODE).join(death, on="subject_id")
            .filter(pl.col("time") > pl.col("latest") + tolerance)
            .with_columns((pl.col("time") - pl.col("latest")).alias("gap")))
    s = late.select(pl.col("subject_id").n_unique().alias("subjects"), pl.len().alias("rows"),
                    pl.col("subject_id").filter(pl.col("date_only")).n_unique().alias("date_only_subjects"),
                    pl.col("gap").max().alias("max_gap"), pl.col("subject_id").first().alias("example"),
                    ).collect(engine="streaming").row(0, named=True)
    if s["rows"]:
        tol = f"{tolerance.total_seconds() / 3600:g} h"
        c.warn(root / "data", "time",
               f"{s['rows']} events of {s['subjects']} subjects are more than {tol} after their MEDS_DEATH "
               f"(up to {_days(s['max_gap'])} after; e.g. subject {s['example']}); a death at 00:00 is read as "
               f"date-only and its whole day is allowed ({s['date_only_subjects']} of these subjects have a "
               "date-only death). Events after death can reveal the outcome or make a dead subject a sample",
               "if the ETL writes a date-only death time (e.g. MIMIC-IV dod) check that the date is right; "
               "otherwise data after a recorded death time is an ETL or source error: drop or re-time those rows")
    return s


def _days(gap: timedelta | None) -> str:
    return "?" if gap is None else f"{gap.total_seconds() / 86400:.1f} days"


def _check_predicates(c: Collector, pf: Path, root: Path, shards: list[Path]) -> None:
    """Predicates that match no code in the data (with the nearest codes the data has), and the
    plausibility of mapped lab values (the map itself loads: integrity checked it)."""
    try:
        rules = resolve_descendants(load_predicate_map(pf), root / "metadata" / "codes.parquet")
    except UserError:
        return
    lf = _scan(shards, ("code", "numeric_value", "text_value"))
    codes = lf.group_by("code").agg(pl.len().alias("rows")).collect(engine="streaming")
    unmatched = [n for n, r in rules.items() if codes.filter(r.code_expr()).height == 0]
    report_unmatched(c, pf, {n: rules[n] for n in unmatched}, codes)
    check_plausibility(c, pf, {n: r for n, r in rules.items() if n not in unmatched}, lf)


# ---------------------------------------------------------------------------- fix hints
def report_unmatched(c: Collector, pf: Path, rules: dict[str, DatasetRule], codes: pl.DataFrame) -> None:
    """Warn about predicates that match no code. Each one with a near code in the data (the same
    itemid / concept id in another code style, or a close spelling) gets its own warning naming those
    codes and the style the data writes; the rest share one warning that shows what the data's codes
    look like (a dataset without e.g. chart events or CXR simply cannot express them)."""
    if not rules:
        return
    have = codes.sort("rows", descending=True)["code"].to_list()
    lonely = []
    for name, rule in rules.items():
        targets = [t for r in (rule.rules if isinstance(rule, RuleUnion) else (rule,)) for t in _literals(r)]
        near = nearest_codes(targets, have)
        if not near:
            lonely.append(name)
            continue
        style = _style_hint(targets, near[0])
        c.warn(pf, name, f"'{name}' matches no code that occurs in the data; did you mean "
               f"{', '.join(near)}?{style}", f"change the rule of '{name}' in {pf} to the data's codes")
    if lonely:
        names = ", ".join(f"'{n}'" for n in lonely)
        what = f"{names} matches" if len(lonely) == 1 else f"each of these {len(lonely)} predicates matches"
        c.warn(pf, lonely[0] if len(lonely) == 1 else None,
               f"{what} no code that occurs in the data, and no code in the data resembles {'its' if len(lonely) == 1 else 'theirs'}"
               f"{'' if len(lonely) == 1 else ': ' + names}; tasks that need "
               f"{'it' if len(lonely) == 1 else 'them'} are skipped",
               f"map them to this dataset's codes, which look like {', '.join(_examples(have))}; or leave out "
               "what the data cannot express")


def _segments(code: str) -> list[str]:
    """A code's parts: split on '//' (MEDS ETL style: LAB//RESULT//50912//mg/dL) or else on '/'
    (vocabulary style: LOINC/2160-0)."""
    return [p for p in code.split("//" if "//" in code else "/") if p]


def _literals(rule: CodeRule) -> list[str]:
    """The code text a rule names: its codes or prefixes, or the words of its regex joined by '//'."""
    for v in (rule.code, rule.any_of, rule.prefix, rule.descendants_of):
        if v is not None:
            return [v] if isinstance(v, str) else list(v)
    words = re.findall(r"[A-Za-z0-9_]+(?:[ ./-][A-Za-z0-9_]+)*", rule.regex or "")
    return ["//".join(w for w in words if w not in ("i",))]


def _key_parts(target: str) -> list[str]:
    """The parts of a code that name its concept (an itemid, a concept or ICD code): parts after the
    first (the first is the vocabulary or event type) with a digit and at least 3 characters."""
    parts = _segments(target)
    keys = [p for p in parts[1:] if len(p) >= 3 and any(ch.isdigit() for ch in p)]
    return keys or [p for p in parts if len(p) >= 3 and not p.isdigit()][:1]


def nearest_codes(targets: list[str], codes: list[str], n: int = 3) -> list[str]:
    """Up to `n` data codes nearest to what a rule names: codes that share its concept part (itemid,
    code; a code part that starts with it counts, as prefixes do), best spelling match first; else
    close spellings (difflib ratio >= 0.8)."""
    scored: dict[str, float] = {}
    for t in targets:
        keys = _key_parts(t)
        for code in codes:
            parts = _segments(code)
            shared = sum(any(p == k or p.startswith(k) for p in parts) for k in keys)
            if shared:
                score = shared + difflib.SequenceMatcher(None, t, code).ratio()
                scored[code] = max(scored.get(code, 0.0), score)
    if scored:
        return sorted(scored, key=lambda k: -scored[k])[:n]
    close = [m for t in targets for m in difflib.get_close_matches(t, codes, n=n, cutoff=0.8)]
    return list(dict.fromkeys(close))[:n]


def _template(code: str, keys: list[str]) -> str:
    """A code with its concept part as <itemid> (digits) or <code>, and a unit part as <unit> (to
    compare code styles)."""
    out = []
    for p in _segments(code):
        if any(p == k or p.startswith(k) for k in keys):
            out.append("<itemid>" if p.isdigit() else "<code>")
        else:
            try:
                canonical_unit(p)
                out.append("<unit>")
            except ValueError:
                out.append(p)
    return "//".join(out) if "//" in code else "/".join(out)


def _style_hint(targets: list[str], near: str) -> str:
    """' (the data writes A, the map B)' when the nearest code is the same concept in another style."""
    t = targets[0]
    keys = _key_parts(t)
    mine, theirs = _template(t, keys), _template(near, keys)
    if ("<itemid>" in theirs or "<code>" in theirs) and mine != theirs:
        return f" (the data writes {theirs}, the map {mine})"
    return ""


def _examples(codes: list[str], n: int = 6) -> list[str]:
    """One code per leading part, most frequent parts first (what this dataset's codes look like)."""
    seen: dict[str, str] = {}
    for code in codes:
        seen.setdefault(_segments(code)[0] if _segments(code) else code, code)
        if len(seen) >= n:
            break
    return list(seen.values())
