"""MEDS-DEV integration: `fit` / `predict` (save and load a fitted model), the model.yaml entries in
integrations/meds-dev/ (parsed and run as MEDS-DEV 0.0.14 does), and `export meds-dev` (its Result JSON)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from omegaconf import DictConfig

from benchmark.cli import main
from benchmark.data.cohort import Cohort
from tests.data.meds_dev import vendored as medsdev

REPO = Path(__file__).resolve().parents[1]
TASK = "oncology/mortality_1y"
INTEGRATIONS = REPO / "integrations" / "meds-dev"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Cohort:
    from data_prep.synthetic import generate
    root = tmp_path_factory.mktemp("tiny") / "cohort"
    generate(root, n_subjects=300, seed=1, images=False)
    return Cohort(root)


@pytest.fixture(scope="module")
def work(tiny, tmp_path_factory):
    """A private cache, the task's exported labels and `run`'s results (catboost, smoke) on the tiny cohort."""
    d = tmp_path_factory.mktemp("work")
    mp = pytest.MonkeyPatch()
    mp.setenv("MEHR_BENCH_CACHE", str(d / "cache"))
    assert main(["labels", "--task", TASK, "--data", str(tiny.root), "--export", str(d / "labels")]) == 0
    assert main(["run", "--model", "catboost", "--task", TASK, "--data", str(tiny.root), "--results",
                 str(d / "results"), "--budget", "smoke"]) == 0
    yield d
    mp.undo()


def _run_preds(work: Path, model: str = "catboost") -> pl.DataFrame:
    return pl.read_parquet(work / "results" / model / TASK / "seed0.predictions.parquet")


def _fit(tiny, work, out, *extra) -> int:
    return main(["fit", "--model", "catboost", "--data", str(tiny.root), "--labels", str(work / "labels" / TASK),
                 "--out", str(out), "--budget", "smoke", *extra])


def test_fit_then_predict_equals_runs_held_out_predictions(tiny, work, tmp_path):
    assert _fit(tiny, work, tmp_path / "m", "--task", TASK, "--seed", "0") == 0
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("model", "task", "budget", "seed")} == \
        {"model": "catboost", "task": TASK, "budget": "smoke", "seed": 0}
    assert manifest["data_fingerprint"] == tiny.fingerprint() and manifest["package_version"]
    assert main(["predict", "--model-dir", str(tmp_path / "m"), "--data", str(tiny.root), "--labels",
                 str(work / "labels" / TASK), "--split", "held_out", "--out", str(tmp_path / "p")]) == 0
    got = pl.read_parquet(tmp_path / "p" / "predictions.parquet")
    assert got.equals(_run_preds(work))


def test_anonymous_binary_task_without_a_task_name(tiny, work, tmp_path):
    """MEDS-DEV's commands carry no task name: the labels' boolean_value is the task."""
    assert _fit(tiny, work, tmp_path / "m") == 0
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["task"] == "external_labels"
    assert main(["predict", "--model-dir", str(tmp_path / "m"), "--data", str(tiny.root), "--labels",
                 str(work / "labels" / TASK), "--out", str(tmp_path / "p")]) == 0
    assert pl.read_parquet(tmp_path / "p" / "predictions.parquet").equals(_run_preds(work))


def test_predict_refuses_other_versions_models_and_changed_pickles(tiny, work, tmp_path, capsys):
    assert _fit(tiny, work, tmp_path / "m", "--task", TASK) == 0
    args = ["predict", "--model-dir", str(tmp_path / "m"), "--data", str(tiny.root), "--labels",
            str(work / "labels" / TASK), "--out", str(tmp_path / "p")]
    assert main([*args, "--model", "logistic_regression"]) == 2
    assert "holds a fitted 'catboost', not 'logistic_regression'" in capsys.readouterr().err
    mf = tmp_path / "m" / "manifest.json"
    good = mf.read_text()
    mf.write_text(good.replace('"package_version": "', '"package_version": "0.0.0-other'))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "field 'package_version'" in err and "fix:" in err and "Traceback" not in err
    mf.write_text(good)
    (tmp_path / "m" / "model.pkl").write_bytes((tmp_path / "m" / "model.pkl").read_bytes() + b"x")
    assert main(args) == 2 and "does not match its manifest" in capsys.readouterr().err
    assert main([*args[:2], str(tmp_path / "nothing"), *args[3:]]) == 2
    assert "manifest.json not found" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


# ---------------------------------------------------------------------------- integrations/meds-dev
@pytest.mark.parametrize("model", ["catboost", "mehrt"])
def test_model_yaml_parses_as_meds_dev_expects(model):
    entry = medsdev.load_model(INTEGRATIONS / model / "model.yaml")  # MEDS-DEV's loader (Metadata checks)
    assert entry["metadata"].contacts and entry["metadata"].description
    assert entry["requirements"] is not None
    reqs = [ln.strip() for ln in entry["requirements"].read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert reqs == (["mehr-bench"] if model == "catboost" else ["mehr-bench[torch]"])
    assert (INTEGRATIONS / model / "README.md").exists()
    sup = entry["commands"]["supervised"]
    assert sup["train"] and sup["predict"] and entry["commands"]["unsupervised"] is None
    cmds = list(medsdev.model_commands(_full_cfg(Path("/d"), Path("/l"), Path("/o")), entry["commands"],
                                       entry["model_dir"]))
    assert [c for c, _ in cmds][0].startswith(f"python -m benchmark fit --model {model} ")
    assert '--split "held_out"' in cmds[1][0] and '--model-dir "/o/MIMIC-IV/t/train"' in cmds[1][0]


def _full_cfg(dataset: Path, labels: Path, out: Path) -> DictConfig:
    """MEDS-DEV's _run_model.yaml in mode=full (train, then predict with the train folder as model_initialization_dir)."""
    return DictConfig({"mode": "full", "dataset_type": "supervised", "dataset_dir": str(dataset), "labels_dir": str(labels),
                       "output_dir": str(out), "dataset_name": "MIMIC-IV", "task_name": "t", "demo": False,
                       "split": None, "model_initialization_dir": None})


