"""benchmark.stats: paired bootstrap (known answers, agreement with a brute-force resampling loop),
precision-difference curves, and meta-analysis against hand-worked examples."""

from __future__ import annotations

import math
from fractions import Fraction as F

import numpy as np
import pytest

from scipy.stats import t as t_dist

from benchmark.metrics.binary import DegenerateInputError, auprc, auroc
from benchmark.metrics.bootstrap import bootstrap_generic
from benchmark.metrics.survival import c_index_harrell
from benchmark.stats.paired import bootstrap_p, paired_bootstrap
from benchmark.stats.pooled import meta_analysis
from benchmark.stats.pr_curves import precision_difference_curve

Z975 = 1.959963984540054


def _binary(n=300, seed=0, dup=40):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = y + rng.normal(0, 1.2, n)
    sid = np.arange(n)
    if dup:
        sid[-dup:] = sid[:dup]  # some subjects with two rows
    return y, s, sid


# --------------------------------------------------------------------------- paired bootstrap
@pytest.mark.parametrize("metric", ["auroc", "auprc"])
def test_identical_models_give_zero_delta_and_p_one(metric):
    y, s, sid = _binary()
    r = paired_bootstrap(y, s, s.copy(), sid, metric=metric, n_boot=500, seed=1)
    assert r.delta == 0 and r.mean_delta == 0 and r.ci_low == 0 and r.ci_high == 0
    assert r.p_value == 1.0 and r.se == 0
    assert r.n_valid == 500 and r.n_subjects == 260 and r.n_rows == 300


def test_monotone_transform_is_the_same_model():
    # AUROC and AUPRC only see the ranking: exp(s) ranks rows like s, in every resample
    y, s, sid = _binary(seed=2)
    for metric in ("auroc", "auprc"):
        r = paired_bootstrap(y, s, np.exp(s), sid, metric=metric, n_boot=300)
        assert abs(r.delta) < 1e-12 and r.p_value == 1.0


def test_inverted_copy_has_known_delta():
    y, s, sid = _binary(seed=3)
    a = auroc(y, s)
    r = paired_bootstrap(y, s, -s, sid, metric="auroc", n_boot=1000, seed=0)
    # AUROC(-s) = 1 - AUROC(s) (no ties), so delta = 2 AUROC - 1 in the data and in every resample
    assert r.value_b == pytest.approx(1 - a, abs=1e-12)
    assert r.delta == pytest.approx(2 * a - 1, abs=1e-12)
    assert 0 < r.ci_low < r.delta < r.ci_high
    # every replicate favours A: the Wald p (issue 12: it replaced the percentile bootstrap p,
    # whose resolution 2 / (B + 1) was reached here) is far below it
    assert r.p_value < 2 / 1001
    rev = paired_bootstrap(y, -s, s, sid, metric="auroc", n_boot=1000, seed=0)
    assert rev.delta == pytest.approx(-r.delta) and rev.ci_low == pytest.approx(-r.ci_high)


def test_cindex_inverted_risk():
    rng = np.random.default_rng(4)
    n = 200
    risk = rng.normal(size=n)
    t = rng.exponential(1, n) * np.exp(-risk)
    ev = rng.uniform(size=n) < 0.7
    c = c_index_harrell(t, ev, risk)
    r = paired_bootstrap((t, ev), risk, -risk, metric="c_index", n_boot=400)
    assert r.value_a == pytest.approx(c) and r.value_b == pytest.approx(1 - c)
    assert r.delta == pytest.approx(2 * c - 1) and r.p_value < 0.01


def test_matches_a_brute_force_resampling_loop():
    # the same seed gives the same subject draws as the generic path, which materialises each
    # resample and calls the plain metric functions: SE and Wald CI must agree to rounding
    from benchmark.metrics.bootstrap import _draws, _subject_rows, binary_support, resample_rows, subject_index
    y, s, sid = _binary(n=120, seed=5, dup=20)
    rng = np.random.default_rng(9)
    s2 = s + rng.normal(0, 1.0, len(s))
    codes, n_s = subject_index(sid)
    layout = _subject_rows(codes, n_s)
    infl = binary_support(y, codes).inflation
    for metric, fn in (("auroc", auroc), ("auprc", auprc)):
        r = paired_bootstrap(y, s, s2, sid, metric=metric, n_boot=200, seed=11)
        d = []
        for idx in _draws(n_s, 200, 11):
            rows = resample_rows(idx, layout)
            d.append(fn(y[rows], s[rows]) - fn(y[rows], s2[rows]))
        se = np.std(d, ddof=1) * infl
        assert r.delta == pytest.approx(fn(y, s) - fn(y, s2), abs=1e-12)
        assert r.se == pytest.approx(se, abs=1e-12)
        tq = t_dist(binary_support(y, codes).n - 1).ppf(0.975)
        assert r.ci_low == pytest.approx(r.delta - tq * se, abs=1e-9)
        assert r.ci_high == pytest.approx(r.delta + tq * se, abs=1e-9)
        assert r.p_value == pytest.approx(2 * t_dist(binary_support(y, codes).n - 1).sf(abs(r.delta) / se), rel=1e-6)


