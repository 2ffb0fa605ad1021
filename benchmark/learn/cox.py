"""Cox proportional hazards utilities, written once for every family.

* `cox_grad_hess`: value, gradient and diagonal Hessian of the negative partial log-likelihood
  with respect to the per-row log hazards (boosting objectives, and the linear fit below);
* `fit_linear_cox`: the L2-penalized linear Cox model by L-BFGS (ridge Cox baseline, MEHRT probes);
* `Breslow`: the baseline cumulative hazard and survival curves S(t | x) = exp(-H0(t) exp(eta)).

Ties are handled as in Breslow (1974): every row tied at an event time is in that time's risk set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize


def cox_grad_hess(eta: np.ndarray, time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Gradient, diagonal Hessian and value of the negative Cox partial log-likelihood (Breslow ties).

    With risk sets R_i = {j : t_j >= t_i} and S_i = sum_{j in R_i} exp(eta_j):
        L      = sum_{i: event} (log S_i - eta_i)
        dL/dk  = exp(eta_k) * sum_{i: event, t_i <= t_k} 1 / S_i  -  event_k
        d2L/dk2 = exp(eta_k) * A_k - exp(2 eta_k) * sum_{i: event, t_i <= t_k} 1 / S_i^2
    (the same diagonal approximation XGBoost's survival:cox uses). Computed in O(n log n) with one sort
    and cumulative sums; eta is shifted by its maximum so exp never overflows.

    Args:
        eta: [n] log relative hazards.
        time: [n] follow-up times.
        event: [n] event indicators.

    Returns:
        (gradient [n], hessian [n], loss value).
    """
    eta = np.asarray(eta, dtype=float)
    order = np.argsort(time, kind="stable")
    ts, d, e = np.asarray(time, dtype=float)[order], np.asarray(event, dtype=float)[order], eta[order]
    first = np.searchsorted(ts, ts, side="left")          # start of each row's tie group
    last = np.searchsorted(ts, ts, side="right") - 1      # end of each row's tie group
    m = e.max() if len(e) else 0.0
    w = np.exp(e - m)
    S = np.cumsum(w[::-1])[::-1][first]                   # risk-set sums (times exp(-m))
    A = np.cumsum(d / S)[last]
    B = np.cumsum(d / S**2)[last]
    g_sorted = w * A - d
    h_sorted = np.maximum(w * A - w**2 * B, 1e-16)
    loss = float(np.sum(d * (np.log(S) + m - e)))
    g, h = np.empty_like(g_sorted), np.empty_like(h_sorted)
    g[order], h[order] = g_sorted, h_sorted
    return g, h, loss


def fit_linear_cox(X: np.ndarray, time: np.ndarray, event: np.ndarray, l2: float, *,
                   beta0: np.ndarray | None = None, max_iter: int = 300) -> tuple[np.ndarray, int]:
    """L2-penalized linear Cox model: minimize L(X b) / n + l2 / 2 * |b|^2 by L-BFGS.

    The gradient is exact: d/db L(X b) = X^T dL/deta (chain rule through `cox_grad_hess`).

    Args:
        X: [n, d] (standardized) covariates.
        time: [n] follow-up times.
        event: [n] event indicators.
        l2: penalty strength (per row: the data term is averaged).
        beta0: warm start (zeros if None).
        max_iter: L-BFGS iteration cap.

    Returns:
        (beta [d], iterations used).
    """
    X = np.asarray(X, dtype=float)
    n = max(len(X), 1)

    def f(b):
        g, _, loss = cox_grad_hess(X @ b, time, event)
        return loss / n + 0.5 * l2 * b @ b, X.T @ g / n + l2 * b

    b0 = np.zeros(X.shape[1]) if beta0 is None else beta0
    res = minimize(f, b0, jac=True, method="L-BFGS-B", options={"maxiter": int(max_iter)})
    return res.x, int(res.nit)


@dataclass
class Breslow:
    """Breslow's baseline cumulative hazard for a Cox-type risk score.

    H0(t) = sum_{event times s <= t} d(s) / sum_{j: t_j >= s} exp(eta_j),  S(t | x) = exp(-H0(t) exp(eta(x))).
    Risk scores are centred on their training mean (the centre cancels in S) so exp never overflows.
    """

    times_: np.ndarray | None = None
    cumhaz_: np.ndarray | None = None
    center_: float = 0.0

    def fit(self, eta: np.ndarray, time: np.ndarray, event: np.ndarray) -> "Breslow":
        """Estimate H0 from training risk scores and outcomes.

        Args:
            eta: [n] risk scores (log relative hazards) of the training rows.
            time: [n] follow-up times.
            event: [n] event indicators.

        Returns:
            self
        """
        eta = np.asarray(eta, dtype=float)
        self.center_ = float(np.mean(eta)) if len(eta) else 0.0
        w = np.exp(np.clip(eta - self.center_, -50, 50))
        time, event = np.asarray(time, dtype=float), np.asarray(event) > 0
        ev_times = np.unique(time[event])
        order = np.argsort(time)
        ts, ws = time[order], w[order]
        at_risk = np.cumsum(ws[::-1])[::-1]                       # sum over t_j >= ts[k]
        risk_at = at_risk[np.searchsorted(ts, ev_times, side="left")]
        deaths = np.bincount(np.searchsorted(ev_times, time[event]), minlength=len(ev_times))
        self.times_ = ev_times
        self.cumhaz_ = np.cumsum(deaths / risk_at)
        return self

    def cumulative_hazard(self, times: np.ndarray) -> np.ndarray:
        """H0 at `times` (relative to the centred score; 0 before the first event time).

        Args:
            times: [k] times (days).

        Returns:
            [k] cumulative baseline hazard.
        """
        idx = np.searchsorted(self.times_, np.asarray(times, dtype=float), side="right") - 1
        return np.where(idx >= 0, self.cumhaz_[np.clip(idx, 0, None)], 0.0) if len(self.cumhaz_) else \
            np.zeros(len(np.atleast_1d(times)))

    def survival(self, eta: np.ndarray, times: np.ndarray) -> np.ndarray:
        """S(t | x) for each row at each time.

        Args:
            eta: [n] risk scores.
            times: [k] times (days).

        Returns:
            [n, k] survival probabilities.
        """
        H0 = self.cumulative_hazard(times)
        rel = np.exp(np.clip(np.asarray(eta, dtype=float) - self.center_, -50, 50))
        return np.exp(-np.outer(rel, H0))
