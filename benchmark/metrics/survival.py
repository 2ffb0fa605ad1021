"""Survival metrics: Harrell's and Uno's C-index, cumulative/dynamic AUC, integrated Brier score.

Definitions follow scikit-survival (concordance_index_censored, concordance_index_ipcw,
cumulative_dynamic_auc, integrated_brier_score), which the tests use as an oracle; scikit-survival
is GPL-3 and is never imported here. Risk scores are "higher = earlier event".

Conventions shared by all functions:
- time: follow-up time (event or censoring), event: 1/True when the event was observed.
- A pair (i, j) is comparable when i has an event and t_j > t_i, or t_j == t_i and j is censored
  (a censored subject at the event time is taken to outlive it). Two events at the same time are
  not comparable.
- Risk scores within `tied_tol` (default 1e-8, as scikit-survival) count as tied: 0.5 a pair.
- IPCW weights use G, the Kaplan-Meier estimate of the *training* censoring distribution
  (events are removed from the risk set before censorings at the same time). G is
  right-continuous: G(t) includes the censorings at t. Beyond the last training time G is unknown
  (unless it has already reached 0), so such times are refused, as scikit-survival does.

Every metric is built from a kernel (see `benchmark.metrics.binary` for the contract): it maps
(R, n_subjects) subject counts to R values, so the subject bootstrap reuses one sort for all
replicates.

Modules: this file (inputs, Kaplan-Meier, the censoring distribution G, Harrell's and Uno's
C-index), `survival_auc` (cumulative/dynamic AUC), `survival_brier` (integrated Brier score).
"""

from __future__ import annotations

import numpy as np

from benchmark.metrics.binary import (DegenerateInputError, Kernel, _as_1d, _counts_2d, _ratio, _row_subject,
                                      _same_length, _weights_as_counts)

TIED_TOL = 1e-8


# --------------------------------------------------------------------------- inputs
def survival_arrays(time, event, prefix: str = "") -> tuple[np.ndarray, np.ndarray]:
    t = _as_1d(f"{prefix}time", time)
    ev = np.asarray(event)
    if ev.dtype != bool:
        ev = _as_1d(f"{prefix}event", ev)
        ok = (ev == 0) | (ev == 1)
        if not ok.all():
            raise DegenerateInputError(f"{prefix}event must hold only 0/1 or booleans")
        ev = ev == 1
    else:
        ev = _as_1d(f"{prefix}event", ev, dtype=bool)
    _same_length(**{f"{prefix}time": t, f"{prefix}event": ev})
    if (t < 0).any():
        raise DegenerateInputError(f"{prefix}time has {int((t < 0).sum())} negative values")
    return t, ev


def check_has_events(event: np.ndarray, what: str) -> None:
    if not event.any():
        raise DegenerateInputError(f"no events: all {len(event)} rows are censored; {what} needs "
                                   "at least one observed event")