def test_subjects_not_rows_are_resampled():
    # duplicating every row (same subject) must not shrink the interval: the subject is the unit
    y, s, _ = _binary(n=200, seed=6, dup=0)
    s2 = s + np.random.default_rng(1).normal(0, 1, 200)
    one = paired_bootstrap(y, s, s2, np.arange(200), n_boot=400, seed=2)
    two = paired_bootstrap(np.r_[y, y], np.r_[s, s], np.r_[s2, s2], np.r_[np.arange(200), np.arange(200)],
                           n_boot=400, seed=2)
    assert two.n_subjects == 200 and two.delta == pytest.approx(one.delta)
    assert (two.ci_high - two.ci_low) == pytest.approx(one.ci_high - one.ci_low, rel=1e-9)
    rows = paired_bootstrap(np.r_[y, y], np.r_[s, s], np.r_[s2, s2], None, n_boot=400, seed=2)
    assert (rows.ci_high - rows.ci_low) < 0.85 * (one.ci_high - one.ci_low)


def test_bad_input():
    y, s, sid = _binary()
    with pytest.raises(DegenerateInputError, match="length mismatch"):
        paired_bootstrap(y, s, s[:-1], sid)
    with pytest.raises(DegenerateInputError):
        paired_bootstrap(np.zeros(10), np.arange(10.0), np.arange(10.0))
    with pytest.raises(ValueError, match="unknown metric"):
        paired_bootstrap(y, s, s, sid, metric="accuracy")


def test_bootstrap_p():
    assert bootstrap_p(np.array([1.0, 2.0, 3.0, -1.0])) == pytest.approx(2 * 2 / 5)
    assert bootstrap_p(np.zeros(10)) == 1.0
    assert bootstrap_p(np.ones(99)) == pytest.approx(2 / 100)
    assert math.isnan(bootstrap_p(np.array([np.nan])))


