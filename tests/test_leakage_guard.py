"""The leakage guard drops every event after the prediction time, and the featurizer only sees
what the guard lets through."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

from benchmark.data.cohort import Cohort
from benchmark.data.leakage import assert_no_future, visible_events
from tests.cohort_factory import make_cohort


def test_guard_drops_future_events_and_keeps_static():
    ev = pl.DataFrame({
        "subject_id": [1, 1, 1, 1, 2, 2],
        "time": [None, datetime(2020, 1, 1), datetime(2020, 1, 2), datetime(2020, 1, 3),
                 datetime(2020, 1, 1), datetime(2020, 1, 5)],
        "code": ["GENDER/F", "A", "B", "C", "A", "FUTURE"],
    }).lazy()
    samples = pl.DataFrame({"subject_id": [1, 1, 2],
                            "prediction_time": [datetime(2020, 1, 2), datetime(2020, 1, 3), datetime(2020, 1, 2)]})
    out = visible_events(ev, samples).collect().sort("subject_id", "prediction_time", "time", nulls_last=False)
    got = {(r["subject_id"], r["prediction_time"].day): [] for r in samples.iter_rows(named=True)}
    for r in out.iter_rows(named=True):
        got[(r["subject_id"], r["prediction_time"].day)].append(r["code"])
    # an event exactly at the prediction time is visible (time <= prediction_time)
    assert got == {(1, 2): ["GENDER/F", "A", "B"], (1, 3): ["GENDER/F", "A", "B", "C"], (2, 2): ["A"]}
    assert_no_future(out)


def test_assert_no_future_catches_a_leak():
    bad = pl.DataFrame({"subject_id": [1], "time": [datetime(2020, 1, 3)], "prediction_time": [datetime(2020, 1, 2)]})
    with pytest.raises(AssertionError):
        assert_no_future(bad)


def test_featurizer_never_sees_post_prediction_events(tmp_path, monkeypatch):
    """A code that occurs only after each prediction time must not become a feature."""
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))
    from benchmark.features.bag_of_events import featurize
    from benchmark.labels import extract_labels
    from benchmark.runner import task_data
    from benchmark.task_registry import load_tasks

    events = []
    for s in range(1, 41):
        events += [(s, None, "GENDER/F" if s % 2 else "GENDER/M"), (s, "1950-01-01", "MEDS_BIRTH"),
                   (s, "2019-12-01", "ICD10CM/C34.90"), (s, "2019-12-15", "LOINC/2160-0", 1.0 + s / 100),
                   (s, "2020-01-01", "RXNORM/2555"),
                   (s, "2020-01-01 01:00", "SYNTH/LEAK_PROBE"),  # after the prediction time
                   (s, "2021-06-01", "ICD10CM/I10")]
    splits = {s: ("train" if s <= 30 else "tuning" if s <= 35 else "held_out") for s in range(1, 41)}
    cohort = Cohort(make_cohort(tmp_path / "c", events, splits=splits))
    task = load_tasks()["oncology/mortality_1y"]
    data = task_data(task, cohort, 0, extract_labels(task, cohort).labels)
    paper = featurize(data)  # the MEHRT paper's B.1 set (default): no post-prediction code either
    assert not any("LEAK" in n or "I10" in n for n in paper.names), paper.names
    feats = featurize(data, feature_set="extended")  # ours, with last values
    assert not any("LEAK" in n or "I10" in n for n in feats.names), feats.names
    assert "count:ICD10CM/C34" in feats.names  # truncated to three characters
    assert "count:RXNORM/2555" in feats.names  # an event exactly at the prediction time is visible
    assert "last:LOINC/2160-0" in feats.names
    X = feats.block("train")
    col = feats.names.index("last:LOINC/2160-0")
    assert X[0, col] == pytest.approx(1.01)


def test_modality_guard_drops_label_columns_and_future_studies():
    from benchmark.data.leakage import visible_modality
    mod = pl.DataFrame({"subject_id": [1, 1], "time": [datetime(2020, 1, 1), datetime(2020, 1, 5)],
                        "embedding": [[0.1, 0.2], [0.3, 0.4]], "labels": [[1, 0], [0, 1]]}).lazy()
    samples = pl.DataFrame({"subject_id": [1], "prediction_time": [datetime(2020, 1, 2)]})
    out = visible_modality(mod, samples).collect()
    assert out.height == 1 and "labels" not in out.columns


def test_multi_split_blocks_stack_splits_in_order(tmp_path, monkeypatch):
    """BagOfEvents.stacked(("train", "tuning")) is the train block followed by the tuning block, in
    TaskData.stacked order; block() takes one split only, so label order and stacked order cannot be
    mixed up silently."""
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))
    import numpy as np
    from benchmark.features.bag_of_events import featurize
    from benchmark.labels import extract_labels
    from benchmark.runner import task_data
    from benchmark.task_registry import load_tasks

    events = []
    for s in range(1, 31):
        events += [(s, "2019-12-01", "ICD10CM/C34.90"), (s, "2020-01-01", "RXNORM/2555"),
                   (s, "2019-12-15", "LOINC/2160-0", float(s)), (s, "2021-06-01", "ICD10CM/I10")]
    splits = {s: ("train" if s % 3 else "tuning") for s in range(1, 31)}
    cohort = Cohort(make_cohort(tmp_path / "c", events, splits=splits))
    task = load_tasks()["oncology/mortality_1y"]
    data = task_data(task, cohort, 0, extract_labels(task, cohort).labels)
    feats = featurize(data, feature_set="extended")  # last values: ours
    col = feats.names.index("last:LOINC/2160-0")
    both = feats.stacked(("train", "tuning"))[:, col].toarray().ravel()
    expect = np.concatenate([data.samples(s)["subject_id"].to_numpy() for s in ("train", "tuning")])
    np.testing.assert_allclose(both, expect.astype(float))
    np.testing.assert_array_equal(data.stacked(("train", "tuning"))["subject_id"].to_numpy(), expect)
    assert not np.array_equal(data.frame(("train", "tuning"))["subject_id"].to_numpy(), expect)  # label order differs
    np.testing.assert_array_equal(data.y(("train", "tuning"), stacked=True),
                                  np.concatenate([data.y("train"), data.y("tuning")]))
    with pytest.raises(TypeError, match="stacked"):
        feats.block(("train", "tuning"))
