"""Few-shot / label-fraction runs (benchmark.few_shot): the draws (nested, subject-level, stratified,
seeded, held-out untouched), per-cell refusals, records and files, resuming, the leaderboard's curve,
and MEHRT/EHRT pretraining reused across points."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from benchmark.errors import UserError
from benchmark.few_shot import ShotPoint, drawn_subjects, parse_points, subsample, subset_problem
from benchmark.records import ResultRecord
from benchmark.task_registry import select_tasks

TASK = select_tasks("oncology/mortality_1y")[0]  # binary
SMALL_TASK = "oncology/mortality_1y"


def _labels(seed: int = 0) -> pl.DataFrame:
    """TaskData.labels layout: 3 splits, 1-3 samples per subject; ~20% of subjects have a positive
    sample (and may also have negative ones)."""
    rng = np.random.default_rng(seed)
    rows = []
    for sid in range(1, 401):
        split = "train" if sid <= 240 else "tuning" if sid <= 320 else "held_out"
        pos_subject = rng.random() < 0.2
        for j in range(int(rng.integers(1, 4))):
            rows.append((sid, datetime(2020, 1, 1) + timedelta(days=30 * j), bool(pos_subject and j == 0), split))
    return pl.DataFrame(rows, schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"),
                                      "boolean_value": pl.Boolean, "split": pl.Utf8}, orient="row")


def _subjects(frame: pl.DataFrame, split: str) -> set[int]:
    return set(frame.filter(pl.col("split") == split)["subject_id"].to_list())


def _positive_subjects(frame: pl.DataFrame, split: str) -> set[int]:
    f = frame.filter((pl.col("split") == split) & pl.col("boolean_value"))
    return set(f["subject_id"].to_list())


# ---------------------------------------------------------------------------- flags
def test_points_parse_with_draws_and_all_has_one_draw():
    pts = parse_points("1,4,all", None, draws=3)
    assert [(p.k, p.draw) for p in pts] == [(1, 0), (1, 1), (1, 2), (4, 0), (4, 1), (4, 2), (None, 0)]
    assert [p.tag for p in pts][-2:] == ["shots-4-d2", "shots-all-d0"]
    fr = parse_points(None, "0.01,1", draws=2)
    assert [(p.fraction, p.draw) for p in fr] == [(0.01, 0), (0.01, 1), (1.0, 0)] and fr[0].tag == "frac-0.01-d0"
    for k, f, d in (("1", "0.1", 3), ("0", None, 3), ("x", None, 3), (None, "0", 3), (None, "1.5", 3), ("1", None, 0),
                    ("", None, 3)):
        with pytest.raises(UserError):
            parse_points(k, f, draws=d)


# ---------------------------------------------------------------------------- the draws
def test_draws_are_nested_in_k_and_in_fraction():
    lab = _labels()
    for split in ("train", "tuning"):
        frame = lab.filter(pl.col("split") == split)
        for draw in range(3):
            prev: set[int] = set()
            for k in (1, 2, 4, 8, 16, 64, None):
                cur = drawn_subjects(frame, TASK, ShotPoint("k_shots", k=k, draw=draw), 7, split)
                assert prev <= cur
                prev = cur
            assert prev == _subjects(lab, split)  # "all" is the whole split
            prev = set()
            for f in (0.01, 0.1, 0.5, 1.0):
                cur = drawn_subjects(frame, TASK, ShotPoint("fraction", fraction=f, draw=draw), 7, split)
                assert prev <= cur
                prev = cur


def test_k_shots_are_k_subjects_per_class_in_training_and_tuning_and_whole_subjects():
    lab = _labels()
    for k in (1, 4, 16):
        sub = subsample(lab, TASK, ShotPoint("k_shots", k=k, draw=1), 3)
        for split in ("train", "tuning"):
            drawn = _subjects(sub, split)
            pos = _positive_subjects(lab, split)  # oracle: a subject with a positive sample is in the (rarer) positive class
            assert len(drawn & pos) == min(k, len(pos)) and len(drawn - pos) == k
            # subject-level: a drawn subject keeps every one of its rows in the split, others keep none
            full = lab.filter(pl.col("split") == split)
            assert sub.filter(pl.col("split") == split).height == full.filter(pl.col("subject_id").is_in(sorted(drawn))).height
        assert sub.filter(pl.col("boolean_value") & (pl.col("split") == "train")).height >= min(k, len(_positive_subjects(lab, "train")))


def test_fraction_is_stratified_per_class():
    lab = _labels()
    sub = subsample(lab, TASK, ShotPoint("fraction", fraction=0.25, draw=0), 0)
    for split in ("train", "tuning"):
        pos, every = _positive_subjects(lab, split), _subjects(lab, split)
        drawn = _subjects(sub, split)
        assert len(drawn & pos) == int(np.ceil(0.25 * len(pos)))
        assert len(drawn - pos) == int(np.ceil(0.25 * len(every - pos)))


def test_draws_are_deterministic_per_seed_and_differ_between_draws_and_seeds():
    lab = _labels()
    p = ShotPoint("k_shots", k=8, draw=0)
    a, b = subsample(lab, TASK, p, 11), subsample(lab, TASK, p, 11)
    assert a.equals(b)
    other_draw = subsample(lab, TASK, ShotPoint("k_shots", k=8, draw=1), 11)
    other_seed = subsample(lab, TASK, p, 12)
    assert _subjects(a, "train") != _subjects(other_draw, "train")
    assert _subjects(a, "train") != _subjects(other_seed, "train")
    # the row order is kept (label order), whatever the draw order was
    assert a.select("subject_id", "prediction_time").equals(a.sort("subject_id", "prediction_time").select(
        "subject_id", "prediction_time"))


def test_held_out_is_never_subsampled():
    lab = _labels()
    held = lab.filter(pl.col("split") == "held_out")
    for p in parse_points("1,4,64,all", None, 2) + parse_points(None, "0.01,0.5", 2):
        assert subsample(lab, TASK, p, 5).filter(pl.col("split") == "held_out").equals(held)


def test_impossible_subsets_are_refused_with_a_reason():
    lab = _labels()
    one = subsample(lab, TASK, ShotPoint("k_shots", k=1, draw=0), 0)  # 2 subjects per class over train + tuning
    why = subset_problem(one, TASK, n_folds=3)
    assert why and "3-fold cross-validation" in why
    assert subset_problem(subsample(lab, TASK, ShotPoint("k_shots", k=2, draw=0), 0), TASK, n_folds=3) is None
    neg = lab.filter(~pl.col("subject_id").is_in(sorted(_positive_subjects(lab, "train"))) | (pl.col("split") != "train"))
    assert "one class in training" in subset_problem(neg, TASK, n_folds=3)
    assert "at least 2" in subset_problem(lab.filter(pl.col("subject_id").is_in([1, 400])), TASK, n_folds=3)


# ---------------------------------------------------------------------------- records
def test_record_schema_5_reads_older_files_and_round_trips_few_shot(tmp_path):
    from benchmark.results import cell_paths, predictions_path
    base = {"schema_version": 4, "model": "m", "task": "t", "task_version": 1, "task_kind": "binary", "seed": 0,
            "budget": "smoke", "main_metric": "auroc", "dataset": {"name": "d", "fingerprint": "f"},
            "n_train": 1, "n_tuning": 1, "n_test": 1, "n_events": 1, "status": "ok",
            "provenance": {"package_version": "0", "git_sha": None, "task_hash": "h", "data_fingerprint": "f",
                           "lockfile_hash": None, "hardware": {}, "cohort": "c"},
            "model_info": {"kind": "baseline", "modalities": [], "reference": "r"},
            "compute": {"wall_s": 1.0, "peak_rss_mb": 1.0}}
    assert ResultRecord.from_json_dict(base).few_shot is None
    fs = {"scheme": "k_shots", "k": 4, "draw": 2, "n_train_subjects": 8, "n_tuning_subjects": 8}
    rec = ResultRecord.from_json_dict({**base, "schema_version": 5, "few_shot": fs})
    assert rec.to_json_dict()["few_shot"] == fs and rec.few_shot.k == 4
    j, p = cell_paths(tmp_path, "m", "t", 0, "binary", point="shots-4-d2")
    assert j.name == "seed0.shots-4-d2.json" and p.name == "seed0.shots-4-d2.predictions.parquet"
    assert predictions_path(j, "binary") == p
    assert cell_paths(tmp_path, "m", "t", 0, "binary")[0].name == "seed0.json"  # default runs' files unchanged


# ---------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def few_run(small_cohort, tmp_path_factory):
    """logistic_regression, smoke, k = 1, 8, all with 2 draws on the small cohort (seconds)."""
    from benchmark import runner
    mp = pytest.MonkeyPatch()
    mp.setenv("MEHR_BENCH_CACHE", str(tmp_path_factory.mktemp("fs_cache")))
    res = tmp_path_factory.mktemp("fs_results")
    recs = runner.evaluate("logistic_regression", SMALL_TASK, data=small_cohort, results=res, budget="smoke",
                           shots=parse_points("1,8,all", None, 2))
    yield recs, res
    mp.undo()


def test_runs_record_the_point_and_refuse_impossible_cells(few_run):
    recs, res = few_run
    assert [(r.few_shot.k, r.few_shot.draw) for r in recs] == [(1, 0), (1, 1), (8, 0), (8, 1), (None, 0)]
    k1 = [r for r in recs if r.few_shot.k == 1]
    assert all(r.status == "refused" and "cross-validation" in r.refused and r.metrics is None for r in k1)
    ok = [r for r in recs if r.few_shot.k != 1]
    assert all(r.status == "ok" and r.main().value is not None for r in ok)
    assert len({r.n_test for r in recs}) == 1  # the same held-out set at every point
    assert ok[0].n_train < ok[-1].n_train and ok[0].few_shot.n_train_subjects == 16
    folder = res / "logistic_regression" / SMALL_TASK
    names = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert "seed0.json" not in names and "seed0.shots-8-d1.json" in names
    assert "seed0.shots-8-d1.predictions.parquet" in names and "seed0.shots-1-d0.predictions.parquet" not in names
    on_disk = json.loads((folder / "seed0.shots-8-d1.json").read_text())
    assert on_disk["schema_version"] == 5 and on_disk["few_shot"]["k"] == 8 and on_disk["few_shot"]["draw"] == 1


def test_finished_points_are_kept_not_recomputed(few_run, small_cohort, monkeypatch):
    from benchmark import runner
    recs, res = few_run
    monkeypatch.setattr(runner, "run_cell", lambda *a, **k: pytest.fail("a finished cell was recomputed"))
    again = runner.evaluate("logistic_regression", SMALL_TASK, data=small_cohort, results=res, budget="smoke",
                            shots=parse_points("1,8,all", None, 2))
    assert [r.to_json_dict() for r in again] == [r.to_json_dict() for r in recs]


def test_leaderboard_draws_the_few_shot_curve_and_never_ranks_it(few_run, tmp_path):
    from leaderboard.build import build
    from leaderboard.figures import few_shot_curves, standalone_svg
    from leaderboard.records import load_records, read_predictions
    from leaderboard.scaling import joint_bootstrap
    from leaderboard.views import collect
    _, res = few_run
    assert load_records(res)[0] == []  # few-shot cells are not full-data results
    [site] = collect(res)
    assert site.cells == {} and len(site.few_shot[SMALL_TASK]) == 5
    view = few_shot_curves(site.tasks[SMALL_TASK], site.few_shot[SMALL_TASK], site.models, n_boot=200)
    rows = {r["point"]: r for r in view["rows"]}
    assert set(rows) == {"8", "all"} and rows["8"]["n_draws"] == 2 and rows["all"]["n_draws"] == 1
    # the point is the mean of its draws' AUROC; its CI a joint bootstrap over the draws
    k8 = [r.rec.main().value for r in site.few_shot[SMALL_TASK] if r.rec.few_shot.k == 8]
    assert rows["8"]["value"] == pytest.approx(np.mean(k8), abs=1e-9)
    frames = [read_predictions(r.pred) for r in site.few_shot[SMALL_TASK] if r.rec.few_shot.k == 8]
    _, lo, hi, _, note = joint_bootstrap({"draws": frames}, 200)
    assert (rows["8"]["ci_low"], rows["8"]["ci_high"]) == (lo, hi)
    if lo is None:  # the small cohort's held-out set may be too small for a CI: said, never a number
        assert note and note in rows["8"]["method"]
    else:
        assert lo < rows["8"]["value"] < hi
    assert any("k=1" in n and "cross-validation" in n for n in view["notes"])
    svg = standalone_svg(view["figure"])
    assert svg.startswith("<svg") and "<style>" in svg and 'class="band"' in svg
    out = build(res, tmp_path / "site")
    page = next((out / "tasks").glob("*mortality_1y*.html")).read_text()
    assert "Few-shot curve" in page and "<svg" in page


@pytest.mark.slow
def test_pretraining_is_not_redone_per_point(small_cohort, tmp_path, monkeypatch, torch_one_thread):
    """EHRT at two points: one Stage-1 pretraining (label-free, keyed by the cohort), only the probe refits."""
    from dataclasses import replace

    from benchmark import runner
    from benchmark.model_api import BUDGETS
    from encoders.mehrt import pipeline as P
    from encoders.mehrt import pretrain

    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(P.LEVELS, "mehrt-test", ("tiny", 6))
    calls = []
    real = pretrain._train_one
    monkeypatch.setattr(pretrain, "_train_one", lambda stage, *a, **k: calls.append(stage) or real(stage, *a, **k))
    budget = replace(BUDGETS["smoke"], name="mehrt-test")
    for pts in ("16", "all"):
        P._MODELS.clear()  # not even the in-process model: the disk cache must serve the second point
        [rec] = runner.evaluate("ehrt", SMALL_TASK, data=small_cohort, results=tmp_path / "r", budget=budget,
                                shots=parse_points(pts, None, 1))
        assert rec.status == "ok", rec.error
    assert calls == ["1"]
