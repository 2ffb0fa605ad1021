"""Vectorized label extraction (polars): task spec + cohort -> MEDS LabelSchema rows.

One scan per shard (benchmark.label_events) collects the events of every predicate a task needs; everything after
that is joins and group-bys on those (small) predicate tables. Output columns follow
`meds.LabelSchema`: subject_id, prediction_time and, by kind,
  binary      boolean_value
  multilabel  integer_value = bitmask over the task's label names in file order (bit i = label i)
  survival    float_value = days to event or censoring, boolean_value = event observed
  regression  float_value
Results are cached on disk by (task hash, predicate rules, labeler version, data fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from benchmark.artifacts import atomic_write, cached_artifact
from benchmark.attrition import AttritionStep, Tracker, criterion_text, index_text
from benchmark.data.cohort import Cohort
from benchmark.durations import parse_duration, to_timedelta
from benchmark.errors import UserError
from benchmark.label_events import predicate_events
from benchmark.paths import cache_dir
from benchmark.predicates import BUILTIN_PREDICATES, DatasetRule, DerivedRule, predicate_rules_digest
from benchmark.suitability import STAY_END, STAY_START, extra_predicates, is_onset_task, suitability_warnings
from benchmark.taskspec import TaskSpec
from benchmark.units import canonical_unit

# 3: NaN/inf numeric values read as null, non-static null-time rows dropped (issue 12)
# 4: the cache carries the attrition table and the suitability warnings (issue 14)
LABELER_VERSION = "4"


class TaskNotApplicable(Exception):
    """The dataset does not map some predicates the task needs; the runner skips the task."""

    def __init__(self, task: str, missing: list[str]):
        self.task = task
        self.missing = sorted(missing)
        super().__init__(f"task {task} needs predicates the dataset does not map: {', '.join(self.missing)}")


@dataclass
class LabelSet:
    """Labels of one task on one cohort, with what was seen while making them."""

    task: TaskSpec
    labels: pl.DataFrame
    predicate_counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    cache_file: Path | None = None
    attrition: list[AttritionStep] = field(default_factory=list)

    def multilabel_matrix(self) -> np.ndarray:
        """[n_samples, n_labels] 0/1 matrix decoded from the integer_value bitmask."""
        bits = self.labels["integer_value"].to_numpy().astype(np.int64)
        n = len(self.task.label_names())
        return ((bits[:, None] >> np.arange(n)[None, :]) & 1).astype(np.int8)


# ---------------------------------------------------------------------------- predicate events
def _resolve_rules(task: TaskSpec, dataset_rules: dict[str, DatasetRule]) -> dict[str, DatasetRule | DerivedRule | str]:
    needed = task.referenced_predicates()
    missing = [n for n in task.dataset_predicates() if n not in dataset_rules]
    if missing:
        raise TaskNotApplicable(task.name, missing)
    rules: dict[str, DatasetRule | DerivedRule | str] = {}
    for n in needed:
        if n in task.predicates:
            # a task-local code rule is scanned like a dataset rule
            r = task.predicates[n]
            rules[n] = r.rule if r.rule is not None else r
        elif n in BUILTIN_PREDICATES:
            rules[n] = n
        else:
            rules[n] = dataset_rules[n]
    _check_units(task, rules)
    rules.update(extra_predicates(task, dataset_rules))  # read only by the suitability checks
    return rules


def _check_units(task: TaskSpec, rules: dict) -> None:
    """A derived lab rule's thresholds are written in one unit (KDIGO: creatinine mg/dL; neutropenic
    fever: ANC /uL, temperature degC): a dataset predicate that states another unit is an error.
    A predicate that states no unit is accepted (validate warns about it)."""
    for name, rule in rules.items():
        if not isinstance(rule, DerivedRule):
            continue
        for inp, want in rule.expected_units().items():
            src = rules.get(inp)
            have = src.final_unit if isinstance(src, DatasetRule) else None
            if have is not None and canonical_unit(have) != canonical_unit(want):
                raise UserError(f"task {task.name}: predicate {inp!r} is in {have}, but {name} compares it in {want}",
                                field=inp, fix=f"in the dataset's predicates file give {inp} 'to_unit: {want}' "
                                               "(or scale / offset) so its values are converted")


# ---------------------------------------------------------------------------- windows
def _window_stats(samples: pl.DataFrame, events: pl.DataFrame, start_s: float, end_s: float | pl.Expr,
                  name: str, start_inclusive: bool = False, end_inclusive: bool = True) -> pl.DataFrame:
    """Per sample: count and first time of `events` in (t + start, t + end] (or with the edges
    the flags say); end may be a column."""
    j = samples.select("subject_id", "prediction_time").join(events.select("subject_id", "time"),
                                                             on="subject_id", how="inner")
    cond = pl.lit(True)
    t = pl.col("time")
    if not math.isinf(start_s):
        lo = pl.col("prediction_time") + to_timedelta(start_s)
        cond = cond & ((t >= lo) if start_inclusive else (t > lo))
    if isinstance(end_s, pl.Expr):
        cond = cond & (t <= end_s)
    elif not math.isinf(end_s):
        hi = pl.col("prediction_time") + to_timedelta(end_s)
        cond = cond & ((t <= hi) if end_inclusive else (t < hi))
    if isinstance(end_s, pl.Expr):
        j = j.join(samples.select("subject_id", "prediction_time", "__end"), on=["subject_id", "prediction_time"])
    agg = (j.filter(cond).group_by("subject_id", "prediction_time")
           .agg(pl.len().alias(f"{name}_n"), pl.col("time").min().alias(f"{name}_first")))
    return (samples.join(agg, on=["subject_id", "prediction_time"], how="left")
            .with_columns(pl.col(f"{name}_n").fill_null(0)))


def _first_after(samples: pl.DataFrame, events: pl.DataFrame, name: str) -> pl.DataFrame:
    """Per sample: time of the first event strictly after the prediction time (null if none)."""
    return _window_stats(samples, events, 0.0, math.inf, name).drop(f"{name}_n")


# ---------------------------------------------------------------------------- main entry
def _rules_key(task: TaskSpec, rules) -> str:
    blob = json.dumps({"task": task.model_dump(mode="json"), "rules": predicate_rules_digest(rules),
                       "labeler": LABELER_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def label_cache_file(task: TaskSpec, cohort: Cohort, rules) -> Path:
    return (cache_dir() / "labels" / task.name.replace("/", "__")
            / f"{_rules_key(task, rules)}-{cohort.fingerprint()}.parquet")


def extract_labels(task: TaskSpec, cohort: Cohort, *, dataset_rules: dict[str, DatasetRule] | None = None,
                   use_cache: bool = True, announce: bool = True, workers: int | None = None) -> LabelSet:
    """Compute (or load from cache) the labels of `task` on `cohort`, one MEDS shard at a time.

    Args:
        task: the task spec.
        cohort: the cohort.
        dataset_rules: predicate map (default: the cohort's predicates.yaml).
        use_cache: read/write the on-disk label cache.
        announce: issue LabelSet.warnings as Python warnings when the labels are computed (the CLI
            passes False and prints them itself, once per task, cached or not).
        workers: shards labelled at once (threads, each holding one shard); default
            min(os.cpu_count(), number of shards). The labels and the cache key do not depend on it.

    Returns:
        LabelSet with a LabelSchema DataFrame sorted by subject_id, prediction_time, its attrition
        table and its warnings (predicates matching nothing, suitability: benchmark.suitability).

    Raises:
        TaskNotApplicable: the dataset does not map some predicates the task needs.
        UserError: workers is not a whole number >= 1.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise UserError(f"workers must be a whole number >= 1, got {workers!r}", field="--workers",
                        fix="pass --workers 1 or more (default: one per CPU, at most one per shard)")
    dataset_rules = cohort.predicate_map() if dataset_rules is None else dataset_rules
    rules = _resolve_rules(task, dataset_rules)
    if not use_cache:
        ls = _compute_labels(task, cohort, rules, None, workers)
        return _announce(ls) if announce else ls
    cache_file = label_cache_file(task, cohort, rules)
    computed: list[LabelSet] = []

    def compute() -> LabelSet:
        computed.append(_compute_labels(task, cohort, rules, cache_file, workers))
        return computed[0]

    # Concurrent runs: one computes, the others wait on the entry's lock and then read its file.
    ls = cached_artifact(cache_file, compute, read=lambda f: _read_cached(task, f), write=_write_cached,
                         suffix=".parquet")
    return _announce(ls) if computed and announce else ls


def _announce(ls: LabelSet) -> LabelSet:
    """Warn (once, when the labels are computed) about predicates that match no event."""
    for w in ls.warnings:
        warnings.warn(w, stacklevel=3)  # the caller of extract_labels
    return ls


def _read_cached(task: TaskSpec, cache_file: Path) -> LabelSet:
    """A LabelSet from the cache (the metadata JSON is written before the parquet, so it is there)."""
    meta_file = cache_file.with_suffix(".json")
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    return LabelSet(task, pl.read_parquet(cache_file), meta.get("predicate_counts", {}),
                    meta.get("warnings", []), cache_file,
                    [AttritionStep.from_dict(d) for d in meta.get("attrition", [])])


def _write_cached(tmp: Path, ls: LabelSet) -> None:
    """Store labels: the metadata JSON first, then the parquet (renamed into place last, by
    cached_artifact, so its existence marks a complete entry)."""
    atomic_write(ls.cache_file.with_suffix(".json"),
                 json.dumps({"predicate_counts": ls.predicate_counts, "warnings": ls.warnings,
                             "attrition": [st.to_dict() for st in ls.attrition]}))
    ls.labels.write_parquet(tmp)


@dataclass
class _Part:
    """What labelling one group of shards gives (some consecutive shards, or all of them)."""

    labels: pl.DataFrame
    diag: pl.DataFrame
    steps: list[AttritionStep]
    counts: dict[str, int]
    suit_events: dict[str, pl.DataFrame]
    subjects: pl.Series  # the subjects with a timed event in the group


def _compute_labels(task: TaskSpec, cohort: Cohort, rules, cache_file: Path | None,
                    workers: int | None = None, shards: bool = True) -> LabelSet:
    """Extract labels (cache_file only names where they will be stored).

    Every rule reads one subject's events only, and `validate` guarantees a subject never spans
    shards (shard_checks.check_shards, required by `run`), so each shard is labelled on its own and
    the parts are concatenated; counts and attrition steps add up. A cohort that breaks the rule
    (`labels` does not require validate) is detected from the parts and labelled in one pass instead.
    shards=False labels in one pass over all shards (the reference the tests compare with).
    """
    files = cohort.data_files()
    splits = _splits_or_none(cohort)
    notes: list[str] = []
    parts = _map_shards(task, cohort, rules, splits, files, workers) if shards else None
    if parts is not None:
        subjects = pl.concat([p.subjects for p in parts])
        if subjects.n_unique() != subjects.len():
            notes.append(f"{cohort.root}: some subjects appear in more than one data shard, so the labels were "
                         "computed in one pass over all shards (slower, more memory); `validate` reports them")
            parts = None
    if parts is None:
        parts = [_label_in_one_pass(task, cohort, rules, splits)]
    counts = {n: sum(p.counts[n] for p in parts) for n in parts[0].counts}
    notes = [f"task {task.name}: predicate {n!r} matches no event in {cohort.root}; "
             f"check its rule in {cohort.predicates_file}" for n, c in counts.items()
             if c == 0 and isinstance(rules.get(n), DatasetRule)] + notes
    labels = pl.concat([p.labels for p in parts]).sort("subject_id", "prediction_time")
    diag = pl.concat([p.diag for p in parts], how="vertical_relaxed")
    steps = _merge_steps([p.steps for p in parts])
    suit = {n: pl.concat([p.suit_events[n] for p in parts]) for n in parts[0].suit_events}
    notes += suitability_warnings(task, labels, diag, suit, splits, steps)
    return LabelSet(task, labels, counts, notes, cache_file, steps)


LABEL_GROUP_ROWS = 2_000_000  # predicate-event rows labelled at once (see _map_shards)


def _map_shards(task: TaskSpec, cohort: Cohort, rules, splits: pl.DataFrame | None, files: list[Path],
                workers: int | None) -> list[_Part]:
    """Scan each shard on its own, `workers` shards at a time, and label the shards' predicate events
    in groups of consecutive shards holding up to LABEL_GROUP_ROWS event rows.

    The scan is threads (polars and the parquet reader release the GIL, and threads share the parsed
    task and splits instead of pickling them), at most `workers` shards ahead of the labelling, so a
    worker holds one shard's rows at a time and the events waiting to be labelled stay bounded.
    Grouping matters for speed, not for the result: a shard's events are a small fraction of its rows,
    and labelling them shard by shard spends most of its time in ~100 small polars operations per shard.
    """
    n = min(workers or os.cpu_count() or 1, len(files))
    cohort.scan(("subject_id",), timed_only=True)  # footer checks and schemas once, here, not in every thread

    def scan(f: Path) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
        return predicate_events(task, cohort, rules, [f])

    parts: list[_Part] = []
    group: list[tuple[dict[str, pl.DataFrame], pl.DataFrame]] = []
    rows = 0  # event rows in the group
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="labels") as pool:
        for scanned in (map(scan, files) if n == 1 else _bounded_map(pool, scan, files, ahead=n)):
            group.append(scanned)
            rows += sum(e.height for e in scanned[0].values())
            if rows >= LABEL_GROUP_ROWS:
                parts.append(_label_group(task, splits, group))
                group, rows = [], 0
    if group:
        parts.append(_label_group(task, splits, group))
    return parts


