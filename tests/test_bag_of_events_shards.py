"""Shard-parallel bag-of-events featurization (issue 19): the same matrices as the serial featurizer
it replaced (tests/_bag_of_events_serial.py, the code before the change), whatever the number of
workers, with at most `workers` shards in flight at once."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import benchmark.features.bag_of_events as boe
from benchmark.features.bag_of_events import EXTENDED, FEATURE_SETS, default_workers, featurize
from benchmark.vocabulary import SPLITS
from tests._bag_of_events_serial import build_serial

TASKS = ("oncology/mortality_1y", "icu/in_hospital_mortality_24h")  # the second has an input window


def _task_data(task_name, cohort, work):
    from benchmark.labels import extract_labels
    from benchmark.model_api import TaskData
    from benchmark.task_registry import load_tasks
    task = load_tasks()[task_name]
    labels = (extract_labels(task, cohort).labels.join(cohort.splits, on="subject_id")
              .sort("subject_id", "prediction_time"))
    return TaskData(task=task, cohort=cohort, labels=labels, seed=0, work_dir=work)


def _assert_same(a, b):
    """Same names and, per split, the same CSR arrays (explicit zeros of last values included)."""
    assert a.names == b.names
    for s in SPLITS:
        x, y = a.block(s), b.block(s)
        assert x.shape == y.shape and x.dtype == y.dtype == np.float32, s
        x.sort_indices(), y.sort_indices()
        np.testing.assert_array_equal(x.indptr, y.indptr, err_msg=s)
        np.testing.assert_array_equal(x.indices, y.indices, err_msg=s)
        np.testing.assert_array_equal(x.data, y.data, err_msg=s)


@pytest.mark.parametrize("task_name", TASKS)
@pytest.mark.parametrize("feature_set", FEATURE_SETS)
def test_parallel_equals_serial_equals_old(small_cohort, tmp_path, cache, task_name, feature_set):
    data = _task_data(task_name, small_cohort, tmp_path / "w0")
    old = build_serial(data, feature_set=feature_set)
    assert len(small_cohort.data_files()) > 2 and sum(x.nnz for x in old.X.values()) > 0
    for workers in (1, 3):
        data.work_dir = tmp_path / f"w{workers}"  # a fresh cache folder: computed, not read
        _assert_same(featurize(data, feature_set=feature_set, workers=workers), old)


def test_default_cohort_matches_old(default_cohort, tmp_path, cache):
    """The embedded default cohort (5000 subjects) as `run` featurizes it, both feature sets."""
    data = _task_data("oncology/mortality_1y", default_cohort, tmp_path / "w")
    for feature_set in FEATURE_SETS:
        data.work_dir = tmp_path / feature_set
        _assert_same(featurize(data, feature_set=feature_set), build_serial(data, feature_set=feature_set))


def test_at_most_workers_shards_in_flight_and_no_spill_left(small_cohort, tmp_path, cache, monkeypatch):
    """Each shard is one unit of work, `workers` at a time (so memory is one shard per worker), and
    the per-shard spill files are gone afterwards."""
    data = _task_data("oncology/mortality_1y", small_cohort, tmp_path / "w")
    real = boe._shard_pass
    lock, state = threading.Lock(), {"now": 0, "max": 0, "files": []}

    def spy(cohort, f, *args, **kw):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            state["files"].append(f)
        time.sleep(0.05)  # keep the shard in flight long enough for the workers to overlap
        try:
            return real(cohort, f, *args, **kw)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(boe, "_shard_pass", spy)
    featurize(data, feature_set=EXTENDED, workers=2)
    assert sorted(state["files"]) == small_cohort.data_files()  # every shard once
    assert state["max"] == 2
    assert not list(data.work_dir.glob(".bag_of_events-shards-*"))
    assert default_workers(1) == 1 and default_workers(10_000) >= 1
    with pytest.raises(ValueError, match="workers"):
        featurize(data, workers=0)


@pytest.mark.slow
def test_real_mimic_demo_matches_old(mimic_meds_020, tmp_path, cache):
    """Real MIMIC-IV demo MEDS (its profile's ICD truncation and demographics), both feature sets."""
    from benchmark.data.cohort import Cohort
    data = _task_data("meds_dev/mortality_in_icu_first_24h", Cohort(mimic_meds_020), tmp_path / "w")
    for feature_set in FEATURE_SETS:
        data.work_dir = tmp_path / feature_set
        _assert_same(featurize(data, feature_set=feature_set, workers=2), build_serial(data, feature_set=feature_set))


@pytest.fixture(scope="module")
def many_shards(tmp_path_factory):
    """6000 subjects in shards of 200 (31 shards): each shard a small share of the output."""
    from benchmark.data.cohort import Cohort
    from data_prep.synthetic import generate
    return Cohort(generate(tmp_path_factory.mktemp("many") / "cohort", n_subjects=6000, seed=3, images=False,
                           shard_size=200))


def test_demographics_read_per_shard_for_the_samples_only(many_shards, tmp_path, cache, monkeypatch):
    """Demographics come shard by shard, for the shard's samples' subjects only: the whole cohort's
    one-row-per-subject table (Cohort.demographics, which grew the peak RSS 100k -> 1M) is never read."""
    from benchmark.data.cohort import Cohort
    from benchmark.data.profiles import read_demographics as real
    data = _task_data("oncology/mortality_1y", many_shards, tmp_path / "w")
    expected = build_serial(data)
    calls = []

    def spy(cohort, spec, *, files=None, subjects=None):
        calls.append((files, subjects))
        return real(cohort, spec, files=files, subjects=subjects)

    def refuse(self):
        raise AssertionError("the featurizer read the demographics of every subject of the cohort")

    monkeypatch.setattr(boe, "read_demographics", spy, raising=False)
    monkeypatch.setattr(Cohort, "demographics", refuse)
    _assert_same(featurize(data, workers=2), expected)
    sample_subjects = set(data.labels["subject_id"].to_list())
    assert len(calls) == len(many_shards.data_files())
    for files, subjects in calls:
        assert files is not None and len(files) == 1
        assert set(subjects["subject_id"].to_list()) <= sample_subjects


def test_output_assembled_in_place(many_shards, tmp_path, cache):
    """The per-split CSR arrays are allocated once and filled from one shard's entries at a time:
    the numpy memory peak of a featurization (tracemalloc sees numpy's buffers, not polars') is the
    output plus per-shard and per-sample constants, 1.6x the output's bytes here; holding every
    entry, concatenating them and converting COO -> CSR (the code before) took 3.85x."""
    import tracemalloc
    data = _task_data("oncology/mortality_1y", many_shards, tmp_path / "w")
    featurize(data, workers=2)  # once first: the modules it imports on first use are not the featurizer's memory
    data.work_dir = tmp_path / "w2"
    tracemalloc.start()
    try:
        bag = featurize(data, workers=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out = sum(x.data.nbytes + x.indices.nbytes + x.indptr.nbytes for x in bag.X.values())
    assert out > 500_000 and len(many_shards.data_files()) >= 20
    assert peak <= 2.5 * out, f"numpy peak {peak / out:.2f}x the output matrices"
