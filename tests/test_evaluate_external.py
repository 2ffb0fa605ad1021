"""Issue 17 item 3: `evaluate --task T --predictions FILE|DIR --name NAME` scores outside predictions.

Oracles: `evaluate` on the predictions `run` wrote gives the run's own metrics (values and CI bounds,
same seed and budget); multilabel / regression files made by hand score as benchmark.metrics.evaluate
scores the same arrays. Every refusal is a UserError naming the file and the column.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmark.errors import UserError
from benchmark.external_predictions import EXTERNAL_KIND, evaluate_predictions
from benchmark.results import cell_paths, predictions_name, read_record

REPO = Path(__file__).resolve().parents[1]
BINARY, SURVIVAL = "oncology/mortality_1y", "survival/mace"
MULTILABEL, REGRESSION = "cxr/chexpert_multilabel", "icu/los_days_24h"


@pytest.fixture(scope="module")
def env(lr_binary_survival_run):
    """The shared logistic_regression run (tests/conftest.py) on a binary and a survival task."""
    return lr_binary_survival_run


def run_pred(env, task: str) -> Path:
    kind = env["recs"][task].task_kind
    return cell_paths(env["base"] / "run", "logistic_regression", task, 0, kind)[1]


def _ev(env, task, pred, name="outside", results=None, **kw):
    return evaluate_predictions(task, pred, name, data=env["cohort"], results=results or env["base"] / "ev",
                                budget="smoke", force=True, **kw)


@pytest.mark.parametrize("task,metrics", [(BINARY, ("auroc", "auprc", "brier", "ece")),
                                          (SURVIVAL, ("c_index_harrell", "c_index_uno"))])
def test_evaluate_on_runs_predictions_gives_the_runs_metrics(env, task, metrics):
    """Same code (benchmark.scoring.score_cell), same seed and budget: same values and CI bounds. (A
    survival model's own survival curves, which td_auc / IBS use, are not in a predictions file.)"""
    run = env["recs"][task]
    rec = _ev(env, task, run_pred(env, task))
    assert rec.status == "ok" and rec.n_test == run.n_test and rec.n_events == run.n_events
    assert run.metrics[metrics[0]].ci_low is not None  # the comparison covers a real CI
    for m in metrics:
        a, b = run.metrics[m], rec.metrics[m]
        assert (b.value, b.ci_low, b.ci_high) == (a.value, a.ci_low, a.ci_high), m
    assert rec.fairness is not None and rec.fairness["metric"] == run.fairness["metric"]
    assert rec.external_predictions is not None and rec.model_info.kind == EXTERNAL_KIND
    assert rec.n_train is None and rec.n_tuning is None
    # written like a run's cell: record (read back equal) and predictions in MEHR-Bench's format
    jp, pp = cell_paths(env["base"] / "ev", "outside", task, 0, run.task_kind)
    assert read_record(jp) == rec
    assert pl.read_parquet(pp).equals(pl.read_parquet(run_pred(env, task)))


def test_a_folder_of_shards_scores_like_one_file(env, tmp_path):
    df = pl.read_parquet(run_pred(env, BINARY))
    (tmp_path / "preds" / "held_out").mkdir(parents=True)
    df.head(10).write_parquet(tmp_path / "preds" / "held_out" / "0.parquet")
    # another dtype in the second shard (float32, int32 ids, ms times): cast, not refused
    df.slice(10).with_columns(pl.col("predicted_boolean_probability").cast(pl.Float32),
                              pl.col("subject_id").cast(pl.Int32), pl.col("prediction_time").cast(pl.Datetime("ms"))
                              ).drop("predicted_boolean_value").write_parquet(tmp_path / "preds" / "held_out" / "1.parquet")
    one = _ev(env, BINARY, run_pred(env, BINARY), name="one", results=tmp_path / "r")
    many = _ev(env, BINARY, tmp_path / "preds", name="many", results=tmp_path / "r")
    assert many.external_predictions.files == ["held_out/0.parquet", "held_out/1.parquet"]
    assert many.metrics["auroc"].value == one.metrics["auroc"].value
    assert many.metrics["brier"].value == pytest.approx(one.metrics["brier"].value, abs=1e-6)


def _write(df: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(path)
    return path


def _refused(env, tmp_path, df: pl.DataFrame, field: str, words: str, task=BINARY, name="bad.parquet"):
    f = _write(df, tmp_path / name)
    with pytest.raises(UserError) as e:
        _ev(env, task, f, results=tmp_path / "refused")
    assert e.value.file == str(f) and e.value.field == field, e.value.render()
    assert words in e.value.message, e.value.render()
    assert e.value.fix
    assert not (tmp_path / "refused" / "outside").exists()  # nothing half-written
    return e.value


def test_refusals_name_the_file_the_column_and_rows(env, tmp_path):
    df = pl.read_parquet(run_pred(env, BINARY))
    key = "subject_id/prediction_time"
    err = _refused(env, tmp_path, df.slice(3), key, "held-out sample(s) have no prediction", name="missing.parquet")
    assert f"subject_id={df['subject_id'][0]}" in err.message
    # another dataset: subject ids this cohort does not have
    _refused(env, tmp_path, df.with_columns(pl.col("subject_id") + 10_000_000), key, "not samples of task",
             name="other.parquet")
    _refused(env, tmp_path, pl.concat([df, df.head(2)]), key, "share a (subject_id, prediction_time)", name="dup.parquet")
    nan = df.with_columns(pl.when(pl.int_range(pl.len()) == 4).then(float("nan"))
                          .otherwise(pl.col("predicted_boolean_probability")).alias("predicted_boolean_probability"))
    _refused(env, tmp_path, nan, "predicted_boolean_probability", "NaN or infinite", name="nan.parquet")
    _refused(env, tmp_path, df.with_columns(pl.col("predicted_boolean_probability") * 3), "predicted_boolean_probability",
             "outside [0, 1]", name="range.parquet")
    _refused(env, tmp_path, df.with_columns(pl.col("predicted_boolean_probability").cast(pl.Utf8)),
             "predicted_boolean_probability", "not a number", name="dtype.parquet")
    _refused(env, tmp_path, df.drop("predicted_boolean_probability"), "predicted_boolean_probability",
             "missing column", name="nocol.parquet")
    _refused(env, tmp_path, df.with_columns(~pl.col("boolean_value")), "boolean_value",
             "disagrees with the task's label", name="truth.parquet")


def test_train_split_rows_and_clashing_names_are_refused(env, tmp_path, monkeypatch):
    from benchmark.labels import extract_labels
    from benchmark.task_registry import select_tasks

    [task] = select_tasks(BINARY)
    lab = extract_labels(task, env["cohort"], announce=False).labels.join(env["cohort"].splits, on="subject_id")
    train = lab.filter(pl.col("split") == "train").head(3).select(
        "subject_id", "prediction_time", "boolean_value", pl.lit(0.5).alias("predicted_boolean_probability"))
    df = pl.read_parquet(run_pred(env, BINARY)).drop("predicted_boolean_value")
    _refused(env, tmp_path, pl.concat([df, train], how="vertical_relaxed"), "subject_id/prediction_time",
             "train / tuning split")
    with pytest.raises(UserError) as e:
        _ev(env, BINARY, run_pred(env, BINARY), name="logistic_regression", results=tmp_path / "r")
    assert e.value.field == "--name" and "registered model" in e.value.message
    # an existing result from other predictions is kept unless --force
    _ev(env, BINARY, run_pred(env, BINARY), name="x", results=tmp_path / "r")
    other = _write(df.with_columns(pl.col("predicted_boolean_probability") * 0.5), tmp_path / "half.parquet")
    with pytest.raises(UserError, match="exists"):
        evaluate_predictions(BINARY, other, "x", data=env["cohort"], results=tmp_path / "r", budget="smoke")
    again = evaluate_predictions(BINARY, run_pred(env, BINARY), "x", data=env["cohort"], results=tmp_path / "r",
                                 budget="smoke")  # the same predictions: the finished record is kept
    assert again.external_predictions.sha256 == read_record(cell_paths(tmp_path / "r", "x", BINARY, 0)[0]).external_predictions.sha256


@pytest.mark.parametrize("task", [MULTILABEL, REGRESSION])
def test_multilabel_and_regression_extension_files_round_trip(env, tmp_path, task):
    """Hand-made files in the documented extension layout: evaluate's metrics equal
    benchmark.metrics.evaluate on the same arrays (the oracle), and the file it writes back is the same."""
    from benchmark.labels import extract_labels
    from benchmark.metrics.evaluate import evaluate
    from benchmark.runner import task_data
    from benchmark.task_registry import select_tasks

    [t] = select_tasks(task)
    data = task_data(t, env["cohort"], 0, extract_labels(t, env["cohort"], announce=False).labels)
    kind, y = t.kind_obj, data.y("held_out")
    rng = np.random.default_rng(0)
    score = rng.random(kind.score_shape(len(y), y)) if kind.bounded_scores() else np.asarray(y) + rng.normal(0, 2, len(y))
    frame = kind.predictions_frame(data.samples("held_out"), y, score, t.label_names())
    f = _write(frame.sample(fraction=1.0, shuffle=True, seed=1), tmp_path / predictions_name(kind, 0))
    rec = _ev(env, task, f, results=tmp_path / "r")
    sid = data.frame("held_out")["subject_id"].to_numpy()
    want = evaluate(kind.name, kind.evaluation_target(y), score, sid, n_boot=200, seed=0)
    for m in t.metrics:
        w = want[m].to_dict()
        got = rec.metrics[m]
        assert (got.value, got.ci_low, got.ci_high) == (w["value"], w["ci_low"], w["ci_high"]), m
    written = cell_paths(tmp_path / "r", "outside", task, 0, kind)[1]
    assert written.name == predictions_name(kind, 0) and pl.read_parquet(written).equals(frame)
    # a probability column of a label the task does not have is not enough: each label is needed
    if kind.multi_output:
        drop = f"predicted_boolean_probability/{t.label_names()[0]}"
        _refused(env, tmp_path, frame.drop(drop), drop, "missing column", task=task)


def test_cli_evaluate_and_the_leaderboard_marks_external_predictions(env, tmp_path):
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "benchmark", "evaluate", "--task", BINARY, "--predictions", str(run_pred(env, BINARY)),
           "--name", "my-pipeline", "--data", str(env["cohort"].root), "--results", str(out), "--budget", "smoke"]
    envv = {**os.environ, "MEHR_BENCH_CACHE": str(env["base"] / "cache")}
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=envv, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "auroc:" in r.stdout and "my-pipeline" in r.stdout
    rec = json.loads((out / "my-pipeline" / BINARY / "seed0.json").read_text())
    assert rec["model_info"]["kind"] == EXTERNAL_KIND and rec["n_train"] is None
    assert rec["external_predictions"]["files"] == ["seed0.predictions.parquet"]
    bad = subprocess.run([*cmd[:7], str(tmp_path / "nope.parquet"), *cmd[8:]], capture_output=True, text=True,
                         cwd=REPO, env=envv, timeout=600)
    assert bad.returncode == 2 and "field '--predictions'" in bad.stderr and "Traceback" not in bad.stderr
    shutil.copytree(env["base"] / "run" / "logistic_regression", out / "logistic_regression")
    from leaderboard.build import build

    site = build(out, tmp_path / "site")
    html = "\n".join(p.read_text() for p in site.rglob("*.html"))
    assert "my-pipeline" in html and EXTERNAL_KIND in html
