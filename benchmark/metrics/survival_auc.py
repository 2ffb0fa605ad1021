"""Time-dependent discrimination: cumulative/dynamic AUC at fixed times and its Kaplan-Meier-weighted
mean (scikit-survival's cumulative_dynamic_auc). Conventions: `benchmark.metrics.survival`.
"""

from __future__ import annotations

import numpy as np

from benchmark.metrics.binary import (DegenerateInputError, Kernel, _as_1d, _counts_2d, _ratio, _row_subject,
                                      _same_length)
from benchmark.metrics.survival import TIED_TOL, Censoring, survival_arrays, time_point_problem


# --------------------------------------------------------------------------- time-dependent AUC
def _eval_times(time, event, times) -> np.ndarray:
    tm = _as_1d("times", np.atleast_1d(np.asarray(times, dtype=float)))
    if len(np.unique(tm)) != len(tm):
        raise DegenerateInputError("times contains duplicates")
    for x in tm:
        reason = time_point_problem(time, event, float(x))
        if reason:
            raise DegenerateInputError(reason)
    return tm


def make_td_auc_kernel(time, event, risk, times, train_time, train_event, row_subject=None,
                       tied_tol: float = TIED_TOL) -> Kernel:
    """Kernel for cumulative/dynamic AUC at each time and its KM-weighted mean.

    Math (scikit-survival's cumulative_dynamic_auc): at time t, cases are events with t_i <= t,
    weighted by omega_i = 1 / G(t_i); controls are rows with t_j > t, weight 1;
    AUC(t) = sum_{case i, control j} omega_i ([r_i > r_j] + 0.5 [tied])
             / (sum omega_i * n_controls),
    ties being runs of sorted risks with consecutive gaps <= tied_tol. The mean over times weights
    AUC(t_k) by the drop of the test-set Kaplan-Meier S over (t_{k-1}, t_k], divided by 1 - S(t_K).
    Risks are sorted once per column; each time point then costs one cumulative sum of control
    weight along the sorted order, read at the start and end of each case's tie group.

    Args:
        time, event: (n,) test follow-up and events.
        risk: (n,) risk scores, or (n, K) time-dependent risks (column k for times[k]).
        times: (K,) evaluation times within the test follow-up.
        train_time, train_event: training follow-up for G.
        row_subject: (n,) subject index of each row; None = one row per subject.
        tied_tol: tolerance for tied risks.

    Returns:
        kernel(counts) -> (R, K + 1): AUC at each time (sorted ascending), then the mean AUC.
    """
    t, ev = survival_arrays(time, event)
    rk = np.asarray(risk, dtype=float)
    tm = _eval_times(t, ev, times)
    sort_t = np.argsort(tm)
    tm = tm[sort_t]
    if rk.ndim == 2:
        if rk.shape[1] != len(tm):
            raise DegenerateInputError(f"risk has {rk.shape[1]} columns for {len(tm)} times")
        rk = rk[:, sort_t]
    if rk.ndim == 2:
        if not np.isfinite(rk).all():
            bad = int((~np.isfinite(rk)).sum())
            raise DegenerateInputError(f"risk has {bad} non-finite values (NaN or inf)")
    else:
        rk = _as_1d("risk", rk)
    n = _same_length(time=t, event=ev, risk=rk)
    rs = _row_subject(row_subject, n)
    cens = Censoring(train_time, train_event)
    need = ev & (t <= tm[-1])
    omega = np.zeros(n)
    omega[need] = 1.0 / cens.at(t[need], "time-dependent AUC")

    # per time: (risk column, control mask in sorted order, case subjects, lo, hi, omega)
    columns = []
    sorted_cache: dict[int, tuple] = {}
    for k, tk in enumerate(tm):
        col = k if rk.ndim == 2 else 0
        if col not in sorted_cache:
            r = rk[:, col] if rk.ndim == 2 else rk
            o = np.argsort(r, kind="stable")
            rsorted = r[o]
            new_group = np.r_[True, np.diff(rsorted) > tied_tol]
            gid = np.cumsum(new_group) - 1
            g_start = np.flatnonzero(new_group)
            g_end = np.r_[g_start[1:], n]
            sorted_cache[col] = (o, g_start[gid], g_end[gid])
        o, lo_all, hi_all = sorted_cache[col]
        case = ev[o] & (t[o] <= tk)
        ctrl = t[o] > tk
        cpos = np.flatnonzero(case)
        columns.append((col, ctrl, rs[o][cpos], lo_all[cpos], hi_all[cpos], omega[o][cpos]))
    sorted_subjects = {col: rs[o] for col, (o, _, _) in sorted_cache.items()}

    # Test-set Kaplan-Meier per replicate, for the mean AUC. Only distinct event times up to the
    # last evaluation time change S there, so with rows sorted by time and integer prefix sums
    # of the weights, d_u = events at u and n_u = weight with time >= u are differences of
    # prefix sums read at the first / last row of each such time u.
    t_order = np.argsort(t, kind="stable")
    t_sorted, ev_sorted = t[t_order], ev[t_order]
    sub_t = rs[t_order]
    u_ev = np.unique(t_sorted[ev_sorted & (t_sorted <= tm[-1])])
    u_first = np.searchsorted(t_sorted, u_ev, side="left")
    u_end = np.searchsorted(t_sorted, u_ev, side="right")
    # index of the last such event time <= each evaluation time (-1: none yet, S = 1)
    at_idx = np.searchsorted(u_ev, tm, side="right") - 1

    def kernel(counts) -> np.ndarray:
        c = _counts_2d(counts)
        n_rep = c.shape[0]
        out = np.empty((n_rep, len(tm) + 1))
        gathered: dict[int, np.ndarray] = {}  # row weights in risk order, per risk column
        for k, (col, ctrl, case_sub, lo, hi, om) in enumerate(columns):
            if col not in gathered:
                gathered[col] = np.take(c, sorted_subjects[col], axis=1)
            cs = np.zeros((n_rep, n + 1), dtype=c.dtype)
            np.cumsum(gathered[col] * ctrl, axis=1, out=cs[:, 1:])
            case_w = np.take(c, case_sub, axis=1) * om
            num = (case_w * (np.take(cs, lo, axis=1) + np.take(cs, hi, axis=1))).sum(axis=1) * 0.5
            out[:, k] = _ratio(num, case_w.sum(axis=1) * cs[:, -1])
        if len(tm) == 1:
            out[:, -1] = out[:, 0]
            return out
        w_t = np.take(c, sub_t, axis=1)
        cw = np.zeros((n_rep, n + 1), dtype=c.dtype)
        np.cumsum(w_t, axis=1, out=cw[:, 1:])
        ce = np.zeros((n_rep, n + 1), dtype=c.dtype)
        np.cumsum(w_t * ev_sorted, axis=1, out=ce[:, 1:])
        d = (np.take(ce, u_end, axis=1) - np.take(ce, u_first, axis=1)).astype(float)
        at_risk = (cw[:, -1:] - np.take(cw, u_first, axis=1)).astype(float)
        hazard = np.divide(d, at_risk, out=np.zeros_like(d), where=d != 0)
        surv = np.concatenate([np.ones((n_rep, 1)), np.cumprod(1.0 - hazard, axis=1)], axis=1)
        s_at = np.take(surv, at_idx + 1, axis=1)
        drop = -np.diff(np.concatenate([np.ones((n_rep, 1)), s_at], axis=1), axis=1)
        out[:, -1] = _ratio((out[:, :-1] * drop).sum(axis=1), 1.0 - s_at[:, -1])
        return out

    return kernel


def td_auc(time, event, risk, times, train_time, train_event,
           tied_tol: float = TIED_TOL) -> tuple[np.ndarray, float]:
    """Cumulative/dynamic AUC at the given times and its Kaplan-Meier-weighted mean.

    Args:
        time: (n,) test follow-up times.
        event: (n,) test event indicators.
        risk: (n,) risk scores, or (n, len(times)) time-dependent risks.
        times: evaluation times, within [min(time), max(time)) of the test set.
        train_time: training follow-up times (for the censoring distribution G).
        train_event: training event indicators.
        tied_tol: tolerance for tied risks.

    Returns:
        (auc, mean_auc): auc[k] at the k-th time in ascending order, and the mean AUC.
    """
    n = len(np.asarray(time).ravel())
    out = make_td_auc_kernel(time, event, risk, times, train_time, train_event, None,
                             tied_tol)(np.ones((1, n), dtype=np.int64))[0]
    return out[:-1], float(out[-1])