# --------------------------------------------------------------------------- Kaplan-Meier
def kaplan_meier(time, event, *, reverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate of the survival function, or of the censoring distribution.

    S(t_k) = prod_{u <= t_k} (1 - d_u / n_u) over the distinct times u, with d_u the events at u
    and n_u the number still at risk (time >= u). With reverse=True the roles swap: d_u counts
    censorings and n_u excludes the events at u (events are taken to happen first), which gives
    G(t) = P(C > t), the censoring survival used for IPCW (as scikit-survival's reverse=True).

    Args:
        time: (n,) follow-up times.
        event: (n,) event indicators.
        reverse: estimate the censoring distribution G instead of the survival function S.

    Returns:
        (times, prob): the distinct times ascending and the estimate just after each of them.
    """
    t, ev = survival_arrays(time, event)
    uniq, inv = np.unique(t, return_inverse=True)
    n_total = np.bincount(inv, minlength=len(uniq))
    n_events = np.bincount(inv, weights=ev, minlength=len(uniq)).astype(np.int64)
    # at risk at u = rows with time >= u = n - (rows with time < u)
    at_risk = len(t) - np.r_[0, np.cumsum(n_total)[:-1]]
    if reverse:
        at_risk = at_risk - n_events
        n_events = n_total - n_events
    ratio = np.divide(n_events, at_risk, out=np.zeros(len(uniq)), where=n_events != 0)
    return uniq, np.cumprod(1.0 - ratio)


def step_at(km_times: np.ndarray, km_prob: np.ndarray, t) -> np.ndarray:
    """Evaluate a right-continuous step function (from `kaplan_meier`) at times t.

    Args:
        km_times: distinct times ascending.
        km_prob: value just after each time.
        t: times to evaluate at (before the first time the value is 1).

    Returns:
        The step-function values at t (times past the last one get the last value).
    """
    idx = np.searchsorted(km_times, np.asarray(t, dtype=float), side="right") - 1
    return np.where(idx >= 0, km_prob[np.maximum(idx, 0)], 1.0)


class Censoring:
    """G, the Kaplan-Meier of the training censoring distribution, with support checks."""

    def __init__(self, train_time, train_event):
        if train_time is None or train_event is None:
            raise DegenerateInputError(
                "train_time and train_event are needed to estimate the censoring distribution "
                "(IPCW) but were not given")
        t, ev = survival_arrays(train_time, train_event, "train_")
        self.times, self.prob = kaplan_meier(t, ev, reverse=True)
        self.last = float(self.times[-1])

    def at(self, t: np.ndarray, what: str) -> np.ndarray:
        """G(t); refuses times past the last training time while G > 0 there (G unknown) and
        times where G == 0 (infinite weight)."""
        t = np.asarray(t, dtype=float)
        beyond = t > self.last
        if beyond.any() and self.prob[-1] > 0:
            raise DegenerateInputError(
                f"{what}: {int(beyond.sum())} time(s) (up to {t[beyond].max():g}) lie beyond the "
                f"last training time {self.last:g}, where the censoring distribution is unknown; "
                "use a horizon / evaluation times below it")
        g = step_at(self.times, self.prob, t)
        if (g <= 0).any():
            raise DegenerateInputError(
                f"{what}: the training censoring survival G(t) is 0 at {int((g <= 0).sum())} "
                f"time(s) (from {t[g <= 0].min():g}); inverse-probability weights are infinite "
                "there; use an earlier horizon")
        return g


# --------------------------------------------------------------------------- dominance counting
class _DominancePlan:
    """Offline 2-D dominance counting in O((n + m) log n) with a fixed, weight-independent plan.

    For data items j (position x_j, value v_j) and queries q (position x_q, value threshold), the
    plan answers  count_q = sum_j c_j [x_j > x_q and v_j precedes q in the value order]  for any
    data weights c, many weight vectors at once.

    How: sort all items by value once (ties broken by `item_order`), then split on the bits of x
    from the top, like a merge sort run backwards. At bit l the items sit in blocks sharing
    x >> (l+1), value-ordered inside each block. A query with bit l = 0 is dominated in x exactly
    by the data items with bit l = 1 in its block, and the ones among those that precede it in the
    block are precisely the ones below it in value. Each (query, data) pair with x_j > x_q is
    counted at exactly one level: the highest bit where x_j and x_q differ. Within a level, the
    data items with bit 1 form one global sequence and a query counts a contiguous range
    [k_lo, k_hi) of it, so a weighted count is a difference of one cumulative sum. Then a stable
    partition of every block by bit l (O(M) with cumulative sums) prepares the next level.
    """

    def __init__(self, data_x: np.ndarray, query_x: np.ndarray, item_order: np.ndarray):
        n_data = len(data_x)
        x = np.concatenate([data_x, query_x]).astype(np.int64)
        m_items = len(x)
        n_bits = max(1, int(max(int(x.max()), 1)).bit_length())
        idx = np.arange(m_items)
        order = np.asarray(item_order, dtype=np.intp)
        # levels: (data rows with bit 1 in order, query ids, k_lo, k_hi)
        self.levels: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.n_data = n_data
        for level in range(n_bits - 1, -1, -1):
            xo = x[order]
            bit = ((xo >> level) & 1).astype(bool)
            blk = xo >> (level + 1)
            new_block = np.empty(m_items, dtype=bool)
            new_block[0] = True
            np.not_equal(blk[1:], blk[:-1], out=new_block[1:])
            start = np.maximum.accumulate(np.where(new_block, idx, 0))
            is_data = order < n_data
            d1 = is_data & bit
            c1 = np.cumsum(d1)
            c1x = c1 - d1  # data-with-bit-1 items strictly before each position
            p = np.flatnonzero(~is_data & ~bit)
            k_hi = c1x[p]
            k_lo = c1x[start[p]]
            keep = k_hi > k_lo
            if keep.any():
                self.levels.append((order[d1], order[p[keep]] - n_data, k_lo[keep], k_hi[keep]))
            if level == 0:
                break
            # Stable partition of each block: bit-0 items first, then bit-1 items.
            bit_i = bit.astype(np.int64)
            ones_x = np.cumsum(bit_i) - bit_i
            ones_before = ones_x - ones_x[start]
            zeros_before = (idx - start) - ones_before
            block_starts = np.flatnonzero(new_block)
            zeros_in_block = np.add.reduceat(1 - bit_i, block_starts)
            block_id = np.cumsum(new_block) - 1
            new_pos = np.where(bit, start + zeros_in_block[block_id] + ones_before,
                               start + zeros_before)
            nxt = np.empty_like(order)
            nxt[new_pos] = order
            order = nxt


# --------------------------------------------------------------------------- C-index
def _cindex_kernel(t: np.ndarray, ev: np.ndarray, risk: np.ndarray, rs: np.ndarray,
                   event_weight: np.ndarray, tied_tol: float) -> Kernel:
    """Kernel for sum_i w_i sum_j c_i c_j ([concordant] + 0.5 [tied]) / sum_i w_i c_i c_j over
    comparable pairs (i event, j outlives i), where w_i is a per-event weight (1 for Harrell,
    1/G(t_i)^2 for Uno) and c are the bootstrap counts.

    event_weight is (n,) or (K, n): K weightings share one dominance plan (Harrell and Uno
    differ only in w), and the kernel returns (R,) or (R, K)."""
    n = len(t)
    squeeze = event_weight.ndim == 1
    event_weight = np.atleast_2d(event_weight)
    # Time order: ascending time, events before censorings at the same time, so that the
    # comparable partners of event i are exactly the rows after the last event tied with i.
    time_order = np.lexsort((~ev, t))
    pos = np.empty(n, dtype=np.int64)
    pos[time_order] = np.arange(n)
    ev_rows = np.flatnonzero(ev & (event_weight > 0).any(axis=0))
    t_sorted = t[time_order]
    ev_times_sorted = np.sort(t[ev])
    # last event position in the tie group of t_i = (#rows with time < t_i) + (#events at t_i) - 1
    q_pos = (np.searchsorted(t_sorted, t[ev_rows], side="left")
             + np.searchsorted(ev_times_sorted, t[ev_rows], side="right")
             - np.searchsorted(ev_times_sorted, t[ev_rows], side="left") - 1)
    m = len(ev_rows)
    # Two queries per event: "risk_j < risk_i - tol" (concordant) and "risk_j <= risk_i + tol"
    # (concordant or tied); numerator = w_i * 0.5 * (both counts), since conc + 0.5 tie =
    # 0.5 * (lt + le). Ties in the value sort: the "<" query sorts before equal data values,
    # the "<=" query after them.
    r_ev = risk[ev_rows]
    values = np.concatenate([risk, r_ev - tied_tol, r_ev + tied_tol])
    tiebreak = np.concatenate([np.ones(n, np.int8), np.zeros(m, np.int8), np.full(m, 2, np.int8)])
    item_order = np.lexsort((tiebreak, values))
    plan = _DominancePlan(pos, np.concatenate([q_pos, q_pos]), item_order)
    q_sub = rs[np.concatenate([ev_rows, ev_rows])]
    q_w = 0.5 * np.concatenate([event_weight[:, ev_rows], event_weight[:, ev_rows]], axis=1).T
    # Precompose rows -> subjects so a replicate gathers straight from the counts matrix.
    levels = [(rs[rows], q_sub[q], q_w[q], k_lo, k_hi) for rows, q, k_lo, k_hi in plan.levels]
    ev_sub, ev_w = rs[ev_rows], event_weight[:, ev_rows].T  # (m, K)
    time_sub = rs[time_order]

    def kernel(counts) -> np.ndarray:
        c = _counts_2d(counts)
        num = np.zeros((c.shape[0], ev_w.shape[1]))
        for sub, qs, qw, k_lo, k_hi in levels:
            # weight of partners in [k_lo, k_hi) of this level's sequence, times the query weight
            cs = np.zeros((c.shape[0], len(sub) + 1), dtype=c.dtype)
            np.cumsum(np.take(c, sub, axis=1), axis=1, out=cs[:, 1:])
            partners = np.take(cs, k_hi, axis=1) - np.take(cs, k_lo, axis=1)
            num += (partners * np.take(c, qs, axis=1)) @ qw
        # Denominator: sum_i w_i c_i * (weight of rows after position q_pos_i in time order).
        ct = np.zeros((c.shape[0], n + 1), dtype=c.dtype)
        np.cumsum(np.take(c, time_sub, axis=1), axis=1, out=ct[:, 1:])
        after = ct[:, -1:] - np.take(ct, q_pos + 1, axis=1)
        den = (after * np.take(c, ev_sub, axis=1)) @ ev_w
        out = _ratio(num, den)
        return out[:, 0] if squeeze else out

    return kernel


def _cindex_inputs(time, event, risk):
    t, ev = survival_arrays(time, event)
    r = _as_1d("risk", risk)
    n = _same_length(time=t, event=ev, risk=r)
    if n < 2:
        raise DegenerateInputError("need at least two rows for a C-index")
    check_has_events(ev, "the C-index")
    return t, ev, r, n


def make_harrell_kernel(time, event, risk, row_subject=None, tied_tol: float = TIED_TOL) -> Kernel:
    """Kernel for Harrell's C-index (scikit-survival's concordance_index_censored), O(n log n).

    Args:
        time: (n,) follow-up times.
        event: (n,) event indicators.
        risk: (n,) risk scores (higher = earlier event).
        row_subject: (n,) subject index of each row; None = one row per subject.
        tied_tol: risk differences <= tied_tol count as ties (0.5).

    Returns:
        kernel(counts (R, n_subjects)) -> (R,) C-index, NaN without comparable pairs.
    """
    t, ev, r, n = _cindex_inputs(time, event, risk)
    return _cindex_kernel(t, ev, r, _row_subject(row_subject, n), np.ones(n), tied_tol)


def c_index_harrell(time, event, risk, tied_tol: float = TIED_TOL, sample_weight=None) -> float:
    """Harrell's concordance index in O(n log n).

    Concordant pairs count 1, pairs with risks within tied_tol count 0.5, over comparable pairs
    (i has an event and j outlives i; see the module docstring for tied times).

    Args:
        time: (n,) follow-up times.
        event: (n,) event indicators (1 = event observed).
        risk: (n,) risk scores (higher = earlier event).
        tied_tol: tolerance for tied risks (default 1e-8, as scikit-survival).
        sample_weight: optional (n,) row weights (a pair counts w_i * w_j).

    Returns:
        The C-index. Raises DegenerateInputError without events or comparable pairs.
    """
    counts, rs = _weights_as_counts(sample_weight, len(np.asarray(time).ravel()))
    v = make_harrell_kernel(time, event, risk, rs, tied_tol)(counts)[0]
    if not np.isfinite(v):
        raise DegenerateInputError("no comparable pairs: no event is followed by a longer "
                                   "follow-up, so the C-index is undefined")
    return float(v)


def make_uno_kernel(time, event, risk, train_time, train_event, tau: float | None = None,
                    row_subject=None, tied_tol: float = TIED_TOL) -> Kernel:
    """Kernel for Uno's IPCW C-index truncated at tau (scikit-survival's concordance_index_ipcw).

    Math: C = sum_{i,j} w_i [comparable, t_i < tau] (conc + 0.5 tie) / sum_{i,j} w_i [comparable,
    t_i < tau], with w_i = 1 / G(t_i)^2, G the training censoring Kaplan-Meier. Events at or after
    tau get weight 0 (but still serve as partners j).

    Args:
        time, event, risk: (n,) test follow-up, events and risk scores.
        train_time, train_event: training follow-up used to estimate G.
        tau: truncation time (None = no truncation; then every test event time needs G).
        row_subject: (n,) subject index of each row; None = one row per subject.
        tied_tol: tolerance for tied risks.

    Returns:
        kernel(counts) -> (R,) Uno C-index.
    """
    t, ev, r, n = _cindex_inputs(time, event, risk)
    w = _uno_weights(t, ev, train_time, train_event, tau)
    return _cindex_kernel(t, ev, r, _row_subject(row_subject, n), w, tied_tol)


def _uno_weights(t, ev, train_time, train_event, tau) -> np.ndarray:
    """w_i = 1 / G(t_i)^2 for events before tau, else 0."""
    cens = Censoring(train_time, train_event)
    use = ev & (t < tau) if tau is not None else ev.copy()
    if not use.any():
        raise DegenerateInputError(f"no events before tau={tau:g}; Uno's C-index is undefined")
    w = np.zeros(len(t))
    w[use] = 1.0 / cens.at(t[use], "Uno's C-index") ** 2
    return w


def make_cindex_pair_kernel(time, event, risk, train_time, train_event, tau: float | None = None,
                            row_subject=None, tied_tol: float = TIED_TOL) -> Kernel:
    """Kernel for Harrell's and Uno's C-index together: one dominance plan, two weightings.

    Args:
        time, event, risk: (n,) test follow-up, events and risk scores.
        train_time, train_event: training follow-up used to estimate G (for Uno).
        tau: Uno's truncation time (None = none).
        row_subject: (n,) subject index of each row; None = one row per subject.
        tied_tol: tolerance for tied risks.

    Returns:
        kernel(counts) -> (R, 2): Harrell's C in column 0, Uno's C in column 1. Raises
        DegenerateInputError when Uno's C is undefined (build Harrell's kernel alone then).
    """
    t, ev, r, n = _cindex_inputs(time, event, risk)
    w = np.stack([np.ones(n), _uno_weights(t, ev, train_time, train_event, tau)])
    return _cindex_kernel(t, ev, r, _row_subject(row_subject, n), w, tied_tol)


def c_index_uno(time, event, risk, train_time, train_event, tau: float | None = None,
                tied_tol: float = TIED_TOL, sample_weight=None) -> float:
    """Uno's C-index: IPCW concordance truncated at tau, O(n log n).

    Args:
        time: (n,) test follow-up times.
        event: (n,) test event indicators.
        risk: (n,) risk scores (higher = earlier event).
        train_time: training follow-up times (for the censoring distribution G).
        train_event: training event indicators.
        tau: truncation time; only events before tau are cases. None = no truncation.
        tied_tol: tolerance for tied risks.
        sample_weight: optional (n,) row weights.

    Returns:
        The IPCW C-index. Raises DegenerateInputError when undefined.
    """
    counts, rs = _weights_as_counts(sample_weight, len(np.asarray(time).ravel()))
    v = make_uno_kernel(time, event, risk, train_time, train_event, tau, rs, tied_tol)(counts)[0]
    if not np.isfinite(v):
        raise DegenerateInputError("no comparable pairs before tau; Uno's C-index is undefined")
    return float(v)


# --------------------------------------------------------------------------- evaluation times
def time_point_problem(time, event, t: float) -> str | None:
    """Why a time-dependent AUC / Brier score at time t is undefined on this test set, or None.

    Args:
        time: (n,) test follow-up times.
        event: (n,) test event indicators.
        t: the evaluation time.

    Returns:
        A sentence naming the problem, or None when t is usable.
    """
    tt, ev = survival_arrays(time, event)
    if not np.isfinite(t):
        return f"evaluation time {t} is not finite"
    if t < tt.min() or t >= tt.max():
        return (f"evaluation time {t:g} lies outside the test follow-up [{tt.min():g}, "
                f"{tt.max():g}) (no controls or no observed time before it)")
    if not (ev & (tt <= t)).any():
        return f"no events at or before t={t:g}, so there are no cases"
    return None
