"""Scoring one cell: held-out metrics with patient-level bootstrap CIs.

Its own module so that the runner and the modality ablations (benchmark.ablation, which the runner
calls) both import it at module top without a cycle.
"""

from __future__ import annotations

import numpy as np

from benchmark.metrics.binary import choose_threshold
from benchmark.metrics.evaluate import evaluate
from benchmark.model_api import Prediction, TaskData


def score_cell(data: TaskData, test: Prediction, val: Prediction | None, n_boot: int, seed: int) -> dict:
    """Metrics with patient-level bootstrap CIs for the held-out split.

    Args:
        data: the cell's task data.
        test: the model's held-out prediction.
        val: its tuning-split prediction (sets the binary decision threshold), or None.
        n_boot: bootstrap replicates (0: point estimates only).
        seed: bootstrap seed.

    Returns:
        metric name -> MetricResult.to_dict() (plus "_threshold" when a threshold was chosen).
    """
    task = data.task
    y = data.y("held_out")
    sid = data.frame("held_out")["subject_id"].to_numpy()
    kw: dict = {"n_boot": n_boot, "seed": seed}
    kind = task.kind_obj
    if kind.chooses_threshold and val is not None:
        yv = data.y("tuning")
        if len(np.unique(yv)) == 2:
            # rounded so the stored value is not one tuning patient's exact score
            kw["threshold"] = round(float(choose_threshold(yv, val.score, rule="youden")), 3)
    kw.update(kind.evaluation_options(y, data.y(("train", "tuning")), test.surv_prob, test.surv_times, task.horizon_days()))
    res = evaluate(kind.name, kind.evaluation_target(y), test.score, sid, **kw)
    out = {name: r.to_dict() for name, r in res.items()}
    if "threshold" in kw:
        out["_threshold"] = {"value": kw["threshold"], "ci_low": None, "ci_high": None,
                             "method": "Youden's J on the tuning split"}
    return out
