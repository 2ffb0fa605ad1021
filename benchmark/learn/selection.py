"""The selection metric of each task kind: one rule for every model family.

    binary      AUROC             threshold-free and prevalence-independent, the task's main metric;
                                  log loss would also reward calibration, which the benchmark
                                  reports separately and which a later recalibration can fix
    multilabel  macro AUROC       over the labels with both classes in the validation fold (a fold
                                  cannot score a label it has no positives for)
    survival    Harrell's C       rank agreement of the risk score, what every survival family
                                  (boosted Cox, ridge Cox, neural Cox, discrete-time) can be judged by
    regression  MAE (lower)       robust to the long right tail of lengths of stay, in the target's
                                  units; R^2 would let a few extreme values choose the model

Baselines (K-fold CV), MEHRT probes (K-fold CV) and fusion heads (the tuning split) all choose
their configuration by this metric; training losses only drive early stopping inside one fit.
"""

from __future__ import annotations

import math

import numpy as np

from benchmark.kinds import KINDS, LOWER_IS_BETTER, kind_of
from benchmark.metrics.binary import DegenerateInputError, auroc
from benchmark.metrics.regression import mae
from benchmark.metrics.survival import c_index_harrell

SELECTION_METRIC = {name: k.selection_metric for name, k in KINDS.items()}


def _macro_auroc(y: np.ndarray, score: np.ndarray) -> float:
    """Mean AUROC over the labels with both classes (NaN if none has)."""
    vals = [float(auroc(y[:, j], score[:, j])) for j in range(y.shape[1]) if len(np.unique(y[:, j])) == 2]
    return float(np.mean(vals)) if vals else math.nan


# selection metric name -> fn(y in the kind's layout, score)
_SCORERS = {
    "auroc": lambda y, s: float(auroc(y, s)),
    "auroc_macro": _macro_auroc,
    "c_index_harrell": lambda y, s: float(c_index_harrell(y[:, 0], y[:, 1].astype(bool), s)),
    "mae": lambda y, s: float(mae(y, s)),
}


def selection_score(kind: str, y: np.ndarray, score: np.ndarray) -> float:
    """The selection metric of one validation fold; NaN where it is undefined.

    Args:
        kind: task kind (name or benchmark.kinds object).
        y: fold targets (binary [n], multilabel [n, L], survival [n, 2] (time, event), regression [n]).
        score: fold scores (probability, risk or value), same rows.

    Returns:
        AUROC, macro AUROC, Harrell's C or MAE (NaN if undefined, e.g. one class or no comparable pair).
    """
    scorer = _SCORERS[kind_of(kind).selection_metric]
    try:
        return scorer(y, score)
    except DegenerateInputError:
        return math.nan


def gain(metric: str, value: float) -> float:
    """The value on a higher-is-better scale (MAE is negated), -inf where it is undefined.

    Args:
        metric: selection metric name.
        value: its value.

    Returns:
        float; comparing gains with > picks the better of two scores.
    """
    if value is None or not math.isfinite(value):
        return -math.inf
    return -float(value) if metric in LOWER_IS_BETTER else float(value)


def is_better(metric: str, a: float, b: float) -> bool:
    """True if score a beats score b under `metric` (NaN never wins, anything beats NaN)."""
    if not math.isfinite(a):
        return False
    if not math.isfinite(b):
        return True
    return a < b if metric in LOWER_IS_BETTER else a > b
