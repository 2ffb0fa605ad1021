"""Calibration and discrimination over time: the IPCW Brier score and its integral over times
(scikit-survival's integrated_brier_score). Conventions: `benchmark.metrics.survival`.
"""

from __future__ import annotations

import numpy as np

from benchmark.metrics.binary import (DegenerateInputError, Kernel, _as_1d, _counts_2d, _ratio, _row_subject,
                                      _row_weights, _same_length)
from benchmark.metrics.survival import Censoring, survival_arrays


# --------------------------------------------------------------------------- Brier scores
def make_ibs_kernel(time, event, surv_prob, times, train_time, train_event,
                    row_subject=None) -> Kernel:
    """Kernel for the integrated Brier score (scikit-survival's integrated_brier_score).

    Math: BS(t) = mean_i [t_i <= t, event_i] S_i(t)^2 / G(t_i) + [t_i > t] (1 - S_i(t))^2 / G(t),
    IBS = trapezoid(BS, times) / (times[-1] - times[0]). Both steps are linear in the rows, so
    IBS = sum_i w_i A_i / sum_i w_i with A_i the trapezoid of row i's terms: one matrix-vector
    product per batch of replicates.

    Args:
        time, event: (n,) test follow-up and events.
        surv_prob: (n, K) predicted survival probabilities S_i(times[k]).
        times: (K >= 2,) evaluation times within the test follow-up.
        train_time, train_event: training follow-up for G.
        row_subject: (n,) subject index of each row; None = one row per subject.

    Returns:
        kernel(counts) -> (R,) integrated Brier scores.
    """
    t, ev = survival_arrays(time, event)
    tm = _as_1d("times", np.atleast_1d(np.asarray(times, dtype=float)))
    if len(tm) < 2:
        raise DegenerateInputError("the integrated Brier score needs at least two times")
    if len(np.unique(tm)) != len(tm):
        raise DegenerateInputError("times contains duplicates")
    if tm.min() < t.min() or tm.max() >= t.max():
        raise DegenerateInputError(
            f"times must lie within the test follow-up [{t.min():g}, {t.max():g})")
    sp = np.asarray(surv_prob, dtype=float)
    if sp.ndim != 2 or sp.shape != (len(t), len(tm)):
        raise DegenerateInputError(
            f"surv_prob must have shape (n, len(times)) = ({len(t)}, {len(tm)}), got {sp.shape}")
    if not np.isfinite(sp).all():
        bad = int((~np.isfinite(sp)).sum())
        raise DegenerateInputError(f"surv_prob has {bad} non-finite values (NaN or inf)")
    if sp.min() < 0 or sp.max() > 1:
        raise DegenerateInputError("surv_prob must hold probabilities in [0, 1]")
    o = np.argsort(tm)
    tm, sp = tm[o], sp[:, o]
    n = _same_length(time=t, event=ev, surv_prob=sp)
    rs = _row_subject(row_subject, n)
    cens = Censoring(train_time, train_event)
    inv_g_t = 1.0 / cens.at(tm, "integrated Brier score")
    need = ev & (t <= tm[-1])
    inv_g_y = np.zeros(n)
    inv_g_y[need] = 1.0 / cens.at(t[need], "integrated Brier score")
    case = ev[:, None] & (t[:, None] <= tm[None, :])
    ctrl = t[:, None] > tm[None, :]
    terms = sp ** 2 * case * inv_g_y[:, None] + (1.0 - sp) ** 2 * ctrl * inv_g_t[None, :]
    per_row = np.trapezoid(terms, tm, axis=1) / (tm[-1] - tm[0])

    def kernel(counts) -> np.ndarray:
        w = _row_weights(_counts_2d(counts), rs).astype(float)
        return _ratio(w @ per_row, w.sum(axis=1))

    return kernel


def ibs(time, event, surv_prob, times, train_time, train_event) -> float:
    """Integrated Brier score with IPCW from the training censoring distribution.

    Args:
        time: (n,) test follow-up times.
        event: (n,) test event indicators.
        surv_prob: (n, len(times)) predicted survival probabilities at `times`.
        times: (K >= 2,) evaluation times within [min(time), max(time)) of the test set.
        train_time: training follow-up times.
        train_event: training event indicators.

    Returns:
        The integrated Brier score (lower is better).
    """
    n = len(np.asarray(time).ravel())
    return float(make_ibs_kernel(time, event, surv_prob, times, train_time, train_event)(
        np.ones((1, n), dtype=np.int64))[0])
