"""The curated binarized risk-factor vector of a task (task YAML key `risk_factors`), torch-free.

"Fusion is not one-size-fits-all: Cross-Modal Representation Alignment for Time-to-Event Modeling"
(section 2.1) feeds its fusion heads either an EHR foundation-model embedding or "a manually curated
1-hot encoding, where task-specific features [...] are selected and binarized". This module builds the
second: one 0/1 column per `RiskFactor` of the task (benchmark.taskspec), in label order:

* predicate form: 1 when the sample sees an event of the dataset predicate in the factor's window
  (default: ever before the prediction time); with value bounds, when the most recent value in the
  window meets them. Events come only from `TaskData.visible_events` (the leakage guard: nothing
  after the prediction time, the task's input window applied); a static (null-time) row counts as
  "ever", so only in a window without a start;
* age form: age at the prediction time (the profile's birth time) in [age_min, age_max);
* sex form: the profile's sex value.

Missing information is 0 (no event, no value, no birth time). A predicate the dataset's map does not
name gives a column of zeros and is listed in `RiskFactors.unmapped`, so a task runs on every
dataset and says which factors it could not read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from benchmark.durations import to_timedelta
from benchmark.errors import UserError
from benchmark.model_api import TaskData
from benchmark.predicates import DatasetRule
from benchmark.vocabulary import SPLITS


@dataclass
class RiskFactors:
    """The curated matrix: X [n, F] float32 0/1 in label order, the factor names, and the factors
    whose predicate the dataset does not map (their columns are 0)."""

    X: np.ndarray
    names: list[str]
    unmapped: list[str] = field(default_factory=list)


def _task_file(data: TaskData) -> str:
    return f"tasks/{data.task.name}.yaml"


def risk_factor_matrix(data: TaskData) -> RiskFactors:
    """Compute the task's curated risk factors for every labeled sample.

    Args:
        data: the task data; its task must declare `risk_factors`.

    Returns:
        RiskFactors (rows aligned with data.labels).

    Raises:
        UserError: the task declares no risk factors (naming the task file and the fix).
    """
    factors = data.task.risk_factors
    if not factors:
        raise UserError(f"task {data.task.name} declares no risk factors, so it has no curated EHR vector",
                        file=_task_file(data), field="risk_factors",
                        fix="add a 'risk_factors' list to the task file (tasks/README.md), or use another "
                            "EHR source (InputConfig(ehr_source='bag' or 'fm'))")
    samples = data.labels.select("subject_id", "prediction_time").with_row_index("row")
    n = samples.height
    X = np.zeros((n, len(factors)), dtype=np.float32)
    wanted = {f.predicate for f in factors if f.predicate is not None}
    rules = data.cohort.predicate_map() if wanted else {}
    unmapped = sorted(p for p in wanted if p not in rules)
    rows = _predicate_rows(data, samples, factors, {p: rules[p] for p in wanted if p in rules})
    for j, r in rows.items():
        X[r, j] = 1.0
    if any(f.predicate is None for f in factors):
        _demographic_columns(data, samples, factors, X)
    return RiskFactors(X=X, names=[f.name for f in factors],
                       unmapped=[f.name for f in factors if f.predicate in unmapped])


def _predicate_rows(data: TaskData, samples: pl.DataFrame, factors, rules: dict[str, DatasetRule]) -> dict[int, np.ndarray]:
    """factor index -> label rows where the predicate factor is 1 (one guarded scan, collect_all)."""
    todo = [(j, f) for j, f in enumerate(factors) if f.predicate is not None and f.predicate in rules]
    if not todo:
        return {}
    text = any(rules[f.predicate].reads_text() for _, f in todo)
    cols = ("subject_id", "time", "code", "numeric_value") + (("text_value",) if text else ())
    ev = data.visible_events(SPLITS, columns=cols)  # the leakage guard (and the task's input window)
    keys = samples.lazy().select("row", "subject_id", "prediction_time")
    queries = []
    for j, f in todo:
        rule = rules[f.predicate]
        q = ev.filter(rule.expr()).select("subject_id", "prediction_time", "time",
                                          rule.value_expr().cast(pl.Float64).alias("v"))
        start, end = f.window_seconds()
        if math.isinf(start):
            in_window = pl.col("time").is_null() | (pl.col("time") <= pl.col("prediction_time") + to_timedelta(end))
        else:  # a static row has no time: it is "ever", outside any window with a start
            in_window = ((pl.col("time") > pl.col("prediction_time") + to_timedelta(start))
                         & (pl.col("time") <= pl.col("prediction_time") + to_timedelta(end))).fill_null(False)
        q = q.filter(in_window)
        if f.value_min is not None or f.value_max is not None:
            # the most recent non-null value in the window (static values first, then by time)
            q = (q.drop_nulls("v").sort("time", nulls_last=False)
                 .group_by("subject_id", "prediction_time").agg(pl.col("v").last()))
            q = q.filter(_bounds(pl.col("v"), f))
        queries.append(q.select("subject_id", "prediction_time").unique()
                       .join(keys, on=["subject_id", "prediction_time"]).select("row"))
    frames = pl.collect_all(queries)
    return {j: fr["row"].to_numpy() for (j, _), fr in zip(todo, frames)}


def _bounds(v: pl.Expr, f) -> pl.Expr:
    """value_min / value_max with their inclusivity."""
    ok = pl.lit(True)
    if f.value_min is not None:
        ok = ok & ((v >= f.value_min) if f.value_min_inclusive else (v > f.value_min))
    if f.value_max is not None:
        ok = ok & ((v <= f.value_max) if f.value_max_inclusive else (v < f.value_max))
    return ok


def _demographic_columns(data: TaskData, samples: pl.DataFrame, factors, X: np.ndarray) -> None:
    """Fill the age and sex factors from the dataset profile's demographics (missing -> 0)."""
    demo = samples.join(data.cohort.demographics(), on="subject_id", how="left").sort("row")
    age = ((demo["prediction_time"] - demo["birth_time"]).dt.total_days() / 365.25).to_numpy().astype(np.float64)
    sex = demo["sex"].to_numpy()
    for j, f in enumerate(factors):
        if f.sex is not None:
            X[:, j] = (sex == f.sex).astype(np.float32)
        elif f.predicate is None:
            ok = np.isfinite(age)
            if f.age_min is not None:
                ok &= np.nan_to_num(age, nan=-1.0) >= f.age_min
            if f.age_max is not None:
                ok &= np.nan_to_num(age, nan=np.inf) < f.age_max
            X[:, j] = ok.astype(np.float32)
