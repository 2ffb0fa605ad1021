"""Suitability warnings: is this task's label set fit to benchmark on, on this cohort?

Checked once, when the labels are computed (they are cached with them), and shown by `labels`
and `run`:
- prevalent cases (onset tasks only): positives whose outcome is already there at the prediction
  time, i.e. coded at or before it, or first coded by the end of the hospital stay the prediction
  time falls in or that begins within 24 h of it (emergency-department labs often open the record). Hospital diagnoses are time-stamped at discharge (MIMIC-IV), so a
  chronic disease coded at the first discharge was present during the whole stay.
- negatives kept only because the record ends in death (`censoring: exclude` keeps them): the
  task then separates onset from death rather than onset from no onset;
- too few held-out positives / events for a confidence interval (the metrics' minimum);
- a split with no samples.
"""

from __future__ import annotations

import math
from datetime import timedelta

import polars as pl

from benchmark.durations import parse_duration
from benchmark.kinds import kind_of
from benchmark.metrics.bootstrap import MIN_CI_SUBJECTS
from benchmark.vocabulary import REQUIRED_SPLITS, SPLITS

PREVALENT_SHARE = 0.2   # warn when more than this share of positives are prevalent cases
DEATH_ONLY_SHARE = 0.9  # warn when more than this share of negatives are kept only by death
STAY_END = "__stay_end"  # the events of the dataset's `hospital_discharge` predicate, when mapped
STAY_START = "__stay_start"  # ... and of its `hospital_admission` predicate
STAY_PREDICATE = "hospital_discharge"
STAY_START_PREDICATE = "hospital_admission"
STAY_GRACE = timedelta(hours=24)  # a stay that begins this soon after the prediction time still counts
NOT_ONSET = ("death",)  # outcomes that cannot be present before they happen


def is_onset_task(task) -> bool:
    """A binary task that excludes its outcome up to the prediction time ("people without it then")."""
    lab = task.label
    if not lab.outcome or lab.outcome in NOT_ONSET:   # label.outcome: binary tasks only
        return False
    return any(c.predicate == lab.outcome and parse_duration(c.end) <= 0 for c in task.exclusion)


def extra_predicates(task, dataset_rules: dict) -> dict:
    """Dataset predicates the checks read besides the task's: the stay end for onset tasks."""
    if is_onset_task(task) and STAY_PREDICATE in dataset_rules and STAY_START_PREDICATE in dataset_rules:
        return {STAY_END: dataset_rules[STAY_PREDICATE], STAY_START: dataset_rules[STAY_START_PREDICATE]}
    return {}


