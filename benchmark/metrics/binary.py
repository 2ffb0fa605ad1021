"""Binary classification metrics: AUROC, AUPRC, Brier score, ECE and operating-point metrics.

Every metric here is built on a *kernel*: a function that maps a matrix of non-negative row weights
(one row per bootstrap replicate) to one metric value per replicate. A resample of subjects is a
vector of integer counts, and a metric weighted by those counts equals the metric computed on the
resampled rows, so the bootstrap (`benchmark.metrics.bootstrap`) evaluates hundreds of resamples
with one sort and a few cumulative sums instead of one full metric call per resample. The plain
functions (`auroc`, `auprc`, ...) call the same kernels with unit weights, so point estimates and
bootstrap replicates share one implementation.

Kernel contract (used by every metric module):
    kernel(counts) -> values
    counts: (R, n_subjects) non-negative weights, int or float; row r is replicate r.
    values: (R,) or (R, K) floats; NaN where a replicate is degenerate (e.g. one class only).
Rows map to subjects through `row_subject` (a subject with several rows gives each row its weight).

This module must not import torch or scikit-learn (scikit-learn is only a test oracle).
"""

from __future__ import annotations

from typing import Callable, Literal

import numpy as np

Kernel = Callable[[np.ndarray], np.ndarray]

# ECE binning, fixed so numbers are comparable across models: 10 equal-width bins on [0, 1],
# bin b holds p with floor(10 p) == b, except p == 1.0 which goes into the last bin.
ECE_BINS = 10


class DegenerateInputError(ValueError):
    """Inputs for which a metric is undefined (one class, no events, NaN scores, length mismatch).

    The message says in words what is wrong; `evaluate` turns it into a refused `MetricResult`.
    """


# --------------------------------------------------------------------------- input checks
def _as_1d(name: str, x, *, dtype=float) -> np.ndarray:
    """Convert to a 1-D array and refuse NaN/inf (for float arrays)."""
    a = np.asarray(x)
    if a.ndim != 1:
        a = np.squeeze(a)
        if a.ndim != 1:
            raise DegenerateInputError(f"{name} must be one-dimensional, got shape {np.shape(x)}")
    try:
        a = a.astype(dtype, copy=False)
    except (TypeError, ValueError) as exc:
        raise DegenerateInputError(f"{name} could not be read as numbers: {exc}") from None
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            raise DegenerateInputError(
                f"{name} has {int(bad.sum())} non-finite values (NaN or inf)")
    return a


