"""Subject-level bootstrap: coverage on known cases, subject (not row) resampling, determinism,
agreement of the fast kernel path with a generic sklearn loop, and refusals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_auc_score

from benchmark.metrics import (
    DegenerateInputError,
    bootstrap_auprc,
    bootstrap_auroc,
    bootstrap_generic,
    evaluate,
)
from benchmark.metrics.bootstrap import (
    count_chunks,
    percentile_ci,
    resample_rows,
    subject_index,
    _subject_rows,
)


def _binormal(seed: int, n_pos: int, n_neg: int, d: float = 1.0):
    """Positives ~ N(d, 1), negatives ~ N(0, 1): the true AUROC is Phi(d / sqrt(2))."""
    rng = np.random.default_rng(seed)
    s = np.r_[rng.normal(d, 1, n_pos), rng.normal(0, 1, n_neg)]
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    return y, s


TRUE_AUC = norm.cdf(1 / np.sqrt(2))


# --------------------------------------------------------------------------- coverage
def test_ci_covers_true_auroc_on_known_case():
    y, s = _binormal(0, 1000, 1000)
    ci = bootstrap_auroc(y, s, n_boot=1000, seed=0)
    assert ci.low < TRUE_AUC < ci.high
    # width close to the normal approximation sqrt(AUC(1-AUC) ...) scale: ~ +-0.02 at n=2000
    assert 0.02 < ci.high - ci.low < 0.06
    assert ci.n_valid == 1000


def test_auroc_ci_coverage_over_repeated_samples():
    """Across 60 independent samples the 95% interval should contain the truth most times."""
    hits = 0
    for seed in range(60):
        y, s = _binormal(100 + seed, 150, 150)
        ci = bootstrap_auroc(y, s, n_boot=300, seed=seed)
        hits += ci.low < TRUE_AUC < ci.high
    assert 50 <= hits <= 60  # nominal 57; a binomial(60, 0.95) falls below 51 with p < 0.01


def test_generic_bootstrap_of_a_mean_matches_normal_theory():
    rng = np.random.default_rng(1)
    x = rng.normal(5, 2, size=800)
    ci = bootstrap_generic(np.mean, [x], n_boot=2000, seed=0)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    # the percentile interval should be close to the normal-theory one, mean +- 1.96 SE
    assert ci.low == pytest.approx(x.mean() - half, abs=0.12 * half)
    assert ci.high == pytest.approx(x.mean() + half, abs=0.12 * half)
    assert ci.estimate == pytest.approx(x.mean())


# --------------------------------------------------------------------------- subjects, not rows
def test_resamples_bring_all_rows_of_a_subject():
    """Duplicate one subject's row 10 times: a subject-level replicate holds 0, 10, 20, ... of
    them (the subject is drawn as a unit, absent in about 1/e of replicates); a row-level
    replicate holds any number and almost never none."""
    rng = np.random.default_rng(4)
    n = 200
    x = rng.normal(size=n)
    sid = np.arange(n)
    x_dup = np.r_[x, np.full(9, x[0])]
    sid_dup = np.r_[sid, np.zeros(9, int)]
    copies_subject, copies_row = [], []

    def spy(store):
        def fn(v):
            store.append(int(np.sum(v == x[0])))
            return float(np.mean(v))
        return fn

    bootstrap_generic(spy(copies_subject), [x_dup], sid_dup, n_boot=400, seed=1)
    bootstrap_generic(spy(copies_row), [x_dup], None, n_boot=400, seed=1)
    copies_subject, copies_row = np.array(copies_subject[1:]), np.array(copies_row[1:])
    assert (copies_subject % 10 == 0).all()
    assert 0.28 < (copies_subject == 0).mean() < 0.46  # P(not drawn) = (1 - 1/200)^200 ~ 0.367
    assert (copies_row % 10 != 0).any()
    assert (copies_row == 0).mean() < 0.01


def test_duplicated_rows_change_row_bootstrap_but_not_subject_bootstrap():
    """Every subject's row duplicated 4x: the subject bootstrap is exactly unchanged (AUROC is
    invariant to scaling all weights), the row bootstrap wrongly halves the CI width."""
    y, s = _binormal(3, 150, 250)
    sid = np.arange(len(y))
    base = bootstrap_auroc(y, s, sid, n_boot=500, seed=7)
    y4, s4, sid4 = np.tile(y, 4), np.tile(s, 4), np.tile(sid, 4)
    subj = bootstrap_auroc(y4, s4, sid4, n_boot=500, seed=7)
    rows = bootstrap_auroc(y4, s4, None, n_boot=500, seed=7)
    assert subj.estimate == pytest.approx(base.estimate, abs=1e-15)
    assert subj.low == pytest.approx(base.low, abs=1e-12)
    assert subj.high == pytest.approx(base.high, abs=1e-12)
    ratio = (rows.high - rows.low) / (base.high - base.low)
    assert 0.35 < ratio < 0.7  # ~ 1/sqrt(4)
    assert "no subject ids" in bootstrap_generic(np.mean, [s], None, n_boot=5).method


def test_resample_rows_layout():
    sid = np.array([5, 3, 5, 9, 3, 5])
    codes, n_s = subject_index(sid)
    assert n_s == 3 and codes.tolist() == [1, 0, 1, 2, 0, 1]
    layout = _subject_rows(codes, n_s)
    rows = resample_rows(np.array([1, 1, 2]), layout)  # subject 5 twice, subject 9 once
    assert sorted(rows.tolist()) == [0, 0, 2, 2, 3, 5, 5]
    assert subject_index(np.array(["a", "b", "a"]))[1] == 2
    with pytest.raises(DegenerateInputError, match="length mismatch"):
        subject_index([1, 2, 3], n_rows=4)


# --------------------------------------------------------------------------- determinism & paths
def test_same_seed_same_ci_and_different_seed_different_ci():
    y, s = _binormal(5, 80, 120)
    a = bootstrap_auroc(y, s, n_boot=200, seed=3)
    b = bootstrap_auroc(y, s, n_boot=200, seed=3)
    c = bootstrap_auroc(y, s, n_boot=200, seed=4)
    assert (a.low, a.high) == (b.low, b.high)
    assert (a.low, a.high) != (c.low, c.high)
    g = bootstrap_auroc(y, s, n_boot=200, seed=np.random.default_rng(3))
    assert (g.low, g.high) == (a.low, a.high)


def test_chunking_does_not_change_the_draws():
    one = np.concatenate([c.copy() for c in count_chunks(50, 23, seed=9, chunk_size=1)])
    seven = np.concatenate([c.copy() for c in count_chunks(50, 23, seed=9, chunk_size=7)])
    np.testing.assert_array_equal(one, seven)
    assert (one.sum(axis=1) == 50).all()


@pytest.mark.parametrize("multi_row", [False, True])
def test_fast_path_equals_generic_sklearn_loop(multi_row):
    """Same seed -> same resamples: the vectorised kernels reproduce a loop over sklearn.

    bootstrap_auroc reports a logit-scale interval (issue 12), the generic path a percentile one,
    so the kernels are compared through bootstrap_kernel with the percentile shape."""
    from benchmark.metrics.binary import make_auprc_kernel, make_auroc_kernel
    from benchmark.metrics.bootstrap import bootstrap_kernel
    rng = np.random.default_rng(8)
    n = 600
    y = (rng.random(n) < 0.25).astype(int)
    s = np.round(rng.normal(size=n) + y, 1)  # ties
    sid = rng.integers(0, 250, n) if multi_row else None
    codes, n_s = subject_index(sid, n)
    for make, fn in ((make_auroc_kernel, roc_auc_score), (make_auprc_kernel, average_precision_score)):
        fast = bootstrap_kernel(make(y, s, codes), n_s, n_boot=120, seed=2)
        slow = bootstrap_generic(fn, [y, s], sid, n_boot=120, seed=2)
        assert fast.estimate == pytest.approx(slow.estimate, abs=1e-12)
        assert fast.low == pytest.approx(slow.low, abs=1e-12)
        assert fast.high == pytest.approx(slow.high, abs=1e-12)
    assert bootstrap_auroc(y, s, sid, n_boot=120, seed=2).estimate == pytest.approx(roc_auc_score(y, s))


def test_evaluate_uses_the_same_resamples_as_bootstrap_auroc():
    y, s = _binormal(6, 60, 90)
    p = 1 / (1 + np.exp(-s))
    sid = np.arange(len(y)) // 3
    res = evaluate("binary", y, p, sid, n_boot=150, seed=5)
    ci = bootstrap_auroc(y, p, sid, n_boot=150, seed=5)
    assert (res["auroc"].ci_low, res["auroc"].ci_high) == (ci.low, ci.high)
    again = evaluate("binary", y, p, sid, n_boot=150, seed=5)
    assert again == res


# --------------------------------------------------------------------------- refusals
def test_refusals_and_degenerate_resamples():
    with pytest.raises(DegenerateInputError, match="only one class"):
        bootstrap_auroc(np.zeros(10), np.arange(10.0), n_boot=10)
    # 2 positives out of 40: many resamples lose every positive and are skipped, with a count
    y = np.zeros(40, int)
    y[:2] = 1
    s = np.arange(40.0)[::-1]
    ci = bootstrap_auroc(y, s, n_boot=300, seed=0)
    assert ci.n_valid < 300 and f"{300 - ci.n_valid} degenerate resamples skipped" in ci.method
    # issue 12: two positive subjects cannot support an interval (it used to be reported)
    assert ci.low is None and ci.high is None
    assert ci.note == "CI not reported: 2 positive subjects (needs >= 10)"
    none = bootstrap_auroc(y, s, n_boot=0)
    assert none.low is None and none.high is None and "no bootstrap" in none.method
    low, high, n_valid = percentile_ci(np.array([np.nan, 0.5, np.nan]))
    assert np.isnan(low[0]) and n_valid[0] == 1
    res = evaluate("binary", y, s / 40, n_boot=0)
    assert res["auroc"].ci_low is None and res["auroc"].method.startswith("point estimate")