def _bounded_map(pool: ThreadPoolExecutor, fn, items: list, ahead: int):
    """pool.map(fn, items) in order, with at most `ahead` items submitted and not yet consumed."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _label_group(task: TaskSpec, splits: pl.DataFrame | None,
                 group: list[tuple[dict[str, pl.DataFrame], pl.DataFrame]]) -> _Part:
    """Label the predicate events of a group of shards together. _Part.subjects keeps one entry per
    shard and subject, so a subject that spans shards still shows as a duplicate."""
    events = {n: pl.concat([ev[n] for ev, _ in group]) for n in group[0][0]}
    return _label_events(task, events, pl.concat([b for _, b in group]), splits, restrict=True)


def _label_in_one_pass(task: TaskSpec, cohort: Cohort, rules, splits: pl.DataFrame | None) -> _Part:
    """Labels, diagnostics, attrition steps and predicate counts of all shards, scanned together."""
    events, bounds = predicate_events(task, cohort, rules)
    return _label_events(task, events, bounds, splits, restrict=False)


def _label_events(task: TaskSpec, events: dict[str, pl.DataFrame], bounds: pl.DataFrame,
                  splits: pl.DataFrame | None, restrict: bool) -> _Part:
    """_Part of some shards' predicate events and record bounds (restrict: they are not all shards)."""
    counts = {n: events[n].height for n in sorted(events) if not n.startswith("__")}
    if splits is not None and restrict:
        # the split of this part's subjects only: each attrition step joins its rows with it
        splits = splits.join(bounds.select("subject_id"), on="subject_id", how="semi")
    tracker = Tracker(splits)
    labels, diag = _label(task, events, bounds, tracker)
    diag = diag.select([c for c in ("subject_id", "boolean_value", "__death_only") if c in diag.columns])
    return _Part(labels, diag, tracker.steps, counts, _suitability_events(task, labels, events),
                 bounds["subject_id"])