def _same_length(**arrays: np.ndarray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DegenerateInputError(
            "length mismatch: " + ", ".join(f"{k} has {v}" for k, v in lengths.items()))
    n = next(iter(lengths.values()))
    if n == 0:
        raise DegenerateInputError("no rows to evaluate")
    return n


def _binary_labels(name: str, y) -> np.ndarray:
    """Return y as bool, refusing anything that is not 0/1 (or bool)."""
    a = np.asarray(y)
    if a.dtype == bool:
        return _as_1d(name, a, dtype=bool)
    a = _as_1d(name, a, dtype=float)
    ok = (a == 0) | (a == 1)
    if not ok.all():
        raise DegenerateInputError(
            f"{name} must hold only 0 and 1, found {np.unique(a[~ok])[:5].tolist()}")
    return a == 1


def _check_both_classes(y: np.ndarray, what: str = "this metric") -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        cls = "0 (negative)" if n_pos == 0 else "1 (positive)"
        raise DegenerateInputError(
            f"only one class present in y_true (all {len(y)} rows are {cls}); "
            f"{what} needs both positives and negatives")


def _check_probability(name: str, p: np.ndarray) -> None:
    if p.min() < 0 or p.max() > 1:
        raise DegenerateInputError(
            f"{name} is not a probability: values lie in [{p.min():.4g}, {p.max():.4g}], "
            "outside [0, 1]")


def _row_subject(row_subject, n: int) -> np.ndarray:
    if row_subject is None:
        return np.arange(n)
    rs = np.asarray(row_subject, dtype=np.intp)
    if rs.shape != (n,):
        raise DegenerateInputError(f"row_subject has shape {rs.shape}, expected ({n},)")
    return rs


def _counts_2d(counts) -> np.ndarray:
    c = np.asarray(counts)
    return c[None, :] if c.ndim == 1 else c


def _row_weights(counts: np.ndarray, row_subject: np.ndarray) -> np.ndarray:
    """(R, n_subjects) subject counts -> (R, n_rows) row weights."""
    return np.take(counts, row_subject, axis=1)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den as float, NaN where den == 0 (an undefined replicate, not an error)."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _weights_as_counts(sample_weight, n: int):
    """sample_weight (n,) -> (counts (1, n), identity row_subject); None -> unit weights."""
    if sample_weight is None:
        return np.ones((1, n), dtype=np.int64), np.arange(n)
    w = _as_1d("sample_weight", sample_weight)
    if len(w) != n:
        raise DegenerateInputError(f"sample_weight has {len(w)} rows, expected {n}")
    if (w < 0).any():
        raise DegenerateInputError("sample_weight must be non-negative")
    return w[None, :], np.arange(n)


def _scalar(values: np.ndarray, what: str) -> float:
    v = float(np.asarray(values).ravel()[0])
    if not np.isfinite(v):
        raise DegenerateInputError(
            f"{what} is undefined for these weights (a class has zero weight)")
    return v


# --------------------------------------------------------------------------- AUROC
def make_auroc_kernel(y_true, y_score, row_subject=None) -> Kernel:
    """Build a kernel that computes weighted AUROC for many weight vectors from one sort.

    Math: AUROC = sum_{i pos, j neg} w_i w_j [s_j < s_i] + 0.5 [s_j == s_i], divided by W1 W0
    (Mann-Whitney U; identical to the trapezoidal ROC area sklearn reports, ties included). With
    negatives sorted by score and CN[k] the cumulative weight of the k lowest negatives, positive i
    beats CN[lo_i] negatives and ties CN[hi_i] - CN[lo_i], where lo_i / hi_i count negatives with
    score < s_i / <= s_i. So numerator * 2 = sum_i w_i (CN[lo_i] + CN[hi_i]). lo, hi come from one
    searchsorted; each replicate costs one cumulative sum and two gathers.

    Args:
        y_true: (n,) 0/1 labels.
        y_score: (n,) scores, higher = more likely positive.
        row_subject: (n,) subject index of each row (0..n_subjects-1); None = one row per subject.

    Returns:
        kernel(counts (R, n_subjects)) -> (R,) AUROC, NaN for replicates missing a class.
    """
    y = _binary_labels("y_true", y_true)
    s = _as_1d("y_score", y_score)
    n = _same_length(y_true=y, y_score=s)
    _check_both_classes(y, "AUROC")
    rs = _row_subject(row_subject, n)

    neg_rows = np.flatnonzero(~y)
    neg_rows = neg_rows[np.argsort(s[neg_rows], kind="stable")]
    pos_rows = np.flatnonzero(y)
    neg_sorted = s[neg_rows]
    lo = np.searchsorted(neg_sorted, s[pos_rows], side="left")
    hi = np.searchsorted(neg_sorted, s[pos_rows], side="right")
    has_ties = bool((lo != hi).any())
    neg_sub, pos_sub = rs[neg_rows], rs[pos_rows]
    n0 = len(neg_rows)

    def kernel(counts) -> np.ndarray:
        c = _counts_2d(counts)
        cn = np.zeros((c.shape[0], n0 + 1), dtype=c.dtype)
        np.cumsum(np.take(c, neg_sub, axis=1), axis=1, out=cn[:, 1:])
        cp = np.take(c, pos_sub, axis=1)
        if has_ties:
            num2 = (cp * (np.take(cn, lo, axis=1) + np.take(cn, hi, axis=1))).sum(axis=1)
        else:  # lo == hi: no positive shares a score with a negative
            num2 = 2 * (cp * np.take(cn, lo, axis=1)).sum(axis=1)
        w1 = cp.sum(axis=1).astype(float)
        w0 = cn[:, -1].astype(float)
        return _ratio(num2, 2.0 * w1 * w0)

    return kernel


def auroc(y_true, y_score, sample_weight=None) -> float:
    """Area under the ROC curve (rank-based; tied scores count one half, as in sklearn).

    Args:
        y_true: (n,) 0/1 labels.
        y_score: (n,) scores, higher = more likely positive.
        sample_weight: optional (n,) non-negative row weights.

    Returns:
        AUROC in [0, 1]. Raises DegenerateInputError for one class, NaN scores or length mismatch.
    """
    n = len(np.asarray(y_true).ravel())
    counts, rs = _weights_as_counts(sample_weight, n)
    return _scalar(make_auroc_kernel(y_true, y_score, rs)(counts), "AUROC")


# --------------------------------------------------------------------------- AUPRC
def make_auprc_kernel(y_true, y_score, row_subject=None) -> Kernel:
    """Build a kernel for weighted average precision (sklearn's average_precision_score).

    Math: AP = sum over distinct thresholds k (descending) of (R_k - R_{k-1}) P_k, with tied
    scores forming one threshold. The recall step at threshold k is the positive weight in that
    tie group / W1, so AP = sum_{i pos} w_i P(s_i) / W1, where P(s) = TP(>= s) / (TP + FP)(>= s)
    is the precision when everything scoring >= s is called positive. TP(>= s_i) and FP(>= s_i)
    are cumulative weights at precomputed indices a_i (positives with score >= s_i) and b_i
    (negatives with score >= s_i).

    Args:
        y_true: (n,) 0/1 labels.
        y_score: (n,) scores.
        row_subject: (n,) subject index of each row; None = one row per subject.

    Returns:
        kernel(counts (R, n_subjects)) -> (R,) average precision, NaN without positive weight.
    """
    y = _binary_labels("y_true", y_true)
    s = _as_1d("y_score", y_score)
    n = _same_length(y_true=y, y_score=s)
    _check_both_classes(y, "AUPRC")
    rs = _row_subject(row_subject, n)

    pos_rows = np.flatnonzero(y)
    pos_rows = pos_rows[np.argsort(-s[pos_rows], kind="stable")]
    neg_rows = np.flatnonzero(~y)
    neg_rows = neg_rows[np.argsort(-s[neg_rows], kind="stable")]
    # Counting "score >= v" on descending arrays = searchsorted on the negated (ascending) arrays.
    neg_pos_desc = -s[pos_rows]
    a = np.searchsorted(neg_pos_desc, neg_pos_desc, side="right")
    b = np.searchsorted(-s[neg_rows], neg_pos_desc, side="right")
    pos_sub, neg_sub = rs[pos_rows], rs[neg_rows]
    n1, n0 = len(pos_rows), len(neg_rows)

    def kernel(counts) -> np.ndarray:
        c = _counts_2d(counts)
        r = c.shape[0]
        cp_w = np.take(c, pos_sub, axis=1)
        cp = np.zeros((r, n1 + 1), dtype=c.dtype)
        np.cumsum(cp_w, axis=1, out=cp[:, 1:])
        cn = np.zeros((r, n0 + 1), dtype=c.dtype)
        np.cumsum(np.take(c, neg_sub, axis=1), axis=1, out=cn[:, 1:])
        tp = np.take(cp, a, axis=1).astype(float)
        called = tp + np.take(cn, b, axis=1)
        # A positive with zero weight can sit where nothing is called positive yet (0/0); its
        # recall step is zero, so its precision does not matter: use 0.
        prec = np.divide(tp, called, out=np.zeros_like(tp), where=called > 0)
        return _ratio((cp_w * prec).sum(axis=1), cp[:, -1])

    return kernel


def auprc(y_true, y_score, sample_weight=None) -> float:
    """Area under the precision-recall curve as average precision (sklearn's definition).

    Args:
        y_true: (n,) 0/1 labels.
        y_score: (n,) scores.
        sample_weight: optional (n,) non-negative row weights.

    Returns:
        Average precision in [0, 1]. Raises DegenerateInputError on degenerate input.
    """
    n = len(np.asarray(y_true).ravel())
    counts, rs = _weights_as_counts(sample_weight, n)
    return _scalar(make_auprc_kernel(y_true, y_score, rs)(counts), "AUPRC")


# --------------------------------------------------------------------------- calibration
def make_brier_kernel(y_true, y_prob, row_subject=None) -> Kernel:
    """Kernel for the Brier score, mean of (p - y)^2: a weighted mean, one matrix-vector product.

    Args:
        y_true: (n,) 0/1 labels.
        y_prob: (n,) predicted probabilities in [0, 1].
        row_subject: (n,) subject index of each row; None = one row per subject.

    Returns:
        kernel(counts) -> (R,) Brier scores.
    """
    y = _binary_labels("y_true", y_true)
    p = _as_1d("y_prob", y_prob)
    n = _same_length(y_true=y, y_prob=p)
    _check_probability("y_prob", p)
    rs = _row_subject(row_subject, n)
    sq = (p - y) ** 2

    def kernel(counts) -> np.ndarray:
        w = _row_weights(_counts_2d(counts), rs).astype(float)
        return _ratio(w @ sq, w.sum(axis=1))

    return kernel


def brier(y_true, y_prob, sample_weight=None) -> float:
    """Brier score: mean squared difference between probability and outcome (lower is better).

    Args:
        y_true: (n,) 0/1 labels.
        y_prob: (n,) probabilities in [0, 1].
        sample_weight: optional (n,) non-negative row weights.

    Returns:
        The Brier score in [0, 1].
    """
    n = len(np.asarray(y_true).ravel())
    counts, rs = _weights_as_counts(sample_weight, n)
    return _scalar(make_brier_kernel(y_true, y_prob, rs)(counts), "Brier score")


def ece_bins(p: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """Bin index of each probability: floor(n_bins * p), with p == 1 in the last bin.

    Args:
        p: probabilities in [0, 1].
        n_bins: number of equal-width bins.

    Returns:
        Integer bin indices in [0, n_bins).
    """
    return np.minimum((np.asarray(p) * n_bins).astype(np.intp), n_bins - 1)


def make_ece_kernel(y_true, y_prob, row_subject=None, n_bins: int = ECE_BINS) -> Kernel:
    """Kernel for expected calibration error with equal-width bins weighted by count.

    Math: ECE = sum_b (W_b / W) |mean_b(y) - mean_b(p)| = sum_b |sum_{i in b} w_i (y_i - p_i)| / W,
    so one (R, n) @ (n, n_bins) product gives every replicate's per-bin residual sums.

    Args:
        y_true: (n,) 0/1 labels.
        y_prob: (n,) probabilities in [0, 1].
        row_subject: (n,) subject index of each row; None = one row per subject.
        n_bins: number of equal-width bins on [0, 1] (default 10).

    Returns:
        kernel(counts) -> (R,) ECE values.
    """
    y = _binary_labels("y_true", y_true)
    p = _as_1d("y_prob", y_prob)
    n = _same_length(y_true=y, y_prob=p)
    _check_probability("y_prob", p)
    rs = _row_subject(row_subject, n)
    resid = np.zeros((n, n_bins))
    resid[np.arange(n), ece_bins(p, n_bins)] = y - p

    def kernel(counts) -> np.ndarray:
        w = _row_weights(_counts_2d(counts), rs).astype(float)
        return _ratio(np.abs(w @ resid).sum(axis=1), w.sum(axis=1))

    return kernel


def ece(y_true, y_prob, n_bins: int = ECE_BINS, sample_weight=None) -> float:
    """Expected calibration error: 10 equal-width bins on [0, 1], bins weighted by their count.

    Args:
        y_true: (n,) 0/1 labels.
        y_prob: (n,) probabilities in [0, 1].
        n_bins: number of bins (default 10; bin b holds floor(10 p) == b, p == 1 in the last bin).
        sample_weight: optional (n,) non-negative row weights.

    Returns:
        ECE in [0, 1] (lower is better).
    """
    n = len(np.asarray(y_true).ravel())
    counts, rs = _weights_as_counts(sample_weight, n)
    return _scalar(make_ece_kernel(y_true, y_prob, rs, n_bins)(counts), "ECE")


# --------------------------------------------------------------------------- operating point
THRESHOLD_METRICS = ("sensitivity", "specificity", "ppv", "npv", "f1")


def choose_threshold(y_true, y_prob, rule: Literal["youden", "f1"] = "youden") -> float:
    """Choose a decision threshold on validation data (predict positive when score >= threshold).

    Candidates are the distinct scores (as in sklearn's roc_curve). "youden" maximises
    sensitivity + specificity - 1; "f1" maximises F1 = 2 TP / (2 TP + FP + FN). Ties go to the
    highest threshold (the first maximum in descending order, like argmax over roc_curve output).

    Args:
        y_true: (n,) 0/1 validation labels.
        y_prob: (n,) validation scores.
        rule: "youden" or "f1".

    Returns:
        The chosen threshold (one of the scores).
    """
    if rule not in ("youden", "f1"):
        raise ValueError(f"rule must be 'youden' or 'f1', got {rule!r}")
    y = _binary_labels("y_true", y_true)
    s = _as_1d("y_prob", y_prob)
    _same_length(y_true=y, y_prob=s)
    _check_both_classes(y, "threshold selection")
    order = np.argsort(-s, kind="stable")
    s_desc, y_desc = s[order], y[order]
    # The last row of each tie group: calling every score >= that value positive.
    last = np.flatnonzero(np.r_[s_desc[1:] != s_desc[:-1], True])
    tp = np.cumsum(y_desc)[last].astype(float)
    fp = (last + 1) - tp
    n_pos = float(y.sum())
    n_neg = len(y) - n_pos
    if rule == "youden":
        score = tp / n_pos - fp / n_neg
    else:  # F1 = 2TP / (2TP + FP + FN) and FN = P - TP
        score = 2 * tp / (tp + fp + n_pos)
    return float(s_desc[last[int(np.argmax(score))]])


def make_threshold_kernel(y_true, y_prob, threshold: float, row_subject=None) -> Kernel:
    """Kernel for operating-point metrics at a fixed threshold (score >= threshold is positive).

    Math: the weighted confusion matrix is one (R, n) @ (n, 4) product; the metrics are ratios
    of its cells, NaN where a denominator is zero.

    Args:
        y_true: (n,) 0/1 labels.
        y_prob: (n,) scores.
        threshold: decision threshold, chosen on validation data.
        row_subject: (n,) subject index of each row; None = one row per subject.

    Returns:
        kernel(counts) -> (R, 5) columns sensitivity, specificity, ppv, npv, f1.
    """
    y = _binary_labels("y_true", y_true)
    s = _as_1d("y_prob", y_prob)
    n = _same_length(y_true=y, y_prob=s)
    if not np.isfinite(threshold):
        raise DegenerateInputError(f"threshold must be finite, got {threshold}")
    rs = _row_subject(row_subject, n)
    pred = s >= threshold
    cells = np.stack([y & pred, ~y & pred, y & ~pred, ~y & ~pred], axis=1).astype(float)

    def kernel(counts) -> np.ndarray:
        w = _row_weights(_counts_2d(counts), rs).astype(float)
        tp, fp, fn, tn = (w @ cells).T
        return np.stack([_ratio(tp, tp + fn), _ratio(tn, tn + fp), _ratio(tp, tp + fp),
                         _ratio(tn, tn + fn), _ratio(2 * tp, 2 * tp + fp + fn)], axis=1)

    return kernel


def threshold_metrics(y_true, y_prob, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV, NPV and F1 at a threshold (score >= threshold is positive).

    Args:
        y_true: (n,) 0/1 labels.
        y_prob: (n,) scores.
        threshold: decision threshold (choose it on validation data with `choose_threshold`).

    Returns:
        Dict with keys sensitivity, specificity, ppv, npv, f1; NaN where undefined (e.g. ppv when
        nothing is predicted positive).
    """
    vals = make_threshold_kernel(y_true, y_prob, threshold)(
        np.ones((1, len(np.asarray(y_true).ravel())), dtype=np.int64))[0]
    return {k: float(v) for k, v in zip(THRESHOLD_METRICS, vals)}


THRESHOLD_UNDEFINED = {
    "sensitivity": "sensitivity is undefined: no positives in y_true",
    "specificity": "specificity is undefined: no negatives in y_true",
    "ppv": "ppv is undefined: no row scores at or above the threshold",
    "npv": "npv is undefined: no row scores below the threshold",
    "f1": "f1 is undefined: no positives and no predicted positives",
}
