"""Modality ablations at test time: leave-one-modality-out and the missing-modality sweep.

A model takes part when it implements two optional methods (after fit):

* ``maskable_modalities() -> list[str]``: the side modalities it used that it can treat as missing
  (the fusion heads: their learned missing token; MEHRT: no image tokens / no PRS prefix);
* ``predict_masked(data, split, drop) -> Prediction``: predictions for a split where, for each
  ``drop[m]`` (a bool array over the split's rows), modality m is removed from the rows marked True,
  exactly as if those samples had no such study.

Nothing is refitted: these measure what the *fitted* model takes from each modality. Two products:

* `modality_attribution`: every cell of a maskable model gets it as its ``explanations`` block
  (same format as the late-fusion attribution, so the leaderboard draws it): the held-out main
  metric with all modalities, and its drop when one modality is masked for every test sample.
* `modality_ablation` (``run --ablate-modalities``): the same leave-one-out with a paired subject
  bootstrap (delta, 95% CI, p), plus the missing-modality sweep: the main metric when a modality is
  masked for 0/25/50/75/100% of the test *subjects* (nested random subsets, seeded), with CIs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmark.kinds import LOWER_IS_BETTER
from benchmark.model_api import Prediction, TaskData
from benchmark.scoring import score_cell
from benchmark.stats.paired import paired_bootstrap

SWEEP_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
# main metric -> the paired-bootstrap metric of benchmark.stats (Uno's C needs the training
# follow-up for its weights; the paired test uses Harrell's C, said so in the method string)
_PAIRED = {"auroc": "auroc", "auprc": "auprc", "auroc_macro": "auroc_macro", "c_index_uno": "c_index",
           "c_index_harrell": "c_index", "mae": "mae"}


def is_maskable(model: Any) -> bool:
    """True when the fitted model can predict with modalities masked."""
    return callable(getattr(model, "maskable_modalities", None)) and callable(getattr(model, "predict_masked", None))


def _main_metric(data: TaskData, pred: Prediction, n_boot: int, seed: int) -> dict:
    m = score_cell(data, pred, None, n_boot, seed).get(data.task.main_metric, {})
    return {k: m.get(k) for k in ("value", "ci_low", "ci_high", "refused")}


def _sign(metric: str) -> float:
    return -1.0 if metric in LOWER_IS_BETTER else 1.0


def _present_rows(model: Any, data: TaskData, m: str) -> int | None:
    f = getattr(model, "present_rows", None)
    return int(f(data, "held_out", m).sum()) if callable(f) else None


def leave_one_out(model: Any, data: TaskData) -> dict[str, Prediction]:
    """Held-out predictions with each maskable modality masked for every test sample (one model
    call per modality; shared by `modality_attribution` and `modality_ablation`)."""
    n = data.frame("held_out").height
    return {m: model.predict_masked(data, "held_out", {m: np.ones(n, dtype=bool)})
            for m in model.maskable_modalities()}


def modality_attribution(model: Any, data: TaskData, full: Prediction,
                         loo: dict[str, Prediction] | None = None) -> dict | None:
    """Leave-one-modality-out drop of the held-out main metric (point estimates).

    Args:
        model: a fitted maskable model.
        data: the task.
        full: the model's held-out prediction with every modality.
        loo: `leave_one_out(model, data)` when already computed.

    Returns:
        {"method", "metric", "metric_all", "modalities": [{"modality", "n_rows_with", "metric_without",
        "drop"}]} (drop > 0: the modality helps), or None when nothing can be masked.
    """
    loo = leave_one_out(model, data) if loo is None else loo
    if not loo:
        return None
    metric = data.task.main_metric
    base = _main_metric(data, full, 0, 0)["value"]
    rows = []
    for m, pred in loo.items():
        without = _main_metric(data, pred, 0, 0)["value"]
        drop = (_sign(metric) * (base - without) if base is not None and without is not None
                and math.isfinite(base) and math.isfinite(without) else None)
        rows.append({"modality": m, "n_rows_with": _present_rows(model, data, m), "metric_without": without,
                     "drop": drop})
    return {"method": f"leave-one-modality-out drop in held-out {metric} (modality masked as missing at test "
                      f"time; the model is not refitted)",
            "metric": metric, "metric_all": base, "modalities": rows}


def _subject_order(data: TaskData, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each held-out row's subject, and a seeded random rank per subject (nested sweep subsets)."""
    sid = data.frame("held_out")["subject_id"].to_numpy()
    subjects, inv = np.unique(sid, return_inverse=True)
    rank = np.random.default_rng([seed, 0xAB1A7E]).permutation(len(subjects))
    return inv, rank


def modality_ablation(model: Any, data: TaskData, full: Prediction, *, n_boot: int, seed: int,
                      fractions: tuple[float, ...] = SWEEP_FRACTIONS,
                      loo: dict[str, Prediction] | None = None) -> dict | None:
    """Leave-one-modality-out with paired bootstrap, and the missing-modality sweep.

    Args:
        model: a fitted maskable model.
        data: the task.
        full: the held-out prediction with every modality.
        n_boot: bootstrap replicates for the CIs.
        seed: bootstrap seed and the seed of the sweep's subject subsets.
        fractions: fractions of test subjects whose modality is masked.
        loo: `leave_one_out(model, data)` when already computed.

    Returns:
        {"metric", "full", "leave_one_out": {m: {...}}, "missing_sweep": {m: [{fraction, n_subjects_masked,
        value, ci_low, ci_high}]}, "method"}, or None when nothing can be masked.
    """
    loo_preds = leave_one_out(model, data) if loo is None else loo
    if not loo_preds:
        return None
    metric = data.task.main_metric
    paired = _PAIRED.get(metric)
    y = data.y("held_out")
    sid = data.frame("held_out")["subject_id"].to_numpy()
    inv, rank = _subject_order(data, seed)
    n_subj = len(rank)
    out: dict[str, Any] = {"metric": metric, "full": _main_metric(data, full, n_boot, seed),
                           "leave_one_out": {}, "missing_sweep": {}}
    for m, loo_pred in loo_preds.items():
        entry: dict[str, Any] = {"n_rows_with": _present_rows(model, data, m),
                                 "without": _main_metric(data, loo_pred, n_boot, seed)}
        if paired:
            try:
                yy = data.task.kind_obj.evaluation_target(y)
                r = paired_bootstrap(yy, full.score, loo_pred.score, sid, metric=paired, n_boot=n_boot, seed=seed)
                d = r.to_dict()  # CI / p None (with a note) where the sample cannot support them
                entry["paired"] = {"metric": paired, "delta_full_minus_without": r.delta, "ci_low": d["ci_low"],
                                   "ci_high": d["ci_high"], "p_value": d["p_value"], "note": r.note}
            except Exception as e:  # noqa: BLE001 - a degenerate test set is reported, not raised
                entry["paired"] = {"metric": paired, "refused": f"{type(e).__name__}: {e}"}
        out["leave_one_out"][m] = entry
        curve = []
        for f in fractions:
            k = int(round(f * n_subj))
            rows = rank[inv] < k  # nested: the subjects of a smaller fraction are in every larger one
            p = full if k == 0 else loo_pred if k == n_subj else model.predict_masked(data, "held_out", {m: rows})
            curve.append({"fraction": f, "n_subjects_masked": k, **_main_metric(data, p, n_boot, seed)})
        out["missing_sweep"][m] = curve
    out["method"] = (f"test-time masking (no refit): {metric} with subject-bootstrap CIs ({n_boot} reps); paired "
                     f"delta by {paired or 'n/a'}; sweep subsets are nested random test subjects (seed {seed})")
    return out
