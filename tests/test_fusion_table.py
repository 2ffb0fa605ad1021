"""`compare --table fusion-tte`: the fusion paper's Table 1 from stored records and predictions.

Planted predictions with known paired results: a model identical to its comparator gets no marker, a
far better one gets it; models without results show "not run"; external columns appear when the
records carry external results.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from benchmark.cli import main
from benchmark.external import predictions_name
from benchmark.results import cell_paths, write_predictions, write_result
from leaderboard.fusion_table import fusion_table, render_markdown, table_models

V3 = Path(__file__).parent / "data" / "result_v3.json"
TASK = "survival/pe_mortality"
EXT_FP = "e" * 16


def _frame(y_time, y_event, risk):
    n = len(risk)
    return pl.DataFrame({"subject_id": np.arange(n, dtype=np.int64),
                         "prediction_time": pl.Series([datetime(2020, 1, 1)] * n, dtype=pl.Datetime("us")),
                         "boolean_value": y_event.astype(bool), "float_value": y_time.astype(np.float32),
                         "predicted_risk": risk.astype(np.float32)})


def _plant(results: Path, model: str, risk: np.ndarray, y, value: float, ext_risk=None):
    d = json.loads(V3.read_text())
    m = {"value": value, "ci_low": value - 0.05, "ci_high": value + 0.05, "method": "planted"}
    d.update(model=model, task=TASK, metrics={"c_index_harrell": m}, main_metric="c_index_harrell")
    d.pop("external")
    jp, pp = cell_paths(results, model, TASK, 0)
    write_predictions(pp, _frame(*y, risk))
    if ext_risk is not None:
        d["external"] = [{"dataset": {"name": "site b", "fingerprint": EXT_FP}, "n_test": len(ext_risk),
                          "n_events": int(y[1].sum()), "metrics": {"c_index_harrell": m}}]
        write_predictions(jp.with_name(predictions_name(0, EXT_FP)), _frame(*y, ext_risk))
    write_result(jp, d)


def _planted(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    y = (rng.exponential(365, n), rng.random(n) < 0.6)
    noise, good = rng.random(n), -y[0] + rng.normal(0, 30, n)
    _plant(tmp_path, "image_only_mlp", noise, y, 0.50, ext_risk=noise)
    _plant(tmp_path, "concat_mlp", good, y, 0.90, ext_risk=good)
    _plant(tmp_path, "contrastive", good, y, 0.90)           # = concat_mlp: "*" (vs image only), no "+"
    _plant(tmp_path, "cross_attention", noise, y, 0.50)      # = image only: no "*", "+" (concat far better)
    return tmp_path


def test_markers_follow_the_paired_tests_and_missing_models_are_not_run(tmp_path):
    tab = fusion_table(_planted(tmp_path), [TASK], n_boot=300)
    assert tab["tasks"] == {TASK: ["internal", "site b"]}
    rows = {r["model"]: r["cells"] for r in tab["rows"]}
    assert [m for m, _ in table_models()] == list(rows) and len(rows) == 19
    k = (TASK, "internal")
    assert rows["image_only_mlp"][k]["markers"] == ""
    assert rows["concat_mlp"][k]["markers"] == "*"
    assert rows["contrastive"][k]["markers"] == "*"
    assert rows["cross_attention"][k]["markers"] == "+"
    assert rows["ehr_only_mlp_fm"][k] == {"text": "not run"} and rows["coattention_ehr_curated"][k]["text"] == "not run"
    assert rows["concat_mlp"][(TASK, "site b")]["markers"] == "*"
    assert rows["contrastive"][(TASK, "site b")] == {"text": "not run"}  # no external result for it
    same = [d for d in tab["diffs"] if d["model"] == "contrastive" and d["vs"] == "concat_mlp"]
    assert same and same[0]["delta"] == 0.0 and not same[0]["p_value"] < 0.05
    md = render_markdown(tab)
    assert "| concat_mlp | bag-of-events | 0.900 (0.850\u20130.950)\\* | 0.900 (0.850\u20130.950)\\* |" in md
    assert "| cross_attention | bag-of-events | 0.500 (0.450\u20130.550)+ |" in md


def test_the_cli_writes_the_markdown_table(tmp_path, capsys):
    res = _planted(tmp_path / "r")
    out = tmp_path / "table.md"
    assert main(["compare", "--table", "fusion-tte", "--results", str(res), "--tasks", TASK, "--out", str(out),
                 "--n-boot", "200"]) == 0
    assert "Harrell's C-index" in out.read_text() and "image_only_mlp" in capsys.readouterr().out
    assert main(["compare", "--results", str(res)]) == 2  # neither --a/--b nor --table
