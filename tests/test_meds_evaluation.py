"""Issue 17 item 1: the predictions `run` writes are read by meds-evaluation's own evaluator as they are.

Oracles: meds-evaluation's evaluator (0.0.6 in the venv, its function and its CLI; 0.0.3, MEDS-DEV's
pin, in a throwaway venv in the slow test) computes AUROC / AUPRC / Brier from our binary file, and
they must equal the record's values; its accuracy and F1 (from our predicted_boolean_value) must equal
benchmark.stats.thresholded at 0.5. Before issue 17 both versions failed on these files (0.0.6:
ColumnNotFoundError "predicted_boolean_value"; 0.0.3: the float32 probability).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from benchmark.results import cell_paths, legacy_predictions_name, predictions_name, predictions_path

BINARY, SURVIVAL = "oncology/mortality_1y", "survival/mace"
SCHEMA = {"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"), "boolean_value": pl.Boolean,
          "predicted_boolean_value": pl.Boolean, "predicted_boolean_probability": pl.Float64}


@pytest.fixture(scope="module")
def ran(lr_binary_survival_run):
    """(results folder, task -> record) of the shared logistic_regression run (tests/conftest.py)."""
    return lr_binary_survival_run["results"], lr_binary_survival_run["recs"]


def test_binary_file_is_exactly_the_prediction_schema_and_meds_evaluation_0_0_6_scores_it(ran):
    from meds_evaluation.evaluate import evaluate_binary_classification
    from meds_evaluation.schema import PredictionSchema

    from benchmark.stats.thresholded import thresholded_metrics

    results, recs = ran
    rec = recs[BINARY]
    path = cell_paths(results, "logistic_regression", BINARY, 0)[1]
    assert path.name == "seed0.predictions.parquet" == predictions_name("binary", 0)
    df = pl.read_parquet(path)
    assert dict(df.schema) == SCHEMA  # no other column: 0.0.6 refuses extra ones
    assert df.height == rec.n_test
    PredictionSchema.align(df.to_arrow())  # the evaluator's own check
    out = evaluate_binary_classification(df)["samples_equally_weighted"]
    assert out["roc_auc_score"] == pytest.approx(rec.metrics["auroc"].value, abs=1e-12)
    assert out["average_precision_score"] == pytest.approx(rec.metrics["auprc"].value, abs=1e-12)
    assert out["brier_score"] == pytest.approx(rec.metrics["brier"].value, abs=1e-12)
    y, p = df["boolean_value"].cast(int).to_numpy(), df["predicted_boolean_probability"].to_numpy()
    assert np.array_equal(df["predicted_boolean_value"].to_numpy(), p >= 0.5)
    ours = thresholded_metrics(y, p, 0.5)
    assert out["binary_accuracy"] == pytest.approx(ours["accuracy"], abs=1e-12)
    assert out["f1_score"] == pytest.approx(ours["f1"], abs=1e-12, nan_ok=True)


def test_the_file_before_issue_17_failed_in_meds_evaluation_0_0_6(ran):
    """The old layout (no predicted_boolean_value, float32 probability): the evaluator's error."""
    from meds_evaluation.evaluate import evaluate_binary_classification

    df = pl.read_parquet(cell_paths(ran[0], "logistic_regression", BINARY, 0)[1])
    old = df.drop("predicted_boolean_value").with_columns(pl.col("predicted_boolean_probability").cast(pl.Float32))
    with pytest.raises(pl.exceptions.ColumnNotFoundError, match="predicted_boolean_value"):
        evaluate_binary_classification(old)


def test_meds_evaluation_cli_reads_the_file(ran, tmp_path):
    results, recs = ran
    cli = Path(sys.executable).with_name("meds-evaluation-cli")
    if not cli.exists():
        pytest.skip("meds-evaluation-cli is not installed next to this Python")
    out = tmp_path / "eval.json"
    r = subprocess.run([str(cli), f"predictions_path={cell_paths(results, 'logistic_regression', BINARY, 0)[1]}",
                        f"output_file={out}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(out.read_text())["samples_equally_weighted"]
    assert got["roc_auc_score"] == pytest.approx(recs[BINARY].metrics["auroc"].value, abs=1e-12)


def test_other_kinds_live_in_extension_files_no_meds_evaluation_glob_picks_up(ran):
    results, recs = ran
    folder = results / "logistic_regression" / SURVIVAL
    names = sorted(p.name for p in folder.glob("*.parquet"))
    assert names == ["seed0.predictions.survival.parquet"]
    assert not list(folder.glob("*predictions.parquet"))
    df = pl.read_parquet(folder / names[0])
    assert df.columns == ["subject_id", "prediction_time", "float_value", "boolean_value", "predicted_risk"]
    assert predictions_path(folder / "seed0.json", "survival") == folder / names[0]


def test_a_result_folder_written_before_schema_4_still_finds_its_predictions(tmp_path):
    """Before issue 17 every kind's predictions were seed<k>.predictions.parquet; readers still find them."""
    jp = tmp_path / "m" / "survival" / "mace" / "seed2.json"
    jp.parent.mkdir(parents=True)
    old = jp.with_name(legacy_predictions_name(2))
    old.write_bytes(b"x")
    assert predictions_path(jp, "survival") == old
    new = jp.with_name(predictions_name("survival", 2))
    new.write_bytes(b"y")
    assert predictions_path(jp, "survival") == new
    assert predictions_name("survival", 2, "abcdef0123456789") == "seed2.external-abcdef012345.predictions.survival.parquet"
    assert predictions_name("binary", 2, "abcdef0123456789") == "seed2.external-abcdef012345.predictions.parquet"


@pytest.mark.slow
def test_meds_evaluation_0_0_3_the_meds_dev_pin_scores_the_file(ran):
    """MEDS-DEV 0.0.14 pins meds-evaluation 0.0.3 (float64 probability, dtype-exact check): its
    evaluator, installed from PyPI in its own venv, gives the record's AUROC."""
    from benchmark.errors import UserError
    from data_prep.etl import ensure_venv

    try:
        venv = ensure_venv("meds-evaluation", "0.0.3", log=lambda s: None)
    except UserError as e:
        pytest.skip(f"meds-evaluation 0.0.3 cannot be installed here (offline?): {e.message[:200]}")
    results, recs = ran
    code = ("import json, sys, polars as pl\n"
            "from meds_evaluation.evaluate import evaluate_binary_classification\n"
            "out = evaluate_binary_classification(pl.read_parquet(sys.argv[1]))['samples_equally_weighted']\n"
            "print(json.dumps({k: float(v) for k, v in out.items() if not isinstance(v, list)}))\n")
    r = subprocess.run([str(venv / "bin" / "python"), "-c", code,
                        str(cell_paths(results, "logistic_regression", BINARY, 0)[1])],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["roc_auc_score"] == pytest.approx(recs[BINARY].metrics["auroc"].value, abs=1e-12)
    assert got["average_precision_score"] == pytest.approx(recs[BINARY].metrics["auprc"].value, abs=1e-12)
