"""Thresholded binary metrics and their paired subject-bootstrap differences.

At a fixed threshold t (0.5 by default; a row is predicted positive when its probability >= t,
the rule of the predicted_boolean_value column MEHR-Bench writes for meds-evaluation
(benchmark.kinds.DECISION_THRESHOLD), so meds-evaluation's binary_accuracy and f1_score on our files
equal accuracy and F1 here), with the confusion counts TP, FP, FN, TN:

    accuracy    = (TP + TN) / (TP + FP + FN + TN)
    precision   = TP / (TP + FP)              undefined without predicted positives
    recall      = TP / (TP + FN)              (sensitivity) undefined without positives
    specificity = TN / (TN + FP)              undefined without negatives
    F1          = 2 TP / (2 TP + FP + FN)     undefined only when there is neither a positive
                                              nor a predicted positive

These are the thresholded metrics that Integrating Genomics into Multimodal EHR Foundation Models
(Amar et al., 2025) compares between two models next to AUROC and AUPRC (its Table 2 reports them
at 0.50). The paired difference metric(A) - metric(B) is bootstrapped over subjects on the same
resamples as every other paired comparison (`benchmark.metrics.bootstrap.count_chunks`): a
replicate's counts are the drawn subjects' rows, weighted by how often each subject was drawn.

Interval and p: the same as `benchmark.stats.paired` (SE = SD of the replicate deltas x
sqrt(m/(m-1)), m = subjects in the rarer outcome class; t interval and two-sided p with m - 1
degrees of freedom). Deviation from the paper, kept on purpose: the paper reports the 2.5th-97.5th
percentile interval and a bootstrap p (share of deltas on either side of 0); issue 12 of
MEHR-Bench measured that the percentile interval rejects a true null too often in small samples,
so every paired interval here uses the t-Wald form. No CI and no p (NaN, with a note) when a
metric is undefined on the full data or in more than 1% of the resamples (e.g. precision when a
model almost never predicts >= t), or below MIN_CI_SUBJECTS subjects in the rarer class.

numpy/scipy only (no torch, no scikit-learn).
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from benchmark.metrics.binary import DegenerateInputError
from benchmark.metrics.bootstrap import binary_support, count_chunks, subject_index, valid_share_note
from benchmark.stats.paired import LEVEL, N_BOOT, PairedResult, check_pair

THRESHOLD = 0.5
THRESHOLDED_METRICS = ("accuracy", "precision", "recall", "f1", "specificity")

__all__ = ["THRESHOLD", "THRESHOLDED_METRICS", "confusion_counts", "paired_thresholded",
           "thresholded_metrics"]


def _metrics_from_counts(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    """The five metrics from (weighted) confusion counts of any shape; NaN where undefined."""
    tp, fp, fn, tn = (np.asarray(x, dtype=float) for x in (tp, fp, fn, tn))

    def ratio(num, den):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    return {"accuracy": ratio(tp + tn, tp + fp + fn + tn), "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn), "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "specificity": ratio(tn, tn + fp)}


def _check(y_true, score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(score, dtype=float)
    if y.ndim != 1 or s.shape != y.shape:
        raise DegenerateInputError(f"y_true and score must be 1-D of equal length, got {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise DegenerateInputError("y_true must hold 0/1 labels (a binary task)")
    if not np.isfinite(s).all():
        raise DegenerateInputError("score holds NaN or infinite values")
    return y.astype(np.int8), s


def confusion_counts(y_true, score, threshold: float = THRESHOLD) -> tuple[int, int, int, int]:
    """(TP, FP, FN, TN) at a threshold (predicted positive: score >= threshold).

    Args:
        y_true: (n,) 0/1 labels.
        score: (n,) probabilities.
        threshold: decision threshold.

    Returns:
        (tp, fp, fn, tn).
    """
    y, s = _check(y_true, score)
    p = s >= threshold
    return (int((p & (y == 1)).sum()), int((p & (y == 0)).sum()), int((~p & (y == 1)).sum()),
            int((~p & (y == 0)).sum()))


def thresholded_metrics(y_true, score, threshold: float = THRESHOLD) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and specificity at a threshold (NaN where undefined).

    Args:
        y_true: (n,) 0/1 labels.
        score: (n,) probabilities.
        threshold: decision threshold (predicted positive: score >= threshold).

    Returns:
        {metric: value} for THRESHOLDED_METRICS.
    """
    return {k: float(v) for k, v in _metrics_from_counts(*confusion_counts(y_true, score, threshold)).items()}


