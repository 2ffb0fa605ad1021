"""The leakage guard: the one door every model input goes through.

A model may see an event only if its time <= the prediction time of the sample it is building
(static rows with a null time are always visible). Featurizers, encoders and tokenizers call
`visible_events` / `visible_modality` on events read through `Cohort.scan`; nothing reads raw
shards for model input any other way.

A task's input window (task YAML `input_window: W`) narrows that further: when the samples frame
carries an `input_start` column (`with_input_window` adds it: prediction_time - W), a timed row is
visible only if input_start <= time <= prediction_time. W = 0 sets input_start one microsecond
after the prediction time, an empty range: only static (null-time) rows remain, e.g. demographics
and a PRS without a time. Rows that describe the person rather than an encounter (the dataset
profile's demographic codes: MEDS_BIRTH, sex, race and ethnicity codes, which some ETLs write with
a time) are exempt from the window start (`demographic_rows`), never from the prediction time.
`TaskData` adds the column for every sample of a windowed task, so every model family gets the same
window through the same two functions.

A null time means "static fact" (sex, race) only for codes that never occur with a time and that no
task uses as an index, outcome or censoring event. `Cohort.scan` applies `drop_nonstatic_nulls` with
the cohort's list of other codes (benchmark.data.shard_checks.nonstatic_null_codes), so a MEDS_DEATH
row written without a time, say, never reaches a model as a "static" feature.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import timedelta

import polars as pl

from benchmark.data.profiles import DEFAULT_DEMOGRAPHICS, DEMOGRAPHIC_ATTRIBUTES


def drop_nonstatic_nulls(events: pl.LazyFrame, codes: Collection[str]) -> pl.LazyFrame:
    """Drop the null-time rows of `codes` (codes that are not static facts); other rows are kept.

    Args:
        events: LazyFrame with time and code columns.
        codes: codes whose null-time rows must not be read as static.

    Returns:
        The events without those rows.
    """
    if not codes:
        return events
    return events.filter(pl.col("time").is_not_null() | ~pl.col("code").is_in(list(codes)))


INPUT_START = "input_start"  # optional samples column: earliest visible time (inclusive)


def with_input_window(samples: pl.DataFrame | pl.LazyFrame, lookback_s: float | None):
    """Add the `input_start` column of a task's input window to its samples.

    Args:
        samples: frame with a prediction_time column (DataFrame or LazyFrame; returned as given).
        lookback_s: the window W in seconds (TaskSpec.input_lookback_s()); None = no window (the
            samples are returned unchanged); 0 = static rows only.

    Returns:
        The samples, with input_start = prediction_time - W (W = 0: prediction_time + 1 us).
    """
    if lookback_s is None:
        return samples
    if not lookback_s >= 0 or math.isinf(lookback_s):
        raise ValueError(f"input window must be a finite duration >= 0 seconds, got {lookback_s}")
    pt = pl.col("prediction_time").cast(pl.Datetime("us"))
    start = (pt + timedelta(microseconds=1)) if lookback_s == 0 else (pt - timedelta(seconds=lookback_s))
    return samples.with_columns(start.alias(INPUT_START))


def demographic_rows(cohort) -> pl.Expr:
    """Rows that describe the person: the cohort profile's demographic codes (birth codes, and the
    code prefixes of sex, race and ethnicity; without a profile GENDER/, RACE/, ETHNICITY/ and
    MEDS_BIRTH). An input window does not hide them (the prediction-time rule still does).

    Args:
        cohort: a Cohort (its `profile`, if any, says where demographics live).

    Returns:
        A boolean expression over the `code` column.
    """
    profile = getattr(cohort, "profile", None)
    spec = profile.demographics if profile is not None else DEFAULT_DEMOGRAPHICS
    codes = sorted({"MEDS_BIRTH", *(s.code for s in spec.birth if s.code)})
    prefixes = sorted({s.code_prefix for a in DEMOGRAPHIC_ATTRIBUTES for s in getattr(spec, a) if s.code_prefix})
    expr = pl.col("code").is_in(codes)
    for pre in prefixes:
        expr = expr | pl.col("code").str.starts_with(pre)
    return expr.fill_null(False)


def _samples(prediction_times: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    lf = prediction_times.lazy() if isinstance(prediction_times, pl.DataFrame) else prediction_times
    cols = [pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us"))]
    if INPUT_START in lf.collect_schema().names():
        cols.append(pl.col(INPUT_START).cast(pl.Datetime("us")))
    return lf.select(cols).unique(maintain_order=True)


def visible_events(events: pl.LazyFrame, prediction_times: pl.DataFrame | pl.LazyFrame, *,
                   window_exempt: pl.Expr | None = None) -> pl.LazyFrame:
    """Events each sample may see.

    Args:
        events: LazyFrame with subject_id, time and any other columns.
        prediction_times: (subject_id, prediction_time) samples; a subject may have several. An
            optional input_start column (see `with_input_window`) also hides timed events before it.
        window_exempt: rows the input_start bound does not hide (`demographic_rows(cohort)`); the
            prediction-time bound applies to them as to every row.

    Returns:
        LazyFrame with the event columns plus prediction_time, one copy of an event per sample whose
        prediction_time >= event time (and event time >= input_start where the samples carry one);
        null-time static events go to every sample of the subject.
    """
    samples = _samples(prediction_times)
    windowed = INPUT_START in samples.collect_schema().names()
    joined = events.join(samples, on="subject_id", how="inner")
    timed_ok = pl.col("time") <= pl.col("prediction_time")
    if windowed:
        in_window = pl.col(INPUT_START).is_null() | (pl.col("time") >= pl.col(INPUT_START))
        if window_exempt is not None:
            in_window = in_window | window_exempt
        timed_ok = timed_ok & in_window
    out = joined.filter(pl.col("time").is_null() | timed_ok)
    return out.drop(INPUT_START) if windowed else out


# Sidecar item columns that hold ground truth (e.g. the CheXpert labels of a CXR study, known only
# once the report is signed). They never reach a model, whatever the row's time.
LABEL_COLUMNS = ("labels",)


def visible_modality(modality: pl.LazyFrame, prediction_times: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Modality sidecar rows (studies) each sample may see; same rule as `visible_events`.

    Ground-truth item columns (LABEL_COLUMNS) are dropped.
    """
    names = modality.collect_schema().names()
    keep = [c for c in names if c not in LABEL_COLUMNS]
    return visible_events(modality.select(keep), prediction_times)


def assert_no_future(frame: pl.DataFrame) -> None:
    """Raise AssertionError if any row has time > prediction_time (a guard for tests and encoders)."""
    bad = frame.filter(pl.col("time").is_not_null() & (pl.col("time") > pl.col("prediction_time")))
    if bad.height:
        raise AssertionError(f"{bad.height} rows are after their prediction time")