def _suitability_events(task: TaskSpec, labels: pl.DataFrame, events: dict[str, pl.DataFrame]) -> dict:
    """The events suitability_warnings reads, kept for the subjects it reads them for: the outcome
    and hospital-stay predicates of onset tasks, joined to the positive rows (suitability._prevalent).
    Keeping only those is what lets a shard's events go once it is labelled."""
    if not is_onset_task(task):
        return {}
    pos = labels.filter(pl.col("boolean_value")).select("subject_id").unique()
    names = (task.label.outcome, STAY_START, STAY_END)
    return {n: events[n].join(pos, on="subject_id", how="semi") for n in names if n in events}


def _merge_steps(parts: list[list[AttritionStep]]) -> list[AttritionStep]:
    """Attrition steps of all shards: counts add up (a subject is in one shard, so subjects do too)."""
    def add(dicts: list[dict | None]) -> dict | None:
        if all(d is None for d in dicts):
            return None
        total: dict[str, int] = {}
        for d in dicts:
            for k, v in (d or {}).items():
                total[k] = total.get(k, 0) + v
        return dict(sorted(total.items()))

    merged = []
    for same in zip(*parts, strict=True):
        first = same[0]
        assert all(st.name == first.name for st in same), "every shard applies the task's rules in one order"
        ev = [st.events_out for st in same]
        merged.append(AttritionStep(first.name, first.rule, sum(st.rows_in for st in same),
                                    sum(st.rows_out for st in same), sum(st.subjects_out for st in same),
                                    add([st.by_split for st in same]) or {},
                                    None if all(e is None for e in ev) else sum(e or 0 for e in ev),
                                    add([st.events_by_split for st in same])))
    return merged