def _run_as_meds_dev(model: str, tiny: Cohort, labels: Path, out: Path, cache: Path) -> Path:
    """Run a model.yaml's commands as MEDS-DEV's run_in_env does (a bash script with set -e, the venv's
    python first on PATH); returns the predict step's output folder."""
    entry = medsdev.load_model(INTEGRATIONS / model / "model.yaml")
    venv_bin = out / "venv-bin"
    venv_bin.mkdir(parents=True)
    # a wrapper, not a symlink: a symlinked venv python outside its venv finds no pyvenv.cfg (no packages)
    (venv_bin / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (venv_bin / "python").chmod(0o755)
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "MEHR_BENCH_BUDGET": "smoke", "MEHR_BENCH_CACHE": str(cache)}
    last = None
    for cmd, run_dir in medsdev.model_commands(_full_cfg(tiny.root, labels, out), entry["commands"], entry["model_dir"]):
        run_dir.mkdir(parents=True, exist_ok=True)
        script = run_dir / "cmd.sh"
        script.write_text("\n".join(["#!/bin/bash", "set -e", cmd]))
        r = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, cwd=run_dir, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
        last = run_dir
    return last


def test_catboost_model_yaml_runs_end_to_end(tiny, work, tmp_path):
    pred_dir = _run_as_meds_dev("catboost", tiny, work / "labels" / TASK, tmp_path / "out", work / "cache")
    assert pred_dir == tmp_path / "out" / "MIMIC-IV" / "t" / "predict"
    assert (tmp_path / "out" / "MIMIC-IV" / "t" / "train" / "model.pkl").exists()
    got = pl.read_parquet(pred_dir / "predictions.parquet")
    assert got.equals(_run_preds(work))  # = run's held-out predictions (same model, seed 0, smoke budget)


@pytest.mark.slow
def test_mehrt_model_yaml_runs_end_to_end(tiny, work, tmp_path):
    pred_dir = _run_as_meds_dev("mehrt", tiny, work / "labels" / TASK, tmp_path / "out", work / "cache")
    got = pl.read_parquet(pred_dir / "predictions.parquet")
    held = pl.read_parquet(work / "labels" / TASK / "held_out" / "0.parquet")
    assert got.select("subject_id", "prediction_time", "boolean_value").equals(
        held.select("subject_id", "prediction_time", "boolean_value"))
    p = got["predicted_boolean_probability"]
    assert p.is_finite().all() and ((p >= 0) & (p <= 1)).all()


# ---------------------------------------------------------------------------- export meds-dev
def test_export_meds_dev_result_json(work, tmp_path, capsys):
    out = tmp_path / "result.json"
    assert main(["export", "meds-dev", "--results", str(work / "results"), "--model", "catboost", "--task", TASK,
                 "--dataset", "MIMIC-IV", "--out", str(out)]) == 0
    assert out.stat().st_size <= medsdev.MAX_SIZE_KB * 1024  # MEDS-DEV's validate_result limit
    res = medsdev.Result.from_json(out)  # MEDS-DEV's own reader (type checks, past timestamp, JSON)
    assert (res.dataset, res.task, res.model) == ("MIMIC-IV", TASK, "catboost")
    assert res.timestamp.tzinfo is not None and res.version.startswith("mehr-bench ")
    rec = json.loads((work / "results" / "catboost" / TASK / "seed0.json").read_text())
    same = res.result["samples_equally_weighted"]
    assert same["roc_auc_score"] == rec["metrics"]["auroc"]["value"]
    assert "calibration_error" not in same and "ece" not in same  # defined differently there
    # oracle: meds-evaluation itself on the cell's predictions (its names, its definitions)
    from meds_evaluation.evaluate import evaluate_binary_classification
    preds = _run_preds(work)
    if "predicted_boolean_value" not in preds.columns:
        preds = preds.with_columns(pl.lit(False).alias("predicted_boolean_value"))
    theirs = evaluate_binary_classification(preds.with_columns(pl.col("predicted_boolean_probability").cast(pl.Float64)))
    for k in ("roc_auc_score", "average_precision_score", "brier_score"):
        assert same[k] == pytest.approx(theirs["samples_equally_weighted"][k], abs=1e-6), k
    assert res.result["mehr_bench"]["main_metric"] == "auroc" and res.result["mehr_bench"]["n_test"] == rec["n_test"]
    assert main(["export", "meds-dev", "--results", str(work / "results"), "--model", "xgboost", "--task", TASK,
                 "--dataset", "MIMIC-IV", "--out", str(tmp_path / "x.json")]) == 2
    assert "no finished cell" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
