"""Paired model comparison: subject-level paired bootstrap, precision-difference curves and
meta-analysis across tasks (fixed effect and DerSimonian-Laird random effects).

Paired bootstrap. Two models scored on the *same* test rows are compared on the *same* resamples:
a replicate draws subjects with replacement (a drawn subject brings all of its rows), both models'
metrics are computed on it, and the replicate's delta is metric(A) - metric(B). Pairing removes the
between-resample variance both models share, so the interval on the delta is much narrower than
the two marginal intervals suggest. The resamples come from `benchmark.metrics.bootstrap` (the same
draws, seeded, as every other interval in the benchmark) and metrics are evaluated by the weighted
kernels of `benchmark.metrics`, so 2000 replicates cost a few vectorised passes.

p-value: two-sided bootstrap p = min(1, 2 * (min(#{delta* <= 0}, #{delta* >= 0}) + 1) / (B + 1)),
the usual "+1" form so that a bootstrap never reports p = 0 (its resolution is 2 / (B + 1)).
Identical models give delta* = 0 in every replicate and p = 1.

Meta-analysis. Given per-task deltas y_i with standard errors s_i (v_i = s_i^2):
    fixed effect:   w_i = 1 / v_i, theta_F = sum w_i y_i / sum w_i, SE_F = sqrt(1 / sum w_i)
    heterogeneity:  Q = sum w_i (y_i - theta_F)^2 with k - 1 degrees of freedom,
                    I^2 = max(0, (Q - (k - 1)) / Q)
    DerSimonian-Laird: C = sum w_i - sum w_i^2 / sum w_i, tau^2 = max(0, (Q - (k - 1)) / C),
                    w*_i = 1 / (v_i + tau^2), theta_R = sum w*_i y_i / sum w*_i,
                    SE_R = sqrt(1 / sum w*_i)
Confidence intervals and p-values are normal (Wald): theta +- z_{(1+level)/2} SE, p = 2 (1 - Phi(|z|)).

numpy/scipy only (no torch, no scikit-learn).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import stats as sps

from benchmark.metrics.binary import DegenerateInputError, Kernel, make_auprc_kernel, make_auroc_kernel
from benchmark.metrics.bootstrap import count_chunks, subject_index

N_BOOT = 2000
LEVEL = 0.95
PAIRED_METRICS = ("auroc", "auprc", "c_index", "auroc_macro", "mae")
# Metrics where a smaller value is better (the delta's sign is read the other way).
LOWER_IS_BETTER = frozenset({"mae", "rmse", "brier", "ece", "ibs"})
DEFAULT_RECALL_GRID = tuple(np.round(np.linspace(0.05, 1.0, 20), 4))

__all__ = ["LEVEL", "N_BOOT", "PAIRED_METRICS", "MetaResult", "PairedResult", "PrecisionDifference",
           "bootstrap_p", "meta_analysis", "metric_kernel", "paired_bootstrap",
           "precision_difference_curve"]


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class PairedResult:
    """Paired bootstrap comparison of two models on one metric (delta = A - B).

    Attributes:
        metric: metric name.
        value_a: metric of model A on all rows.
        value_b: metric of model B on all rows.
        delta: value_a - value_b on all rows.
        mean_delta: mean of the replicate deltas.
        se: standard deviation of the replicate deltas (the delta's bootstrap standard error).
        ci_low: lower percentile bound of the delta.
        ci_high: upper percentile bound.
        p_value: two-sided bootstrap p-value for delta = 0.
        n_boot: replicates drawn.
        n_valid: replicates where both metrics were defined.
        n_subjects: subjects resampled.
        n_rows: rows compared.
        level: CI coverage.
        method: the procedure in words.
    """

    metric: str
    value_a: float
    value_b: float
    delta: float
    mean_delta: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    n_boot: int
    n_valid: int
    n_subjects: int
    n_rows: int
    level: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of all fields.

        Returns:
            dict field -> value.
        """
        return asdict(self)


@dataclass(frozen=True)
class PrecisionDifference:
    """Interpolated precision of A and B on a recall grid, and the paired delta A - B with its CI.

    Attributes:
        recall: (K,) recall grid.
        precision_a: (K,) model A's interpolated precision (max precision at recall >= r).
        precision_b: (K,) model B's.
        delta: (K,) precision_a - precision_b.
        ci_low: (K,) percentile lower bounds of the delta.
        ci_high: (K,) upper bounds.
        n_boot: replicates.
        level: CI coverage.
    """

    recall: np.ndarray
    precision_a: np.ndarray
    precision_b: np.ndarray
    delta: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_boot: int
    level: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (arrays as lists, NaN as None).

        Returns:
            dict field -> value.
        """
        def lst(a):
            return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]
        return {"recall": lst(self.recall), "precision_a": lst(self.precision_a),
                "precision_b": lst(self.precision_b), "delta": lst(self.delta),
                "ci_low": lst(self.ci_low), "ci_high": lst(self.ci_high), "n_boot": self.n_boot,
                "level": self.level}


@dataclass(frozen=True)
class MetaResult:
    """Fixed-effect and DerSimonian-Laird random-effects pooling of per-task deltas.

    Attributes:
        k: number of studies (tasks) pooled.
        fixed: {"estimate", "se", "ci_low", "ci_high", "z", "p_value"} (inverse variance).
        random: the same keys for DerSimonian-Laird random effects.
        q: Cochran's Q.
        q_df: its degrees of freedom (k - 1).
        q_p_value: P(chi2_{k-1} >= Q).
        i2: I^2 in [0, 1] (share of variation beyond chance).
        tau2: DerSimonian-Laird between-study variance.
        weights_fixed: normalised fixed-effect weights per study.
        weights_random: normalised random-effects weights per study.
        level: CI coverage.
        excluded: indices of input studies left out (non-finite delta or SE <= 0), with reasons.
    """

    k: int
    fixed: dict[str, float]
    random: dict[str, float]
    q: float
    q_df: int
    q_p_value: float
    i2: float
    tau2: float
    weights_fixed: list[float]
    weights_random: list[float]
    level: float
    excluded: dict[int, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of all fields.

        Returns:
            dict field -> value.
        """
        d = asdict(self)
        d["excluded"] = {str(k): v for k, v in self.excluded.items()}
        return d


# --------------------------------------------------------------------------- kernels
def _cindex_kernel(y_true, score, rs) -> Kernel:
    from benchmark.metrics.survival import make_harrell_kernel
    time, event = _survival(y_true)
    return make_harrell_kernel(time, event, score, rs)


def _survival(y_true) -> tuple[np.ndarray, np.ndarray]:
    from benchmark.metrics.evaluate import split_survival
    return split_survival(y_true)


def metric_kernel(metric: str, y_true, score, row_subject=None) -> Kernel:
    """A scalar weighted kernel (see `benchmark.metrics.binary`) for one comparable metric.

    Args:
        metric: "auroc", "auprc" (binary), "c_index" (Harrell, survival; y_true = (time, event)
            or an (n, 2) [time, event] array, score = risk), "auroc_macro" (multilabel, (n, L)
            arrays) or "mae" (regression).
        y_true: labels in the form the metric needs.
        score: model scores.
        row_subject: (n,) subject index of each row (0..n_subjects-1); None = a row per subject.

    Returns:
        kernel(counts (R, n_subjects)) -> (R,) metric values, NaN where undefined.

    Raises:
        DegenerateInputError: the metric is undefined on the full data.
        ValueError: unknown metric.
    """
    if metric == "auroc":
        return make_auroc_kernel(y_true, score, row_subject)
    if metric == "auprc":
        return make_auprc_kernel(y_true, score, row_subject)
    if metric == "c_index":
        return _cindex_kernel(y_true, score, row_subject)
    if metric == "auroc_macro":
        from benchmark.metrics.multilabel import make_multilabel_kernel
        k, _ = make_multilabel_kernel(y_true, score, "auroc", row_subject)
        return lambda c, k=k: k(c)[:, 0]
    if metric == "mae":
        from benchmark.metrics.regression import make_regression_kernel
        k = make_regression_kernel(y_true, score, row_subject)
        return lambda c, k=k: k(c)[:, 0]
    raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(PAIRED_METRICS)}")