def _splits_or_none(cohort: Cohort) -> pl.DataFrame | None:
    """The cohort's splits, or None where it has no usable splits file (labels do not need one;
    `validate` and `run` report it)."""
    try:
        return cohort.splits
    except UserError:
        return None


def _index_samples(task: TaskSpec, events: dict[str, pl.DataFrame], tracker: Tracker) -> pl.DataFrame:
    idx = events[task.index.predicate].select("subject_id", "time").drop_nulls("time")
    n_events = idx.height
    if task.index.occurrence == "first":
        idx = idx.group_by("subject_id").agg(pl.col("time").min())
    elif task.index.occurrence == "last":
        idx = idx.group_by("subject_id").agg(pl.col("time").max())
    else:
        idx = idx.unique()
    off = to_timedelta(parse_duration(task.index.offset))
    s = (idx.rename({"time": "index_time"})
         .with_columns((pl.col("index_time") + off).alias("prediction_time"))
         .sort("subject_id", "prediction_time"))
    tracker.step("index", index_text(task), n_events, s)
    return s


def _label(task: TaskSpec, events: dict[str, pl.DataFrame], bounds: pl.DataFrame,
           tracker: Tracker) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Index samples -> inclusion -> exclusion -> label stage, each step recorded in `tracker`.

    Returns:
        (LabelSchema rows, the same rows with the labeler's diagnostic columns: index_time,
        record_end, dead and, for windowed binary labels, __death_only).
    """
    s = _index_samples(task, events, tracker)
    for i, c in enumerate(task.inclusion):
        st, en = c.seconds()
        n = s.height
        s = _window_stats(s, events[c.predicate], st, en, f"inc{i}", c.start_inclusive, c.end_inclusive)
        s = s.filter(pl.col(f"inc{i}_n") >= c.min_count).drop(f"inc{i}_n", f"inc{i}_first")
        tracker.step(f"inclusion {i + 1}", criterion_text(c, "inclusion"), n, s)
    for i, c in enumerate(task.exclusion):
        st, en = c.seconds()
        n = s.height
        s = _window_stats(s, events[c.predicate], st, en, f"exc{i}", c.start_inclusive, c.end_inclusive)
        s = s.filter(pl.col(f"exc{i}_n") == 0).drop(f"exc{i}_n", f"exc{i}_first")
        tracker.step(f"exclusion {i + 1}", criterion_text(c, "exclusion"), n, s)
    s = s.join(bounds.select("subject_id", "record_end", "dead"), on="subject_id", how="left")
    rows, reasons = _LABELERS[task.kind](s, task.label, events)
    for name, rule in reasons:  # each way the label stage drops a row, in a fixed order
        n = tracker.last_rows()
        rows = rows.filter(pl.col("__drop").is_null() | (pl.col("__drop") != name))
        tracker.step(name, rule, n, rows)
    rows = rows.sort("subject_id", "prediction_time")
    labels = rows.select([c for c in _LABEL_COLUMNS if c in rows.columns])
    tracker.final(labels, _event_flags(task, labels))
    return labels, rows


_LABEL_COLUMNS = ("subject_id", "prediction_time", "boolean_value", "integer_value", "float_value")


def _event_flags(task: TaskSpec, labels: pl.DataFrame) -> pl.Series | None:
    """Per row: positive (binary) / event observed (survival); None for kinds without events."""
    return labels["boolean_value"] if task.kind_obj.has_events else None


def _multilabel_rows(s: pl.DataFrame, lab, events: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """integer_value: bit j set if label j's outcome occurs in the window."""
    st, en = lab.window.seconds()
    mask = pl.lit(0, dtype=pl.Int64)
    for bit, (name, pred) in enumerate(lab.outcomes.items()):
        s = _window_stats(s, events[pred], st, en, f"y{bit}")
        mask = mask + pl.when(pl.col(f"y{bit}_n") > 0).then(1 << bit).otherwise(0)
    return _keep(s.with_columns(mask.alias("integer_value")), "integer_value"), []