def _kernel(y: np.ndarray, pred: np.ndarray, rs: np.ndarray, n_subjects: int):
    """counts (R, n_subjects) -> {metric: (R,)} for one model's 0/1 predictions."""
    cols = np.stack([(pred & (y == 1)), (pred & (y == 0)), (~pred & (y == 1)), (~pred & (y == 0))], 1)
    per_subject = np.zeros((n_subjects, 4))
    np.add.at(per_subject, rs, cols.astype(float))   # the four counts of each subject's rows

    def k(counts: np.ndarray) -> dict[str, np.ndarray]:
        c = counts @ per_subject   # (R, 4): weighted TP, FP, FN, TN of each resample
        return _metrics_from_counts(c[:, 0], c[:, 1], c[:, 2], c[:, 3])
    return k


def paired_thresholded(y_true, score_a, score_b, subject_ids=None, *, threshold: float = THRESHOLD,
                       n_boot: int = N_BOOT, seed=0, level: float = LEVEL) -> dict[str, PairedResult]:
    """Paired subject-bootstrap differences metric(A) - metric(B) of the thresholded metrics.

    Args:
        y_true: (n,) 0/1 labels.
        score_a: model A's probabilities on the rows.
        score_b: model B's probabilities on the same rows.
        subject_ids: (n,) subject of each row (None = each row its own subject).
        threshold: decision threshold (predicted positive: score >= threshold).
        n_boot: replicates.
        seed: int seed or numpy Generator (the same draws as the other paired metrics).
        level: CI coverage.

    Returns:
        {metric: PairedResult} for THRESHOLDED_METRICS (metric names "accuracy@0.5" style are the
        caller's to build); a metric undefined on the full data has NaN values and a note.

    Raises:
        DegenerateInputError: lengths differ, labels are not 0/1 or scores are not finite.
    """
    n = check_pair(y_true, score_a, score_b)
    y, sa = _check(y_true, score_a)
    _, sb = _check(y_true, score_b)
    rs, n_subjects = subject_index(subject_ids, n)
    ka = _kernel(y, sa >= threshold, rs, n_subjects)
    kb = _kernel(y, sb >= threshold, rs, n_subjects)
    ones = np.ones((1, n_subjects))
    full_a, full_b = ka(ones), kb(ones)
    deltas = {m: np.empty(n_boot) for m in THRESHOLDED_METRICS}
    done = 0
    for counts in count_chunks(n_subjects, n_boot, seed):
        r = len(counts)
        a, b = ka(counts.astype(float)), kb(counts.astype(float))
        for m in THRESHOLDED_METRICS:
            deltas[m][done:done + r] = a[m] - b[m]
        done += r
    support = binary_support(y, rs)
    unit = "subjects" if subject_ids is not None else "rows (each row treated as a subject)"
    s = seed if isinstance(seed, (int, np.integer)) else "generator"
    out = {}
    for m in THRESHOLDED_METRICS:
        va, vb = float(full_a[m][0]), float(full_b[m][0])
        d = deltas[m]
        ok = d[np.isfinite(d)]
        note = None
        if not (np.isfinite(va) and np.isfinite(vb)):
            why = [nm for nm, v in (("A", va), ("B", vb)) if not np.isfinite(v)]
            note = (f"{m} at {threshold:g} is undefined for model {' and '.join(why)} on these rows "
                    f"({_undefined_reason(m)})")
        note = note or support.note() or valid_share_note(len(ok), n_boot)
        if note is None and len(ok) < 2:
            note = "CI not reported: fewer than 2 valid resamples"
        nan = float("nan")
        mean = se = lo = hi = p = nan
        if len(ok) >= 2 and support.n > 1:
            mean, se = float(ok.mean()), float(ok.std(ddof=1) * support.inflation)
        delta = va - vb
        if note is None:
            ref = sps.t(support.n - 1)
            z = float(ref.ppf((1 + level) / 2))
            lo, hi = delta - z * se, delta + z * se
            p = float(2 * ref.sf(abs(delta) / se)) if se > 0 else (1.0 if delta == 0 else 0.0)
        method = (f"paired bootstrap t {level:.0%} CI of {m}@{threshold:g}(A) - {m}@{threshold:g}(B) "
                  f"(predicted positive: probability >= {threshold:g}): SE = SD of {len(ok)} valid of "
                  f"{n_boot} replicate deltas ({n_subjects} {unit} resampled, seed {s}) x sqrt(m/(m-1)), "
                  f"m = {support.n} {support.what}; two-sided p with m - 1 df")
        out[m] = PairedResult(metric=m, value_a=va, value_b=vb, delta=float(delta), mean_delta=mean, se=se,
                              ci_low=float(lo), ci_high=float(hi), p_value=float(p), n_boot=n_boot,
                              n_valid=int(len(ok)), n_subjects=n_subjects, n_rows=n, level=level,
                              method=method, note=note, support=support.n)
    return out


def _undefined_reason(metric: str) -> str:
    return {"precision": "no row is predicted positive", "recall": "no positive row",
            "specificity": "no negative row", "f1": "no positive and no predicted positive row",
            "accuracy": "no rows"}[metric]
