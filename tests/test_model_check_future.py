"""check-model's "future invariance" row (benchmark.model_check, benchmark.data.future_cohort): the
oracle that needs no planted marker. Evaluation subjects' rows after their last prediction time are
deleted, or replaced by a burst, and a model fitted with the intact labels must give the same scores.

Before it, `check-model tests.model_check_models:FUTURE_CHEATER` passed every row: the cheater reads
the raw cohort (deaths after the prediction time, AUROC 0.99 on oncology/mortality_1y) but its
features skip leak/probe's marker, so the probe saw AUROC ~0.5. A model whose vocabulary and
normaliser come from every subject's whole timeline passed too.
"""

from __future__ import annotations

import os

import polars as pl
import pytest

PLANTED = "tests.model_check_models"
TASK = "oncology/mortality_1y"
EVENT_COLUMNS = ("subject_id", "time", "code", "numeric_value")


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    """A private cache: the check's 600-subject cohort and its perturbed copies are written there once."""
    d = tmp_path_factory.mktemp("future_cache")
    old = os.environ.get("MEHR_BENCH_CACHE")
    os.environ["MEHR_BENCH_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("MEHR_BENCH_CACHE", None)
    else:
        os.environ["MEHR_BENCH_CACHE"] = old


@pytest.fixture(scope="module")
def intact(cache_env):
    """(cohort, task, labels, cuts) of the check's cohort and binary task."""
    from benchmark.data.cohort import Cohort
    from benchmark.data.future_cohort import future_cuts
    from benchmark.default_cohort import ensure_default_cohort
    from benchmark.labels import extract_labels
    from benchmark.model_check import COHORT_SEED, N_SUBJECTS
    from benchmark.task_registry import load_tasks

    cohort = Cohort(ensure_default_cohort(N_SUBJECTS, COHORT_SEED))
    task = load_tasks()[TASK]
    labels = extract_labels(task, cohort, announce=False).labels
    return cohort, task, labels, future_cuts(labels, cohort.splits)


def _sorted(df: pl.DataFrame) -> pl.DataFrame:
    """Rows in a canonical order (the guard's join does not promise one), nested columns as tie data."""
    flat = [c for c, t in df.schema.items() if not t.is_nested()]
    return df.sort(flat, nulls_last=True, maintain_order=True)


def _after(df: pl.DataFrame, cuts: pl.DataFrame) -> pl.DataFrame:
    """Rows of cut subjects strictly after their cut."""
    return df.join(cuts, on="subject_id").filter(pl.col("time") > pl.col("cut"))


@pytest.mark.parametrize("variant", ["deleted", "burst"])
def test_perturbed_copy_keeps_what_the_guard_shows_and_changes_the_future(intact, cache_env, variant):
    from benchmark.data.future_cohort import DEATH_CODE, PLANTED_CODE, perturbed_cohort
    from benchmark.label_files import labels_hash
    from benchmark.runner import task_data
    from benchmark.vocabulary import SPLITS

    cohort, task, labels, cuts = intact
    assert cuts.height > 40 and set(cohort.splits.join(cuts, on="subject_id")["split"]) == {"tuning", "held_out"}
    pert = perturbed_cohort(cohort, cuts, variant)
    assert pert.root.is_relative_to(cache_env) and pert.fingerprint() != cohort.fingerprint()
    # the oracle: the leakage guard's own view of every sample of every split is unchanged
    a = task_data(task, cohort, 0, labels)
    b = task_data(task, pert, 0, labels, labels_hash(labels))  # labels passed in as `run --labels` does
    assert b.work_dir != a.work_dir  # features of the copy are never read from the intact cohort's cache
    for split in SPLITS:
        assert _sorted(a.visible_events(split, EVENT_COLUMNS).collect()).equals(
            _sorted(b.visible_events(split, EVENT_COLUMNS).collect())), split
        for m in cohort.modality_names():
            assert _sorted(a.visible_modality(m, split).collect()).equals(
                _sorted(b.visible_modality(m, split).collect())), (m, split)
    # ... while the rows after the cuts did change, and only those of cut subjects
    raw_a = cohort.scan(EVENT_COLUMNS).collect()
    raw_b = pert.scan(EVENT_COLUMNS).collect()
    fut_a, fut_b = _after(raw_a, cuts), _after(raw_b, cuts)
    assert fut_a.height > 5000
    if variant == "deleted":
        assert fut_b.height == 0 and raw_b.height == raw_a.height - fut_a.height
        assert _after(pert.modality("ct").collect(), cuts).height == 0 < _after(cohort.modality("ct").collect(),
                                                                               cuts).height
    else:
        planted = fut_b.filter(pl.col("code") == PLANTED_CODE)
        assert planted["subject_id"].n_unique() == cuts.height and planted.height > cuts.height
        assert fut_b.filter(pl.col("code") == DEATH_CODE)["subject_id"].n_unique() == cuts.height
        shifted = fut_b.filter(pl.col("code") != PLANTED_CODE)["numeric_value"].drop_nulls()
        assert shifted.sum() == pytest.approx(1.5 * fut_a["numeric_value"].drop_nulls().sum() + shifted.len(), rel=1e-5)
        ct_a, ct_b = (_after(c.modality("ct").collect(), cuts).sort("study_id") for c in (cohort, pert))
        assert (ct_b["embedding"].to_numpy() - ct_a["embedding"].to_numpy() == pytest.approx(1.0))
    others = ~pl.col("subject_id").is_in(cuts["subject_id"].implode())
    assert raw_a.filter(others).equals(raw_b.filter(others))  # train (and sample-less) subjects untouched
    for name in ("codes.parquet", "subject_splits.parquet", "dataset.json"):
        assert (pert.root / "metadata" / name).read_bytes() == (cohort.root / "metadata" / name).read_bytes()
    # written once, atomically: a second call reuses the folder; no temp folder is left next to it
    mtime = (pert.root / "metadata" / "subject_splits.parquet").stat().st_mtime_ns
    assert perturbed_cohort(cohort, cuts, variant).root == pert.root
    assert (pert.root / "metadata" / "subject_splits.parquet").stat().st_mtime_ns == mtime
    assert not [p for p in pert.root.parent.iterdir() if p.name.endswith(".tmp")]


def _rows(target: str):
    from benchmark.model_check import check_model

    report = check_model(f"{PLANTED}:{target}")
    return report, {r.check: r for r in report.rows}


@pytest.mark.parametrize("target", ["FUTURE_CHEATER", "WHOLE_TIMELINE_SCALER"])
def test_models_that_depend_on_the_future_pass_the_probe_but_fail_future_invariance(cache_env, target):
    report, rows = _rows(target)
    assert {r.check for r in report.failed} == {"future invariance binary"}, report.rows
    assert rows["leakage"].status == "pass"  # the planted marker alone misses them
    row = rows["future invariance binary"]
    assert f"{TASK} with the evaluation subjects' rows after their last prediction time deleted" in row.detail
    changed, total = (int(x) for x in row.detail.split(": ")[1].split(" tuning")[0].split(" of "))
    assert total > 40 and changed > total // 2
    assert "visible_events()" in row.fix and "training split" in row.fix
    if target == "FUTURE_CHEATER":  # a real cheat: the deaths it reads after the prediction time make the label
        assert float(rows["scores binary"].detail.split("held-out auroc ")[1]) > 0.95