# --------------------------------------------------------------------------- PR difference
def test_precision_difference_curve():
    from sklearn.metrics import precision_recall_curve
    y, s, sid = _binary(n=400, seed=7)
    s2 = s + np.random.default_rng(3).normal(0, 1.5, 400)
    grid = [0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
    pd = precision_difference_curve(y, s, s2, sid, recall_grid=grid, n_boot=200)
    for score, got in ((s, pd.precision_a), (s2, pd.precision_b)):
        prec, rec, _ = precision_recall_curve(y, score)
        want = [prec[rec >= g].max() for g in grid]
        np.testing.assert_allclose(got, want, atol=1e-12)
    assert np.all(pd.ci_low <= pd.delta + 1e-12) and np.all(pd.delta <= pd.ci_high + 1e-12)
    assert pd.delta[-1] == pytest.approx(0.0, abs=1e-12) or pd.precision_a[-1] != pd.precision_b[-1]
    same = precision_difference_curve(y, s, s, sid, recall_grid=grid, n_boot=50)
    assert np.all(same.delta == 0) and np.all(same.ci_low == 0) and np.all(same.ci_high == 0)
    d = same.to_dict()
    assert d["recall"] == grid and len(d["delta"]) == len(grid)


# --------------------------------------------------------------------------- meta-analysis
def _p_two_sided(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def test_meta_analysis_hand_worked_heterogeneous():
    # three studies: y = (0, 2, 6), variances v = (1, 1, 4), so SE = (1, 1, 2)
    y, v = [F(0), F(2), F(6)], [F(1), F(1), F(4)]
    w = [1 / vi for vi in v]                                     # 1, 1, 1/4
    sw = sum(w)                                                  # 9/4
    theta_f = sum(wi * yi for wi, yi in zip(w, y)) / sw          # (0 + 2 + 3/2) / (9/4) = 14/9
    assert theta_f == F(14, 9)
    q = sum(wi * (yi - theta_f) ** 2 for wi, yi in zip(w, y))    # 196/81 + 16/81 + 400/81 = 68/9
    assert q == F(68, 9)
    c = sw - sum(wi ** 2 for wi in w) / sw                       # 9/4 - (33/16)/(9/4) = 4/3
    assert c == F(4, 3)
    tau2 = (q - 2) / c                                           # (50/9) * (3/4) = 25/6
    assert tau2 == F(25, 6)
    w_r = [1 / (vi + tau2) for vi in v]                          # 6/31, 6/31, 6/49
    theta_r = sum(wi * yi for wi, yi in zip(w_r, y)) / sum(w_r)
    se_r = math.sqrt(1 / float(sum(w_r)))
    i2 = (q - 2) / q                                             # (50/9) / (68/9) = 25/34
    assert i2 == F(25, 34)

    m = meta_analysis([0.0, 2.0, 6.0], [1.0, 1.0, 2.0])
    assert m.k == 3 and m.q_df == 2
    assert m.fixed["estimate"] == pytest.approx(float(theta_f))
    assert m.fixed["se"] == pytest.approx(math.sqrt(4 / 9))      # sqrt(1 / (9/4)) = 2/3
    assert m.fixed["ci_low"] == pytest.approx(14 / 9 - Z975 * 2 / 3)
    assert m.fixed["z"] == pytest.approx((14 / 9) / (2 / 3))
    assert m.fixed["p_value"] == pytest.approx(_p_two_sided((14 / 9) / (2 / 3)))
    assert m.q == pytest.approx(68 / 9)
    assert m.q_p_value == pytest.approx(math.exp(-(68 / 9) / 2))  # chi2 with 2 df: sf(q) = exp(-q/2)
    assert m.tau2 == pytest.approx(25 / 6)
    assert m.i2 == pytest.approx(25 / 34)
    assert m.random["estimate"] == pytest.approx(float(theta_r))
    assert m.random["se"] == pytest.approx(se_r)
    assert m.random["ci_high"] == pytest.approx(float(theta_r) + Z975 * se_r)
    assert m.weights_fixed == pytest.approx([4 / 9, 4 / 9, 1 / 9])
    assert m.weights_random == pytest.approx([float(x / sum(w_r)) for x in w_r])


def test_meta_analysis_equal_variances_and_truncated_tau2():
    # y = (1, 2, 4), v = 1 each: theta = 7/3, Q = 42/9 = 14/3, C = 2, tau2 = (14/3 - 2)/2 = 4/3,
    # I^2 = (8/3)/(14/3) = 4/7; equal weights keep theta_R = 7/3 with SE_R = sqrt((1 + 4/3)/3)
    m = meta_analysis([1.0, 2.0, 4.0], [1.0, 1.0, 1.0])
    assert m.fixed["estimate"] == pytest.approx(7 / 3) and m.random["estimate"] == pytest.approx(7 / 3)
    assert m.q == pytest.approx(14 / 3) and m.tau2 == pytest.approx(4 / 3) and m.i2 == pytest.approx(4 / 7)
    assert m.random["se"] == pytest.approx(math.sqrt(7 / 9))
    # y = (1, 2, 4), v = (1, 4, 4): theta_F = 5/3, Q = 11/6 < df = 2, so tau2 = 0, I^2 = 0 and the
    # random-effects result equals the fixed-effect one
    m = meta_analysis([1.0, 2.0, 4.0], [1.0, 2.0, 2.0])
    assert m.fixed["estimate"] == pytest.approx(5 / 3) and m.q == pytest.approx(11 / 6)
    assert m.tau2 == 0 and m.i2 == 0
    assert m.random == pytest.approx(m.fixed)


def test_meta_analysis_edge_cases():
    m = meta_analysis([0.05, 0.0, 0.02], [0.01, 0.0, float("nan")])
    assert m.k == 1 and set(m.excluded) == {1, 2}
    assert m.fixed["estimate"] == pytest.approx(0.05) and m.random["estimate"] == pytest.approx(0.05)
    assert m.q == 0 and m.i2 == 0 and math.isnan(m.q_p_value)
    with pytest.raises(ValueError, match="no study"):
        meta_analysis([0.0], [0.0])
    with pytest.raises(ValueError, match="equal length"):
        meta_analysis([0.0, 1.0], [1.0])
    d = m.to_dict()
    assert d["excluded"] == {"1": "standard error is not positive (no sampling variance)",
                             "2": "standard error is not positive (no sampling variance)"}


def test_pooled_paired_deltas_end_to_end():
    # three tasks where B is A's inverted copy: every delta is positive and so is the pooled one
    deltas, ses = [], []
    for k in range(3):
        y, s, sid = _binary(n=250, seed=20 + k)
        r = paired_bootstrap(y, s, -s, sid, n_boot=300, seed=k)
        deltas.append(r.delta)
        ses.append(r.se)
    m = meta_analysis(deltas, ses)
    assert min(deltas) <= m.fixed["estimate"] <= max(deltas)
    assert m.fixed["ci_low"] > 0 and m.random["p_value"] < 1e-6