def bootstrap_p(deltas: np.ndarray) -> float:
    """Two-sided bootstrap p-value for "delta = 0" from replicate deltas (NaN ignored).

    Args:
        deltas: (B,) replicate deltas.

    Returns:
        min(1, 2 (min(#{d <= 0}, #{d >= 0}) + 1) / (B + 1)); NaN without valid replicates.
    """
    d = np.asarray(deltas, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return float("nan")
    tail = min(int((d <= 0).sum()), int((d >= 0).sum()))
    return float(min(1.0, 2.0 * (tail + 1) / (len(d) + 1)))


def _check_pair(y_true, score_a, score_b) -> int:
    n = len(np.asarray(y_true)) if not isinstance(y_true, tuple) else len(np.asarray(y_true[0]))
    na, nb = len(np.asarray(score_a)), len(np.asarray(score_b))
    if not (n == na == nb):
        raise DegenerateInputError(
            f"length mismatch: y_true has {n} rows, score_a {na}, score_b {nb}; the two models "
            "must be scored on the same rows (join predictions on subject_id, prediction_time)")
    return n


def paired_bootstrap(y_true, score_a, score_b, subject_ids=None, *, metric: str = "auroc",
                     n_boot: int = N_BOOT, seed=0, level: float = LEVEL) -> PairedResult:
    """Paired subject-bootstrap comparison of two models' scores on the same rows.

    Args:
        y_true: labels ((n,) 0/1; survival: (time, event) or (n, 2); multilabel: (n, L)).
        score_a: model A's scores on the rows.
        score_b: model B's scores on the same rows.
        subject_ids: (n,) subject of each row; the bootstrap resamples subjects. None = each row
            is its own subject.
        metric: one of PAIRED_METRICS.
        n_boot: replicates (default 2000).
        seed: int seed or numpy Generator.
        level: CI coverage.

    Returns:
        PairedResult with delta = metric(A) - metric(B).

    Raises:
        DegenerateInputError: the metric is undefined on the full data, or lengths differ.
    """
    n = _check_pair(y_true, score_a, score_b)
    rs, n_subjects = subject_index(subject_ids, n)
    ka = metric_kernel(metric, y_true, score_a, rs)
    kb = metric_kernel(metric, y_true, score_b, rs)
    ones = np.ones((1, n_subjects), dtype=np.int64)
    va, vb = float(np.asarray(ka(ones)).ravel()[0]), float(np.asarray(kb(ones)).ravel()[0])
    if not (np.isfinite(va) and np.isfinite(vb)):
        raise DegenerateInputError(f"{metric} is undefined on the full data")
    deltas = np.empty(n_boot)
    done = 0
    for counts in count_chunks(n_subjects, n_boot, seed):
        r = len(counts)
        deltas[done:done + r] = np.asarray(ka(counts), float).ravel() - np.asarray(kb(counts), float).ravel()
        done += r
    ok = deltas[np.isfinite(deltas)]
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    if len(ok) >= 2:
        lo, hi = (float(x) for x in np.percentile(ok, q))
        mean, se = float(ok.mean()), float(ok.std(ddof=1))
    else:
        lo = hi = mean = se = float("nan")
    unit = "subjects" if subject_ids is not None else "rows (each row treated as a subject)"
    s = seed if isinstance(seed, (int, np.integer)) else "generator"
    method = (f"paired percentile bootstrap {level:.0%} CI of {metric}(A) - {metric}(B), "
              f"{n_boot} resamples of {n_subjects} {unit}, seed {s}; two-sided bootstrap p")
    if len(ok) < n_boot:
        method += f"; {n_boot - len(ok)} degenerate resamples skipped"
    return PairedResult(metric=metric, value_a=va, value_b=vb, delta=va - vb, mean_delta=mean, se=se,
                        ci_low=lo, ci_high=hi, p_value=bootstrap_p(ok), n_boot=n_boot,
                        n_valid=int(len(ok)), n_subjects=n_subjects, n_rows=n, level=level,
                        method=method)


# --------------------------------------------------------------------------- PR curves
def _make_interp_precision_kernel(y_true, score, row_subject, grid: np.ndarray) -> Kernel:
    """Kernel: interpolated precision P_interp(r) = max{precision(k) : recall(k) >= r} at each r.

    Rows are sorted by descending score once; tied scores form one threshold (only the last row of
    a tie group is a valid cut). A replicate's weighted TP/FP cumulative sums give precision and
    recall at every cut; a reverse running maximum of precision makes it the interpolated
    precision, which is read at the first cut whose recall reaches r.
    """
    from benchmark.metrics.binary import _as_1d, _binary_labels, _check_both_classes, _row_subject
    y = _binary_labels("y_true", y_true)
    s = _as_1d("y_score", score)
    _check_both_classes(y, "a precision-recall curve")
    rs = _row_subject(row_subject, len(y))
    order = np.argsort(-s, kind="stable")
    ys, ss, sub = y[order], s[order], rs[order]
    last_of_tie = np.r_[ss[1:] != ss[:-1], True]
    cuts = np.flatnonzero(last_of_tie)

    def kernel(counts) -> np.ndarray:
        c = counts if counts.ndim == 2 else counts[None, :]
        w = np.take(c, sub, axis=1).astype(float)
        tp = np.cumsum(w * ys, axis=1)[:, cuts]
        called = np.cumsum(w, axis=1)[:, cuts]
        p_tot = tp[:, -1:]
        prec = np.divide(tp, called, out=np.zeros_like(tp), where=called > 0)
        rec = np.divide(tp, p_tot, out=np.full_like(tp, np.nan), where=p_tot > 0)
        # interpolated precision: running max from the right (recall grows with the cut index)
        prec_i = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
        out = np.full((c.shape[0], len(grid)), np.nan)
        for r in range(c.shape[0]):
            if not np.isfinite(rec[r, -1]):
                continue
            # recall is non-decreasing along cuts; first cut with recall >= grid value
            idx = np.searchsorted(rec[r], grid - 1e-12, side="left")
            good = idx < rec.shape[1]
            out[r, good] = prec_i[r, idx[good]]
        return out

    return kernel


def precision_difference_curve(y_true, score_a, score_b, subject_ids=None, *,
                               recall_grid: Sequence[float] = DEFAULT_RECALL_GRID,
                               n_boot: int = N_BOOT, seed=0, level: float = LEVEL
                               ) -> PrecisionDifference:
    """Paired bootstrap of the precision difference A - B at fixed recall levels.

    Precision at recall r is the interpolated precision (the best precision at any threshold whose
    recall is at least r), the usual definition for comparing PR curves at fixed recall.

    Args:
        y_true: (n,) 0/1 labels.
        score_a: (n,) model A's scores.
        score_b: (n,) model B's scores on the same rows.
        subject_ids: (n,) subject of each row (None = each row its own subject).
        recall_grid: recall values in (0, 1].
        n_boot: replicates.
        seed: int seed or numpy Generator.
        level: CI coverage.

    Returns:
        PrecisionDifference.
    """
    n = _check_pair(y_true, score_a, score_b)
    grid = np.asarray(recall_grid, dtype=float)
    rs, n_subjects = subject_index(subject_ids, n)
    ka = _make_interp_precision_kernel(y_true, score_a, rs, grid)
    kb = _make_interp_precision_kernel(y_true, score_b, rs, grid)
    ones = np.ones((1, n_subjects), dtype=np.int64)
    pa, pb = ka(ones)[0], kb(ones)[0]
    reps = np.full((n_boot, len(grid)), np.nan)
    done = 0
    for counts in count_chunks(n_subjects, n_boot, seed, chunk_size=64):
        r = len(counts)
        reps[done:done + r] = ka(counts) - kb(counts)
        done += r
    lo = np.full(len(grid), np.nan)
    hi = np.full(len(grid), np.nan)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    for j in range(len(grid)):
        col = reps[:, j][np.isfinite(reps[:, j])]
        if len(col) >= 2:
            lo[j], hi[j] = np.percentile(col, q)
    return PrecisionDifference(recall=grid, precision_a=pa, precision_b=pb, delta=pa - pb,
                               ci_low=lo, ci_high=hi, n_boot=n_boot, level=level)


# --------------------------------------------------------------------------- meta-analysis
def _wald(est: float, se: float, z_crit: float) -> dict[str, float]:
    z = est / se if se > 0 else float("nan")
    p = float(2 * sps.norm.sf(abs(z))) if np.isfinite(z) else float("nan")
    return {"estimate": float(est), "se": float(se), "ci_low": float(est - z_crit * se),
            "ci_high": float(est + z_crit * se), "z": float(z), "p_value": p}


def meta_analysis(estimates: Sequence[float], ses: Sequence[float], *,
                  level: float = LEVEL) -> MetaResult:
    """Pool per-task effects with inverse-variance fixed effect and DerSimonian-Laird random effects.

    Args:
        estimates: (k,) per-study effects (e.g. paired AUROC deltas).
        ses: (k,) their standard errors (e.g. PairedResult.se).
        level: CI coverage.

    Returns:
        MetaResult (see the module docstring for the formulas). Studies with a non-finite effect
        or an SE <= 0 (no sampling variance, e.g. identical models) are excluded and listed.

    Raises:
        ValueError: no usable study, or estimates and ses differ in length.
    """
    y_all = np.asarray(estimates, dtype=float)
    s_all = np.asarray(ses, dtype=float)
    if y_all.shape != s_all.shape or y_all.ndim != 1:
        raise ValueError(f"estimates and ses must be 1-D of equal length, got {y_all.shape} and {s_all.shape}")
    excluded: dict[int, str] = {}
    for i, (y, s) in enumerate(zip(y_all, s_all)):
        if not np.isfinite(y):
            excluded[i] = "effect is not finite"
        elif not np.isfinite(s) or s <= 0:
            excluded[i] = "standard error is not positive (no sampling variance)"
    keep = np.array([i not in excluded for i in range(len(y_all))], dtype=bool)
    y, v = y_all[keep], s_all[keep] ** 2
    k = len(y)
    if k == 0:
        raise ValueError("no study with a finite effect and a positive standard error")
    z_crit = float(sps.norm.ppf((1 + level) / 2))
    w = 1.0 / v
    sw = w.sum()
    theta_f = float((w * y).sum() / sw)
    q = float((w * (y - theta_f) ** 2).sum())
    df = k - 1
    c = float(sw - (w ** 2).sum() / sw)
    tau2 = max(0.0, (q - df) / c) if df > 0 and c > 0 else 0.0
    i2 = max(0.0, (q - df) / q) if q > 0 else 0.0
    w_r = 1.0 / (v + tau2)
    theta_r = float((w_r * y).sum() / w_r.sum())
    q_p = float(sps.chi2.sf(q, df)) if df > 0 else float("nan")
    return MetaResult(k=k, fixed=_wald(theta_f, float(np.sqrt(1.0 / sw)), z_crit),
                      random=_wald(theta_r, float(np.sqrt(1.0 / w_r.sum())), z_crit),
                      q=q, q_df=df, q_p_value=q_p, i2=float(i2), tau2=float(tau2),
                      weights_fixed=(w / sw).tolist(), weights_random=(w_r / w_r.sum()).tolist(),
                      level=level, excluded=excluded)

