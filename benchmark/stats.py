"""Paired model comparison: subject-level paired bootstrap, precision-difference curves and
meta-analysis across tasks (fixed effect and DerSimonian-Laird random effects).

Paired bootstrap. Two models scored on the *same* test rows are compared on the *same* resamples:
a replicate draws subjects with replacement (a drawn subject brings all of its rows), both models'
metrics are computed on it, and the replicate's delta is metric(A) - metric(B). Pairing removes the
between-resample variance both models share. The resamples come from `benchmark.metrics.bootstrap`
(the same draws, seeded, as every other interval in the benchmark) and metrics are evaluated by the
weighted kernels of `benchmark.metrics`, so 2000 replicates cost a few vectorised passes.

Interval and p-value (issue 12). SE = standard deviation of the replicate deltas x sqrt(m/(m-1)),
m = subjects in the rarer outcome class (a bootstrap variance of m draws is (m-1)/m of the
unbiased one); CI = delta +- t SE and p = 2 P(T_{m-1} >= |delta| / SE), t the (1+level)/2 quantile
of Student's t with m - 1 degrees of freedom (the SE rests on m subjects; for large m this is the
normal Wald test). The percentile interval with the bootstrap p it replaces rejected a true null
8% of the time at 10 positive subjects (n = 300), the normal Wald test 6-7%; this one <= 6%
(tests/test_small_sample_stats.py). No CI and no p (None, with
`note` saying why) below MIN_CI_SUBJECTS subjects in the rarer class or when fewer than 99% of the
replicates are defined: then only the delta is reported.

Best of several B (`paired_bootstrap_best_of`). B is the candidate with the best metric on the same
rows, so delta = A - best(B) is biased towards B. Every candidate is compared with A on the same
replicates; the CI's B side is Bonferroni-corrected over the m candidates (the upper bound of
A - best(B) is min_j(delta_j + z_{1 - alpha/(2m)} SE_j)) and its A side needs A to beat every
candidate (lower bound min_j(delta_j - z_{1 - alpha/2} SE_j), an intersection-union test that needs
no correction). With one candidate this is the plain paired test.

Meta-analysis. Given per-task deltas y_i with standard errors s_i (v_i = s_i^2):
    fixed effect:   w_i = 1 / v_i, theta_F = sum w_i y_i / sum w_i
    heterogeneity:  Q = sum w_i (y_i - theta_F)^2 with k - 1 degrees of freedom,
                    I^2 = max(0, (Q - (k - 1)) / Q)
    DerSimonian-Laird: C = sum w_i - sum w_i^2 / sum w_i, tau^2 = max(0, (Q - (k - 1)) / C),
                    w*_i = 1 / (v_i + tau^2), theta_R = sum w*_i y_i / sum w*_i
    standard errors: with S the covariance matrix of the task deltas,
                    SE_F = sqrt(w' S w) / sum w,  SE_R = sqrt(w*' (S + tau^2 I) w*) / sum w*
With independent tasks S = diag(v), and these are the textbook sqrt(1 / sum w_i) and
sqrt(1 / sum w*_i). Tasks of one results folder are scored on the same held-out subjects, so their
deltas are correlated: `pooled_paired_bootstrap` draws ONE subject bootstrap over the union of the
tasks' subjects, computes every task's replicate delta on those draws, and takes S from the joint
replicates (its correlation, scaled by each task's SE). Confidence intervals and p-values are
normal (Wald): theta +- z_{(1+level)/2} SE, p = 2 (1 - Phi(|z|)).

numpy/scipy only (no torch, no scikit-learn).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import stats as sps

from benchmark.kinds import LOWER_IS_BETTER  # noqa: F401  (re-exported; the one vocabulary)
from benchmark.metrics.binary import DegenerateInputError, Kernel, make_auprc_kernel, make_auroc_kernel
from benchmark.metrics.bootstrap import (
    MIN_VALID_SHARE,
    Support,
    binary_support,
    event_support,
    count_chunks,
    multilabel_support,
    subject_index,
    valid_share_note,
    weakest,
)

N_BOOT = 2000
LEVEL = 0.95
PAIRED_METRICS = ("auroc", "auprc", "c_index", "auroc_macro", "mae")
# Metrics where a smaller value is better (the delta's sign is read the other way).
DEFAULT_RECALL_GRID = tuple(np.round(np.linspace(0.05, 1.0, 20), 4))

__all__ = ["LEVEL", "N_BOOT", "PAIRED_METRICS", "MetaResult", "PairedResult", "PrecisionDifference",
           "bootstrap_p", "meta_analysis", "metric_kernel", "metric_support", "paired_bootstrap",
           "paired_bootstrap_best_of", "pooled_paired_bootstrap", "precision_difference_curve"]


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
        se: the delta's bootstrap standard error (SD of the replicate deltas x sqrt(m/(m-1))).
        ci_low: lower bound of the delta (NaN when not reported, see note).
        ci_high: upper bound.
        p_value: two-sided p-value for delta = 0 (NaN when not reported).
        n_boot: replicates drawn.
        n_valid: replicates where both metrics were defined.
        n_subjects: subjects resampled.
        n_rows: rows compared.
        level: CI coverage.
        method: the procedure in words.
        note: None, or why CI and p are not reported (e.g. "CI not reported: 7 positive subjects
            (needs >= 10)").
        support: subjects in the rarer outcome class (m).
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
    note: str | None = None
    support: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of all fields (NaN as None).

        Returns:
            dict field -> value.
        """
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in asdict(self).items()}


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
        se_method: how the pooled standard errors were obtained, in words.
        correlation: the correlation matrix of the pooled studies' deltas used for the SEs (None:
            independent studies).
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
    se_method: str = "independent studies: SE from the per-study standard errors"
    correlation: list[list[float]] | None = None

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


