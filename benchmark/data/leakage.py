"""The leakage guard: the one door every model input goes through.

A model may see an event only if its time <= the prediction time of the sample it is building
(static rows with a null time are always visible). Featurizers, encoders and tokenizers call
`visible_events` / `visible_modality` on events read through `Cohort.scan`; nothing reads raw
shards for model input any other way.

A null time means "static fact" (sex, race) only for codes that never occur with a time and that no
task uses as an index, outcome or censoring event. `Cohort.scan` applies `drop_nonstatic_nulls` with
the cohort's list of other codes (benchmark.data.shard_checks.nonstatic_null_codes), so a MEDS_DEATH
row written without a time, say, never reaches a model as a "static" feature.
"""

from __future__ import annotations

from collections.abc import Collection

import polars as pl


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


def _samples(prediction_times: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    lf = prediction_times.lazy() if isinstance(prediction_times, pl.DataFrame) else prediction_times
    return lf.select(pl.col("subject_id").cast(pl.Int64),
                     pl.col("prediction_time").cast(pl.Datetime("us"))).unique(maintain_order=True)


def visible_events(events: pl.LazyFrame, prediction_times: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Events each sample may see.

    Args:
        events: LazyFrame with subject_id, time and any other columns.
        prediction_times: (subject_id, prediction_time) samples; a subject may have several.

    Returns:
        LazyFrame with the event columns plus prediction_time, one copy of an event per sample whose
        prediction_time >= event time (null-time static events go to every sample of the subject).
    """
    joined = events.join(_samples(prediction_times), on="subject_id", how="inner")
    return joined.filter(pl.col("time").is_null() | (pl.col("time") <= pl.col("prediction_time")))


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
