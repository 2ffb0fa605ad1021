"""Cox helpers of the tabular baselines, on the shared partial likelihood and Breslow hazard of
benchmark.learn.cox: signed-time labels (XGBoost survival:cox, CatBoost Cox), LightGBM's custom Cox
objective and metric, the survival-curve time grid, and the ridge Cox of the linear baseline.
"""

from __future__ import annotations

import numpy as np

from benchmark.learn.cox import cox_grad_hess, fit_linear_cox

MIN_SURVIVAL_TIME = 1e-3  # days; Cox labels are signed times (negative = censored), so 0 is not allowed


def cox_label(y: np.ndarray) -> np.ndarray:
    """Survival targets [n, 2] (days, event) -> signed times (event: +t, censored: -t), the label
    convention of XGBoost's survival:cox and CatBoost's Cox loss.

    Args:
        y: [n, 2] (time in days, event 0/1).

    Returns:
        [n] float64 signed times, |t| >= MIN_SURVIVAL_TIME.
    """
    t = np.maximum(np.asarray(y[:, 0], dtype=float), MIN_SURVIVAL_TIME)
    return np.where(np.asarray(y[:, 1]) > 0, t, -t)


def _unsign(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    label = np.asarray(label, dtype=float)
    return np.abs(label), (label > 0).astype(float)


def lightgbm_cox_objective(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LightGBM custom objective: Cox partial likelihood on signed-time labels (see cox_label).

    Args:
        y_true: [n] signed times.
        y_pred: [n] raw scores (log relative hazards).

    Returns:
        (gradient, hessian).
    """
    t, d = _unsign(y_true)
    g, h, _ = cox_grad_hess(y_pred, t, d)
    return g, h


def lightgbm_cox_metric(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[str, float, bool]:
    """LightGBM custom eval metric: negative Cox partial log-likelihood per event (lower is better).

    Args:
        y_true: [n] signed times.
        y_pred: [n] raw scores.

    Returns:
        ("cox_nll", value, False).
    """
    t, d = _unsign(y_true)
    _, _, loss = cox_grad_hess(y_pred, t, d)
    return "cox_nll", loss / max(d.sum(), 1.0), False


def survival_grid(time: np.ndarray, event: np.ndarray, n: int = 5) -> np.ndarray:
    """Times at which survival curves are reported: n quantiles from 20 % to 80 % of the training
    event times (inner quantiles, so the test follow-up usually covers them; the runner uses these
    times for td-AUC and the integrated Brier score).

    Args:
        time: training follow-up times.
        event: training event indicators.
        n: number of quantiles.

    Returns:
        [k <= n] unique increasing times (empty without events).
    """
    ev = np.asarray(time, dtype=float)[np.asarray(event) > 0]
    if len(ev) == 0:
        return np.array([])
    return np.unique(np.quantile(ev, np.linspace(0.2, 0.8, n)))


class RidgeCox:
    """Cox proportional hazards with an L2 penalty: min_b  sum_i loss_i(Xb) / n + ||b||^2 / (2 C n).

    The penalty uses logistic regression's C convention (C multiplies the data term), so one search
    space serves both. Fitted by L-BFGS on the exact gradient of cox_grad_hess.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 300):
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, time: np.ndarray, event: np.ndarray) -> "RidgeCox":
        """Fit the coefficients.

        Args:
            X: [n, p] (standardized) features.
            time: [n] follow-up times.
            event: [n] event indicators.

        Returns:
            self
        """
        n = max(len(X), 1)
        self.coef_, self.n_iter_ = fit_linear_cox(X, time, event, 1.0 / (self.C * n), max_iter=self.max_iter)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Log relative hazards X @ coef_.

        Args:
            X: [n, p] features.

        Returns:
            [n] risk scores.
        """
        return np.asarray(X, dtype=float) @ self.coef_
