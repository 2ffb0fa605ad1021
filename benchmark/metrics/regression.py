"""Regression metrics: MAE, RMSE and R^2, as weighted kernels (see `benchmark.metrics.binary`).

All three are functions of weighted sums of per-row quantities, so one (R, n) @ (n, 4) product
gives every bootstrap replicate at once.
"""

from __future__ import annotations

import numpy as np

from benchmark.metrics.binary import (
    DegenerateInputError,
    Kernel,
    _as_1d,
    _counts_2d,
    _ratio,
    _row_subject,
    _row_weights,
    _same_length,
    _weights_as_counts,
)

REGRESSION_METRICS = ("mae", "rmse", "r2")


def make_regression_kernel(y_true, y_pred, row_subject=None) -> Kernel:
    """Kernel for MAE, RMSE and R^2 under row weights.

    Math: with e = y_pred - y_true and W = sum w, MAE = sum w|e| / W, RMSE = sqrt(sum w e^2 / W),
    R^2 = 1 - sum w e^2 / sum w (y - ybar_w)^2. The total sum of squares is computed as
    sum w y'^2 - (sum w y')^2 / W on y' = y - mean(y); centring first keeps the subtraction from
    cancelling catastrophically when |mean(y)| >> sd(y).

    Args:
        y_true: (n,) targets.
        y_pred: (n,) predictions.
        row_subject: (n,) subject index of each row; None = one row per subject.

    Returns:
        kernel(counts) -> (R, 3) columns mae, rmse, r2 (r2 NaN when the targets are constant).
    """
    y = _as_1d("y_true", y_true)
    p = _as_1d("y_pred", y_pred)
    n = _same_length(y_true=y, y_pred=p)
    rs = _row_subject(row_subject, n)
    e = p - y
    yc = y - y.mean()
    cols = np.stack([np.abs(e), e ** 2, yc, yc ** 2], axis=1)

    def kernel(counts) -> np.ndarray:
        w = _row_weights(_counts_2d(counts), rs).astype(float)
        s_abs, s_sq, s_y, s_y2 = (w @ cols).T
        wt = w.sum(axis=1)
        ss_tot = s_y2 - _ratio(s_y ** 2, wt)
        # constant targets: ss_tot is 0 up to rounding; R^2 is undefined there
        ss_tot = np.where(ss_tot > 1e-12 * np.maximum(s_y2, 1e-300), ss_tot, 0.0)
        return np.stack([_ratio(s_abs, wt), np.sqrt(_ratio(s_sq, wt)),
                         1.0 - _ratio(s_sq, ss_tot)], axis=1)

    return kernel


def _one(y_true, y_pred, sample_weight, col: int, name: str) -> float:
    n = len(np.asarray(y_true).ravel())
    counts, rs = _weights_as_counts(sample_weight, n)
    v = float(make_regression_kernel(y_true, y_pred, rs)(counts)[0, col])
    if not np.isfinite(v):
        raise DegenerateInputError(
            f"{name} is undefined: " + ("y_true is constant (zero variance)" if name == "r2"
                                        else "total weight is zero"))
    return v


def mae(y_true, y_pred, sample_weight=None) -> float:
    """Mean absolute error.

    Args:
        y_true: (n,) targets.
        y_pred: (n,) predictions.
        sample_weight: optional (n,) non-negative row weights.

    Returns:
        The MAE.
    """
    return _one(y_true, y_pred, sample_weight, 0, "mae")


def rmse(y_true, y_pred, sample_weight=None) -> float:
    """Root mean squared error.

    Args:
        y_true: (n,) targets.
        y_pred: (n,) predictions.
        sample_weight: optional (n,) non-negative row weights.

    Returns:
        The RMSE.
    """
    return _one(y_true, y_pred, sample_weight, 1, "rmse")


def r2(y_true, y_pred, sample_weight=None) -> float:
    """Coefficient of determination, 1 - SS_res / SS_tot (refused when y_true is constant).

    Args:
        y_true: (n,) targets.
        y_pred: (n,) predictions.
        sample_weight: optional (n,) non-negative row weights.

    Returns:
        R^2 (can be negative).
    """
    return _one(y_true, y_pred, sample_weight, 2, "r2")
