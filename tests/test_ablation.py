"""Test-time modality ablations (benchmark.ablation, `run --ablate-modalities`).

Oracle: masking a modality for some test samples must give exactly the predictions the fitted model
makes on a copy of the cohort where those subjects never had that modality's studies.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest

from benchmark.ablation import SWEEP_FRACTIONS, is_maskable, modality_ablation, modality_attribution
from benchmark.data.cohort import Cohort
from benchmark.labels import extract_labels
from benchmark.model_api import BUDGETS
from benchmark.registry import get_model
from benchmark.runner import task_data
from benchmark.task_registry import load_tasks

TASK = "oncology/mortality_1y"  # planted signal in CT and WSI embeddings (data_prep/README.md)


@pytest.fixture(scope="module")
def fitted(small_cohort, tmp_path_factory):
    import os
    cache = tmp_path_factory.mktemp("abl-cache")
    old = os.environ.get("MEHR_BENCH_CACHE")
    os.environ["MEHR_BENCH_CACHE"] = str(cache)
    try:
        task = load_tasks()[TASK]
        data = task_data(task, small_cohort, 0, extract_labels(task, small_cohort).labels)
        model = get_model("concat_lr").factory(budget=BUDGETS["smoke"], seed=0).fit(data)
        yield data, model, model.predict(data, "held_out")
    finally:
        if old is None:
            os.environ.pop("MEHR_BENCH_CACHE", None)
        else:
            os.environ["MEHR_BENCH_CACHE"] = old


def test_masking_equals_a_cohort_without_those_studies(fitted, tmp_path, monkeypatch):
    data, model, full = fitted
    assert is_maskable(model) and "ct" in model.maskable_modalities()
    held = data.frame("held_out")
    sid = held["subject_id"].to_numpy()
    drop_subjects = np.unique(sid)[::2]
    rows = np.isin(sid, drop_subjects)
    masked = model.predict_masked(data, "held_out", {"ct": rows})
    # the same subjects without any CT study, through the whole input pipeline
    root = tmp_path / "cohort"
    shutil.copytree(data.cohort.root, root)
    ct = pl.read_parquet(root / "modalities" / "ct.parquet")
    ct.filter(~pl.col("subject_id").is_in(drop_subjects.tolist())).write_parquet(root / "modalities" / "ct.parquet")
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))
    other = Cohort(root)
    data2 = task_data(data.task, other, 0, data.labels.drop("split"))
    truth = model.predict(data2, "held_out")
    np.testing.assert_allclose(masked.score, truth.score, rtol=1e-5, atol=1e-6)
    assert not np.allclose(masked.score[rows], full.score[rows])   # CT mattered for those rows
    np.testing.assert_array_equal(masked.score[~rows], full.score[~rows])  # the others are untouched
    assert masked.info["modality_presence"]["ct"] < full.info["modality_presence"]["ct"]


def test_attribution_block_renders_like_late_fusion(fitted):
    data, model, full = fitted
    att = modality_attribution(model, data, full)
    assert att["metric"] == "auroc" and 0.5 < att["metric_all"] <= 1
    by = {r["modality"]: r for r in att["modalities"]}
    assert set(by) == set(model.maskable_modalities())
    for r in by.values():
        assert r["drop"] == pytest.approx(att["metric_all"] - r["metric_without"])
        assert r["n_rows_with"] <= data.frame("held_out").height
    assert max(r["drop"] for r in by.values()) > 0  # an image modality carries the planted signal
    from leaderboard.figures import explanation_figures
    figs, _ = explanation_figures("concat_lr", att, 0)
    assert figs and "<svg" in str(figs[0])


def test_ablation_sweep_is_nested_and_ends_at_leave_one_out(fitted):
    data, model, full = fitted
    res = modality_ablation(model, data, full, n_boot=200, seed=3)
    again = modality_ablation(model, data, full, n_boot=200, seed=3)
    assert json.dumps(res, sort_keys=True, default=str) == json.dumps(again, sort_keys=True, default=str)
    for m, curve in res["missing_sweep"].items():
        assert [p["fraction"] for p in curve] == list(SWEEP_FRACTIONS)
        assert curve[0]["value"] == pytest.approx(res["full"]["value"])
        assert curve[-1]["value"] == pytest.approx(res["leave_one_out"][m]["without"]["value"])
        ks = [p["n_subjects_masked"] for p in curve]
        assert ks == sorted(ks) and ks[0] == 0
        loo = res["leave_one_out"][m]
        paired = loo["paired"]
        assert paired["delta_full_minus_without"] == pytest.approx(res["full"]["value"] - loo["without"]["value"])
        if paired["ci_low"] is None:  # issue 12: too few outcome subjects for a CI / p
            assert paired["note"].startswith("CI not reported") and paired["p_value"] is None
        else:
            assert paired["ci_low"] <= paired["delta_full_minus_without"] <= paired["ci_high"]
    # the subsets are nested: 25% of subjects masked are among the 50%
    from benchmark.ablation import _subject_order
    inv, rank = _subject_order(data, 3)
    s25, s50 = set(np.flatnonzero(rank[inv] < 0.25 * len(rank))), set(np.flatnonzero(rank[inv] < 0.5 * len(rank)))
    assert s25 < s50


def test_run_ablate_modalities_writes_and_reruns_only_missing(small_cohort, tmp_path, monkeypatch):
    """--ablate-modalities records ablations for maskable models and says why for the others;
    a finished cell without ablations is rerun, one with them is kept."""
    from benchmark.runner import run_grid
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))
    res = tmp_path / "res"
    assert run_grid("concat_lr,logistic_regression", TASK, small_cohort, res, budget="smoke") == 0
    p = res / "concat_lr" / TASK / "seed0.json"
    rec = json.loads(p.read_text())
    assert "ablations" not in rec and rec["explanations"]["modalities"]
    assert "ct" in rec["model_info"]["maskable_modalities"]
    mtime = p.stat().st_mtime_ns
    assert run_grid("concat_lr,logistic_regression", TASK, small_cohort, res, budget="smoke", ablate=True) == 0
    rec = json.loads(p.read_text())
    assert p.stat().st_mtime_ns != mtime and set(rec["ablations"]["missing_sweep"]) >= {"ct"}
    lr = json.loads((res / "logistic_regression" / TASK / "seed0.json").read_text())
    assert "cannot mask" in lr["ablations"]["skipped"]
    mtime = p.stat().st_mtime_ns
    assert run_grid("concat_lr", TASK, small_cohort, res, budget="smoke", ablate=True) == 0
    assert p.stat().st_mtime_ns == mtime
    # the leaderboard draws the sweep and the attribution on the task page
    from leaderboard.build import build
    out = build(res, tmp_path / "site")
    page = next((out / "tasks").glob("*mortality_1y*.html")).read_text()
    assert "Modality ablations" in page and "concat_lr: missing-modality sweep" in page
    assert "leave-one-modality-out" in page