_DIAG = ("index_time", "record_end", "dead")


def _keep(s: pl.DataFrame, *values: str, drop: pl.Expr | None = None, extra: tuple[str, ...] = ()) -> pl.DataFrame:
    """Label rows: keys, label values, the diagnostics and __drop (why the row is dropped, or null)."""
    drop = pl.lit(None, dtype=pl.String) if drop is None else drop
    return s.with_columns(drop.alias("__drop")).select("subject_id", "prediction_time", *values, *_DIAG, *extra,
                                                        "__drop")


def _survival_rows(s: pl.DataFrame, lab, events: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """boolean_value (event observed), float_value (days to the event or to censoring)."""
    day = 86400.0
    h = to_timedelta(parse_duration(lab.horizon))
    s = _first_after(s, events[lab.event], "ev")
    end = pl.min_horizontal(pl.col("record_end"), pl.col("prediction_time") + h)
    if lab.censor_on:
        cens = pl.concat([events[c].select("subject_id", "time") for c in lab.censor_on])
        s = _first_after(s, cens, "cens")
        end = pl.min_horizontal(end, pl.col("cens_first"))
    s = s.with_columns(end.alias("fu_end"))
    observed = pl.col("ev_first").is_not_null() & (pl.col("ev_first") <= pl.col("fu_end"))
    t_end = pl.when(observed).then(pl.col("ev_first")).otherwise(pl.col("fu_end"))
    s = s.with_columns(observed.alias("boolean_value"),
                       ((t_end - pl.col("prediction_time")).dt.total_microseconds() / (day * 1e6))
                       .cast(pl.Float32).alias("float_value"))
    reason = ("no follow-up", "non-events censored at the prediction time (0 days of follow-up)")
    drop = pl.when(~pl.col("boolean_value") & (pl.col("float_value") <= 0)).then(pl.lit(reason[0]))
    return _keep(s, "boolean_value", "float_value", drop=drop), [reason]


def _with_duration(s: pl.DataFrame, lab, events: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """s with dur (days from the origin to the first duration_to event, null if none) and seen
    (days of record after the origin)."""
    day = 86400.0
    ends = pl.concat([events[c].select("subject_id", "time") for c in lab.duration_to])
    s = _first_after(s, ends, "end")
    origin = pl.col("index_time") if lab.from_index else pl.col("prediction_time")
    dur = (pl.col("end_first") - origin).dt.total_microseconds() / (day * 1e6)
    s = s.with_columns(dur.alias("dur"),
                       ((pl.col("record_end") - origin).dt.total_microseconds() / (day * 1e6)).alias("seen"))
    return s


def _regression_rows(s: pl.DataFrame, lab, events: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """float_value: the duration in days (samples without an end event are dropped)."""
    s = _with_duration(s, lab, events).with_columns(pl.col("dur").cast(pl.Float32).alias("float_value"))
    reason = ("no end event", f"none of {', '.join(lab.duration_to)} after the prediction time (duration unknown)")
    return _keep(s, "float_value", drop=pl.when(pl.col("dur").is_null()).then(pl.lit(reason[0]))), [reason]


def _binary_rows(s: pl.DataFrame, lab, events: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """boolean_value: duration above a threshold (duration_to + threshold), or the outcome in a window."""
    if lab.duration_to is None:
        return _window_rows(s, lab, events)
    day = 86400.0
    s = _with_duration(s, lab, events)
    thr = parse_duration(lab.threshold) / day
    known = pl.col("dur").is_not_null() | (pl.col("seen") > thr)
    s = s.with_columns(
        pl.when(pl.col("dur").is_not_null()).then(pl.col("dur") > thr).otherwise(True).alias("boolean_value"))
    reason = ("censoring", f"record ends within {lab.threshold} without {', '.join(lab.duration_to)} "
                           "(duration unknown)")
    return _keep(s, "boolean_value", drop=pl.when(~known).then(pl.lit(reason[0]))), [reason]


def _window_rows(s: pl.DataFrame, lab, events: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """boolean_value: the outcome occurs in the window (end_at and censoring rules applied)."""
    st, en = lab.window.seconds()
    end_expr: float | pl.Expr = en
    if lab.end_at:
        # the first end_at event after the window's start (t for every task whose window starts at
        # t; an ACES `start -> X` window that starts later, e.g. after a gap, searches from there)
        s = (_first_after(s, events[lab.end_at], "endat") if st == 0 else
             _window_stats(s, events[lab.end_at], st, math.inf, "endat").drop("endat_n"))
        w_end = pl.col("prediction_time") + to_timedelta(en) if not math.isinf(en) else None
        e = pl.col("endat_first")
        s = s.with_columns((pl.min_horizontal(e, w_end) if w_end is not None else e).alias("__end"))
        end_expr = pl.col("__end")
    if isinstance(end_expr, pl.Expr):
        # no end_at occurrence: the window runs to its nominal end (or forever)
        nominal = (pl.col("prediction_time") + to_timedelta(en)) if not math.isinf(en) else pl.lit(None, dtype=pl.Datetime("us"))
        s = s.with_columns(pl.coalesce(pl.col("__end"), nominal).alias("__end"))
        s = _window_stats(s, events[lab.outcome], st, pl.col("__end").fill_null(pl.datetime(9999, 1, 1)), "y")
        window_end = pl.col("__end")
    else:
        s = _window_stats(s, events[lab.outcome], st, en, "y")
        window_end = pl.col("prediction_time") + to_timedelta(en) if not math.isinf(en) else pl.lit(None, dtype=pl.Datetime("us"))
    s = s.with_columns((pl.col("y_n") > 0).alias("boolean_value"), window_end.alias("w_end"))
    covered = pl.col("w_end").is_not_null() & (pl.col("record_end") >= pl.col("w_end"))
    dead = pl.col("dead").fill_null(False)
    s = s.with_columns((~pl.col("boolean_value") & ~covered & dead).alias("__death_only"))
    drop, reasons = _window_drops(lab, covered, dead)
    return _keep(s, "boolean_value", drop=drop, extra=("__death_only",)), reasons


def _window_drops(lab, covered: pl.Expr, dead: pl.Expr) -> tuple[pl.Expr | None, list[tuple[str, str]]]:
    """Why a windowed binary row is dropped (the first reason that applies), and the reasons in order."""
    reasons: list[tuple[str, str]] = []
    drop = pl.lit(None, dtype=pl.String)
    if lab.censoring == "exclude":
        # A negative is kept only if the record covers the whole window, or ends in death.
        lost = ~pl.col("boolean_value") & ~covered & ~dead
        reasons.append(("censoring", "exclude: negatives whose record ends before the window closes (deaths kept)"))
        drop = pl.when(lost).then(pl.lit("censoring")).otherwise(drop)
        if lab.end_at:  # an open window (no nominal end) closes only at end_at
            reasons.insert(0, ("end_at open", f"negatives without {lab.end_at} after the prediction time "
                                              "(open window, deaths kept)"))
            drop = pl.when(lost & pl.col("w_end").is_null()).then(pl.lit("end_at open")).otherwise(drop)
    if lab.end_at and lab.end_at_missing == "drop":  # no end_at event after t: no label window (as ACES)
        reasons.insert(0, ("end_at missing", f"samples without {lab.end_at} after the prediction time "
                                             "(end_at_missing: drop)"))
        drop = pl.when(pl.col("endat_first").is_null()).then(pl.lit("end_at missing")).otherwise(drop)
    return drop, reasons


# kind name -> how its label rows are built from the index samples (the labeler's part of each kind):
# each returns (rows with __drop = the reason a row is dropped or null, [(reason, rule text)] in order)
_LABELERS = {"binary": _binary_rows, "multilabel": _multilabel_rows, "survival": _survival_rows,
             "regression": _regression_rows}


def export_labels(ls: LabelSet, cohort: Cohort, out_dir: Path) -> Path:
    """Write a task's labels to out_dir/<task>/<split>/0.parquet in the MEDS LabelSchema (the layout
    ACES writes under MEDS-DEV and its models read), atomically; benchmark.label_files.write_label_dir.

    Args:
        ls: the labels.
        cohort: the cohort (its metadata/subject_splits.parquet places each subject).
        out_dir: the export folder (created if needed; a task family becomes a subfolder).

    Returns:
        The task's folder written.

    Raises:
        UserError: the cohort has no usable splits file, or the folder cannot be written.
    """
    from benchmark.label_files import write_label_dir

    return write_label_dir(ls.labels, cohort.splits, Path(out_dir) / ls.task.name)