def _stay_end_at(pos: pl.DataFrame, events: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """For each (subject_id, prediction_time) in or right before a hospital stay, the end of that stay.

    The stay is the one ending at the first discharge at or after the prediction time, if it began
    (its last admission before that discharge) no later than STAY_GRACE after the prediction time:
    a record that starts with emergency-department labs a few hours before the admission belongs to
    that stay. Rows with no such stay are left out.
    """
    key = ["subject_id", "prediction_time"]
    p = pos.sort("prediction_time")
    adm = events[STAY_START].select("subject_id", pl.col("time").alias("adm")).sort("adm")
    dis = events[STAY_END].select("subject_id", pl.col("time").alias("end")).sort("end")
    nxt = (p.join_asof(dis, left_on="prediction_time", right_on="end", by="subject_id", strategy="forward",
                       check_sortedness=False)
           .drop_nulls("end").sort("end"))
    stay = nxt.join_asof(adm, left_on="end", right_on="adm", by="subject_id", strategy="backward",
                         check_sortedness=False)
    return (stay.filter(pl.col("adm").is_not_null() & (pl.col("adm") <= pl.col("prediction_time") + STAY_GRACE))
            .select(*key, "end"))


def suitability_warnings(task, labels: pl.DataFrame, diag: pl.DataFrame, events: dict[str, pl.DataFrame],
                         splits: pl.DataFrame | None, steps: list) -> list[str]:
    """The warnings of one task's label set.

    Args:
        task: the task spec.
        labels: its LabelSchema rows.
        diag: the same rows with the labeler's diagnostics (dead, __death_only...).
        events: predicate name -> events (subject_id, time) the labeler read.
        splits: subject_id -> split (None if the cohort has none).
        steps: the attrition steps (the last one carries the per-split counts).

    Returns:
        One message per problem, each with its numbers and a fix.
    """
    out = []
    if labels.height == 0:
        return [f"task {task.name}: no samples at all; fix: check the attrition table "
                f"(`python -m benchmark labels --task {task.name}`) for the rule that drops them"]
    final = steps[-1] if steps else None
    if splits is not None and final is not None:
        out += _empty_splits(task, splits, final)
        out += _held_out_support(task, labels, splits, final)
    out += _prevalent(task, labels, events)
    out += _death_only(task, diag)
    return out


def _empty_splits(task, splits: pl.DataFrame, final) -> list[str]:
    present = set(splits["split"].unique().to_list()) | set(REQUIRED_SPLITS)
    counts = ", ".join(f"{final.by_split.get(s, 0)} {s}" for s in SPLITS)
    return [f"task {task.name}: the {s} split has no samples ({counts}); fix: check the cohort's "
            f"metadata/subject_splits.parquet and the task's rules (models need train, scores need held_out)"
            for s in SPLITS if s in present and final.by_split.get(s, 0) == 0]


def _held_out_support(task, labels: pl.DataFrame, splits: pl.DataFrame, final) -> list[str]:
    """The rarer class (binary), events (survival), rows (regression) or each label's positives
    (multilabel) among held-out samples, against the CI minimum of the metrics."""
    n = final.by_split.get("held_out", 0)
    if n == 0:
        return []  # reported as an empty split
    held = labels.join(splits.filter(pl.col("split") == "held_out"), on="subject_id", how="inner")
    names = task.label_names() or []
    kind = kind_of(task.kind)
    short = kind.support_counts(kind.targets(held, len(names) or 1), names)
    low = [(w, k) for w, k in short if k < MIN_CI_SUBJECTS]
    if not low:
        return []
    what = ", ".join(f"{k} {w}" for w, k in low)
    return [f"task {task.name}: the held-out split has only {what} (of {n} samples; a confidence interval needs "
            f"at least {MIN_CI_SUBJECTS}): its metrics will be reported without CIs and paired comparisons "
            f"refused; fix: use a larger cohort or a larger held-out split"]


def _prevalent(task, labels: pl.DataFrame, events: dict[str, pl.DataFrame]) -> list[str]:
    """Positives whose outcome is there at the prediction time (see the module doc)."""
    lab = task.label
    # only onset tasks ("people without it then"): for a recurrent outcome that the task does not
    # exclude before the prediction time (e.g. readmission), an earlier occurrence is history
    if not is_onset_task(task) or lab.outcome not in events:
        return []
    pos = labels.filter(pl.col("boolean_value")).select("subject_id", "prediction_time")
    if pos.height == 0:
        return []
    ev = pos.join(events[lab.outcome].select("subject_id", "time"), on="subject_id", how="inner")
    before = ev.filter(pl.col("time") <= pl.col("prediction_time")).select("subject_id", "prediction_time")
    flagged = before
    stay = ""
    if STAY_END in events and STAY_START in events:
        first = (ev.filter(pl.col("time") > pl.col("prediction_time"))
                 .group_by("subject_id", "prediction_time").agg(pl.col("time").min().alias("first")))
        in_stay = (first.join(_stay_end_at(pos, events), on=["subject_id", "prediction_time"])
                   .filter(pl.col("first") <= pl.col("end")).select("subject_id", "prediction_time"))
        flagged = pl.concat([before, in_stay])
        stay = (f", or first coded by the end of the hospital stay the prediction time falls in "
                f"({STAY_PREDICATE}: diagnoses are coded at discharge, so the disease was there during the stay)")
    k = flagged.unique().height
    if k == 0 or k / pos.height <= PREVALENT_SHARE:
        return []
    return [f"task {task.name}: {k} of {pos.height} positives ({k / pos.height:.0%}) already have "
            f"{lab.outcome} at the prediction time (coded at or before it{stay}): prevalent cases, not new "
            f"outcomes; fix: exclude {lab.outcome} up to the end of the index stay (e.g. index at the first "
            f"{STAY_PREDICATE}) or start the label window later"]


def _death_only(task, diag: pl.DataFrame) -> list[str]:
    """Negatives kept only because the record ends in death (censoring: exclude keeps them)."""
    if "__death_only" not in diag.columns or task.label.censoring != "exclude":
        return []
    neg = diag.filter(~pl.col("boolean_value"))
    k = int(neg["__death_only"].sum()) if neg.height else 0
    if neg.height == 0 or k / neg.height <= DEATH_ONLY_SHARE:
        return []
    end = task.label.window.end if task.label.window else "?"
    horizon = "" if math.isinf(parse_duration(end)) else f" {end}"
    return [f"task {task.name}: {k} of {neg.height} negatives ({k / neg.height:.0%}) are kept only because the "
            f"record ends in death before the{horizon} window closes (censoring: exclude keeps deaths, drops "
            f"other short records): the negatives are mostly deaths, so the labels separate the outcome from "
            f"death; fix: use data whose follow-up covers the window, a shorter window, or "
            f"'censoring: negative'"]
