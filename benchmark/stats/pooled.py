"""Pooled comparison across tasks: meta-analysis of per-task paired deltas.

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

Which estimate to emphasise (`emphasis`), the selection rule of Integrating Genomics into
Multimodal EHR Foundation Models (Amar et al., 2025), "Meta-analysis across prediction tasks":
    k <= 5 tasks                        -> random effects (Q has little power with few tasks);
    else I^2 <= 25% or p(Q) >= 0.10     -> fixed effect (low heterogeneity);
    else                                -> random effects (moderate to high heterogeneity).
The paper words the low-heterogeneity test with "or" (either condition suffices) and lets the
k <= 5 clause take precedence; both estimates are always computed and reported, the rule only
names the one to read first (`MetaResult.emphasis`, with the reason in `emphasis_reason`).

numpy/scipy only (no torch, no scikit-learn).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import stats as sps

from benchmark.metrics.binary import DegenerateInputError
from benchmark.metrics.bootstrap import count_chunks, valid_share_note
from benchmark.stats.paired import LEVEL, N_BOOT, check_pair, metric_kernel, metric_support


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
        emphasis: "fixed" or "random": the estimate the selection rule emphasises (`emphasis_rule`).
        emphasis_reason: why, in words (k, I^2, p(Q)).
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
    emphasis: str = ""
    emphasis_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of all fields.

        Returns:
            dict field -> value.
        """
        d = asdict(self)
        d["excluded"] = {str(k): v for k, v in self.excluded.items()}
        return d


FEW_TASKS = 5           # k <= FEW_TASKS: random effects (Q has little power)
LOW_I2 = 0.25           # I^2 <= 25%: low heterogeneity
Q_ALPHA = 0.10          # p(Q) >= 0.10: no evidence of heterogeneity


def emphasis_rule(k: int, i2: float, q_p_value: float) -> tuple[str, str]:
    """The pooled estimate to emphasise (Amar et al. 2025's selection rule, see the module docstring).

    Args:
        k: number of tasks pooled.
        i2: I^2 in [0, 1].
        q_p_value: p-value of Cochran's Q (NaN when k = 1).

    Returns:
        ("fixed" | "random", the reason in words).
    """
    i2_txt = f"I\u00b2 = {100 * i2:.0f}%"
    q_txt = f"p(Q) = {q_p_value:.3f}" if np.isfinite(q_p_value) else "p(Q) undefined"
    if k <= FEW_TASKS:
        return "random", (f"random effects: only k = {k} <= {FEW_TASKS} tasks, too few for Cochran's Q "
                          f"to detect heterogeneity ({i2_txt}, {q_txt})")
    low = [t for t, ok in ((f"{i2_txt} <= {100 * LOW_I2:.0f}%", i2 <= LOW_I2),
                           (f"{q_txt} >= {Q_ALPHA:.2f}", np.isfinite(q_p_value) and q_p_value >= Q_ALPHA)) if ok]
    if low:
        return "fixed", f"fixed effect: low heterogeneity over k = {k} tasks ({' and '.join(low)})"
    return "random", (f"random effects: moderate to high heterogeneity over k = {k} tasks ({i2_txt} > "
                      f"{100 * LOW_I2:.0f}% and {q_txt} < {Q_ALPHA:.2f})")


def _wald(est: float, se: float, z_crit: float) -> dict[str, float]:
    """Estimate, SE, normal CI, z and two-sided p of one pooled effect."""
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
    emphasis, why = emphasis_rule(k, float(i2), q_p)
    return MetaResult(k=k, fixed=_wald(theta_f, se_f, z_crit), random=_wald(theta_r, se_r, z_crit),
                      q=q, q_df=df, q_p_value=q_p, i2=float(i2), tau2=float(tau2),
                      weights_fixed=(w / sw).tolist(), weights_random=(w_r / w_r.sum()).tolist(),
                      level=level, excluded=excluded, se_method=se_method, correlation=corr,
                      emphasis=emphasis, emphasis_reason=why)


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
            check_pair(t["y"], t["score_a"], t["score_b"])
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