def metric_support(metric: str, y_true, row_subject: np.ndarray, n_subjects: int) -> Support:
    """Subjects in the rarer outcome class of a comparable metric (what its CI and p rest on).

    Args:
        metric: one of PAIRED_METRICS.
        y_true: labels in the form the metric needs (see `metric_kernel`).
        row_subject: (n,) subject code of each row.
        n_subjects: number of subjects.

    Returns:
        Support: positive / negative subjects (auroc, auprc; the weakest label for auroc_macro),
        subjects with an event (c_index), or subjects (mae).
    """
    if metric in ("auroc", "auprc"):
        return binary_support(y_true, row_subject)
    if metric == "c_index":
        return event_support(_survival(y_true)[1], row_subject)
    if metric == "auroc_macro":
        labels = multilabel_support(y_true, row_subject)
        return weakest([x for x in labels if x.n > 0] or labels)
    return Support(n_subjects, "subjects")


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
        PairedResult with delta = metric(A) - metric(B); CI and p NaN (with `note`) when the
        sample cannot support them (see the module docstring).

    Raises:
        DegenerateInputError: the metric is undefined on the full data, or lengths differ.
    """
    return paired_bootstrap_best_of(y_true, score_a, {"B": score_b}, subject_ids, metric=metric,
                                    n_boot=n_boot, seed=seed, level=level)[1]


def _tail_p(t: np.ndarray, ref) -> np.ndarray:
    """P(T >= t) under the reference distribution for standardised deltas t (inf allowed; 0/0
    counts as t = 0)."""
    return ref.sf(np.nan_to_num(t, nan=0.0, posinf=np.inf, neginf=-np.inf))


def paired_bootstrap_best_of(y_true, score_a, scores_b, subject_ids=None, *, metric: str = "auroc",
                             n_boot: int = N_BOOT, seed=0, level: float = LEVEL
                             ) -> tuple[str, PairedResult]:
    """A against the best of several models B, corrected for choosing B on the same rows.

    Args:
        y_true: labels (see `paired_bootstrap`).
        score_a: model A's scores.
        scores_b: {name: scores} of the candidates B on the same rows (one candidate = the plain
            paired test).
        subject_ids: (n,) subject of each row (None = each row its own subject).
        metric: one of PAIRED_METRICS.
        n_boot: replicates.
        seed: int seed or numpy Generator (every candidate sees the same draws).
        level: CI coverage.

    Returns:
        (name of the chosen B, PairedResult of A - chosen B whose CI and p carry the selection
        correction described in the module docstring).

    Raises:
        DegenerateInputError: the metric is undefined on the full data, or lengths differ.
    """
    names = list(scores_b)
    if not names:
        raise ValueError("no candidate model B")
    n = max(_check_pair(y_true, score_a, scores_b[nm]) for nm in names)
    rs, n_subjects = subject_index(subject_ids, n)
    ka = metric_kernel(metric, y_true, score_a, rs)
    kbs = [metric_kernel(metric, y_true, scores_b[nm], rs) for nm in names]
    ones = np.ones((1, n_subjects), dtype=np.int64)
    va = float(np.asarray(ka(ones)).ravel()[0])
    vbs = np.array([float(np.asarray(k(ones)).ravel()[0]) for k in kbs])
    if not (np.isfinite(va) and np.isfinite(vbs).all()):
        raise DegenerateInputError(f"{metric} is undefined on the full data")
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0  # sign * delta > 0: A is better
    best = int(np.argmax(sign * vbs))  # the best B: highest metric (lowest for errors)
    deltas = np.empty((n_boot, len(names)))
    done = 0
    for counts in count_chunks(n_subjects, n_boot, seed):
        r = len(counts)
        a = np.asarray(ka(counts), float).ravel()
        for j, k in enumerate(kbs):
            deltas[done:done + r, j] = a - np.asarray(k(counts), float).ravel()
        done += r
    valid = np.isfinite(deltas).all(axis=1)
    ok = deltas[valid]
    support = metric_support(metric, y_true, rs, n_subjects)
    note = support.note() or valid_share_note(int(valid.sum()), n_boot)
    if note is None and len(ok) < 2:
        note = "CI not reported: fewer than 2 valid resamples"
    d_hat = va - vbs
    nan = float("nan")
    lo = hi = p = se = mean = nan
    if len(ok) >= 2 and support.n > 1:
        mean, se = float(ok[:, best].mean()), float(ok[:, best].std(ddof=1) * support.inflation)
    if note is None:
        lo, hi, p = _best_of_interval(sign * d_hat, ok.std(axis=0, ddof=1) * support.inflation, level,
                                      df=support.n - 1)
        if sign < 0:
            lo, hi = -hi, -lo
    m = len(names)
    unit = "subjects" if subject_ids is not None else "rows (each row treated as a subject)"
    s = seed if isinstance(seed, (int, np.integer)) else "generator"
    method = (f"paired bootstrap Wald {level:.0%} CI of {metric}(A) - {metric}(B): SE = SD of "
              f"{n_boot} replicate deltas ({n_subjects} {unit} resampled, seed {s}) x sqrt(m/(m-1)), "
              f"m = {support.n} {support.what}; t quantiles and two-sided p with m - 1 df")
    if m > 1:
        method += (f"; B = best of {m} candidates on these rows, corrected for the choice (Bonferroni "
                   "over candidates on B's side, A must beat every candidate on A's side)")
    if valid.sum() < n_boot:
        method += f"; {n_boot - int(valid.sum())} degenerate resamples skipped"
    return names[best], PairedResult(
        metric=metric, value_a=va, value_b=float(vbs[best]), delta=float(d_hat[best]), mean_delta=mean,
        se=se, ci_low=lo, ci_high=hi, p_value=p, n_boot=n_boot, n_valid=int(valid.sum()),
        n_subjects=n_subjects, n_rows=n, level=level, method=method, note=note, support=support.n)


def _best_of_interval(e_hat: np.ndarray, se: np.ndarray, level: float,
                      df: int) -> tuple[float, float, float]:
    """CI and p of min_j e_j (e_j = A's advantage over candidate j; the chosen B has the smallest).

    Args:
        e_hat: (m,) observed advantages of A.
        se: (m,) their standard errors.
        level: coverage.
        df: degrees of freedom of the t reference (m - 1 for m subjects in the rarer class).

    Returns:
        (low, high, p): low = min_j(e_j - z se_j) (A beats every candidate), high =
        min_j(e_j + z_Bonferroni se_j) (some candidate beats A), p two-sided and consistent with
        the interval: p < 1 - level exactly when the interval excludes 0.
    """
    m = len(e_hat)
    alpha = 1 - level
    ref = sps.t(df)
    z = float(ref.ppf(1 - alpha / 2))
    z_b = float(ref.ppf(1 - alpha / (2 * m)))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = e_hat / se
    low = float(np.min(e_hat - z * se))
    high = float(np.min(e_hat + z_b * se))
    p_a = float(np.max(_tail_p(t, ref)))            # one-sided: A beats all candidates
    p_b = float(min(1.0, m * np.min(_tail_p(-t, ref))))  # one-sided: some candidate beats A
    return low, high, float(min(1.0, 2 * min(p_a, p_b)))


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


def meta_analysis(estimates: Sequence[float], ses: Sequence[float], *, level: float = LEVEL,
                  cov=None, se_method: str | None = None) -> MetaResult:
    """Pool per-task effects with inverse-variance fixed effect and DerSimonian-Laird random effects.

    Point estimates, Q, I^2 and tau^2 follow the textbook (DerSimonian-Laird) formulas. The pooled
    SEs are sqrt(w' S w) / sum w (fixed) and sqrt(w*' (S + tau^2 I) w*) / sum w* (random), S the
    covariance of the per-task effects: diag(ses^2) for independent tasks (the usual
    sqrt(1 / sum w)), or `cov` when the tasks share subjects (see `pooled_paired_bootstrap`).

    Args:
        estimates: (k,) per-study effects (e.g. paired AUROC deltas).
        ses: (k,) their standard errors (e.g. PairedResult.se).
        level: CI coverage.
        cov: optional (k, k) covariance matrix of the effects (its diagonal should be ses^2).
        se_method: words stored in MetaResult.se_method (default: from whether cov is given).

    Returns:
        MetaResult (see the module docstring for the formulas). Studies with a non-finite effect
        or an SE <= 0 (no sampling variance, e.g. identical models) are excluded and listed.

    Raises:
        ValueError: no usable study, or estimates, ses and cov differ in size.
    """
    y_all = np.asarray(estimates, dtype=float)
    s_all = np.asarray(ses, dtype=float)
    if y_all.shape != s_all.shape or y_all.ndim != 1:
        raise ValueError(f"estimates and ses must be 1-D of equal length, got {y_all.shape} and {s_all.shape}")
    if cov is not None and np.shape(cov) != (len(y_all), len(y_all)):
        raise ValueError(f"cov must be ({len(y_all)}, {len(y_all)}), got {np.shape(cov)}")
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
    cv = np.diag(v) if cov is None else np.asarray(cov, dtype=float)[np.ix_(keep, keep)]
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
    se_f = float(np.sqrt(max(w @ cv @ w, 0.0)) / sw)
    se_r = float(np.sqrt(max(w_r @ (cv + tau2 * np.eye(k)) @ w_r, 0.0)) / w_r.sum())
    if se_method is None:
        se_method = ("independent studies: SE from the per-study standard errors" if cov is None else
                     "SE from the given covariance of the study effects")
    corr = None
    if cov is not None:
        d = np.sqrt(np.diag(cv))
        corr = (cv / np.outer(d, d)).round(6).tolist()
    return MetaResult(k=k, fixed=_wald(theta_f, se_f, z_crit), random=_wald(theta_r, se_r, z_crit),
                      q=q, q_df=df, q_p_value=q_p, i2=float(i2), tau2=float(tau2),
                      weights_fixed=(w / sw).tolist(), weights_random=(w_r / w_r.sum()).tolist(),
                      level=level, excluded=excluded, se_method=se_method, correlation=corr)


def pooled_paired_bootstrap(tasks: Sequence[dict], *, n_boot: int = N_BOOT, seed=0,
                            level: float = LEVEL) -> MetaResult:
    """Meta-analysis of paired deltas of tasks scored on shared subjects, with ONE joint bootstrap.

    Every replicate draws subjects with replacement from the union of all tasks' subjects; each
    task's replicate delta metric(A) - metric(B) is computed on those same draws (a task sees the
    drawn subjects it has rows for). Per-task SE = SD of its replicate deltas x sqrt(m/(m-1)); the
    covariance of the task deltas is their joint-replicate correlation scaled by those SEs, and
    `meta_analysis` turns it into the pooled SEs (so tasks that move together are not counted as
    independent evidence). Point estimates are the usual fixed-effect and DerSimonian-Laird ones.

    Args:
        tasks: one dict per task: metric, y (labels), score_a, score_b, subject_ids (all on the
            task's rows), and optionally name.
        n_boot: replicates.
        seed: int seed or numpy Generator.
        level: CI coverage.

    Returns:
        MetaResult; tasks whose sample cannot support a CI (rarer class below MIN_CI_SUBJECTS,
        < 99% valid replicates) or whose metric is undefined are excluded, with the reason.

    Raises:
        ValueError: no task can be pooled.
    """
    ids = [np.asarray(t["subject_ids"]) for t in tasks]
    union = np.unique(np.concatenate(ids)) if ids else np.array([])
    n_u = len(union)
    kernels, deltas, ses_infl, reasons = [], [], [], {}
    for i, t in enumerate(tasks):
        rs = np.searchsorted(union, ids[i]).astype(np.intp)
        try:
            _check_pair(t["y"], t["score_a"], t["score_b"])
            ka = metric_kernel(t["metric"], t["y"], t["score_a"], rs)
            kb = metric_kernel(t["metric"], t["y"], t["score_b"], rs)
        except DegenerateInputError as e:
            reasons[i] = str(e)
            kernels.append(None)
            continue
        sup = metric_support(t["metric"], t["y"], rs, n_u)
        if sup.note():
            reasons[i] = sup.note()
        kernels.append((ka, kb))
        ones = np.ones((1, n_u), dtype=np.int64)
        deltas.append(float(np.asarray(ka(ones)).ravel()[0] - np.asarray(kb(ones)).ravel()[0]))
        ses_infl.append(sup.inflation)
    live = [i for i, k in enumerate(kernels) if k is not None]
    reps = np.full((n_boot, len(live)), np.nan)
    done = 0
    for counts in count_chunks(n_u, n_boot, seed):
        r = len(counts)
        for col, i in enumerate(live):
            ka, kb = kernels[i]
            reps[done:done + r, col] = (np.asarray(ka(counts), float).ravel()
                                        - np.asarray(kb(counts), float).ravel())
        done += r
    for col, i in enumerate(live):
        why = valid_share_note(int(np.isfinite(reps[:, col]).sum()), n_boot)
        if why and i not in reasons:
            reasons[i] = why
    use = [col for col, i in enumerate(live) if i not in reasons]
    if not use:
        raise ValueError("no task can be pooled: " + "; ".join(f"task {i}: {w}" for i, w in reasons.items()))
    sub = reps[:, use]
    sub = sub[np.isfinite(sub).all(axis=1)]
    se = sub.std(axis=0, ddof=1) * np.array([ses_infl[c] for c in use])
    corr = np.atleast_2d(np.corrcoef(sub, rowvar=False)) if len(use) > 1 else np.ones((1, 1))
    corr = np.nan_to_num(corr, nan=0.0)
    np.fill_diagonal(corr, 1.0)
    cov = corr * np.outer(se, se)
    s_seed = seed if isinstance(seed, (int, np.integer)) else "generator"
    method = (f"one joint subject bootstrap shared by all tasks ({n_boot} resamples of the union of "
              f"{n_u} held-out subjects, seed {s_seed}): per-task SE = SD of its replicate deltas x "
              "sqrt(m/(m-1)), covariance from the joint replicates; pooled SE = sqrt(w' S w) / sum w")
    m = meta_analysis([deltas[c] for c in use], se, level=level, cov=cov, se_method=method)
    # report exclusions by the caller's task index
    index = [live[c] for c in use]
    excluded = {index[j]: why for j, why in m.excluded.items()}
    excluded.update(reasons)
    return MetaResult(**{**m.__dict__, "excluded": dict(sorted(excluded.items()))})
