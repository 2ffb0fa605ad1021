"""Issue 12, items 10 and 11: no interval or p-value a sample cannot support, and pooled /
best-of comparisons that stay honest when tasks share subjects or B is chosen on the test rows.

The simulations have known truth (binormal scores: AUROC = Phi(d / sqrt(2)); null comparisons where
A and B have exchangeable scores) and are vectorised over bootstrap replicates, so each runs in a
few seconds. Numbers quoted in comments were measured with these seeds.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from benchmark.metrics import bootstrap_auroc, evaluate
from benchmark.metrics.bootstrap import MIN_CI_SUBJECTS
from benchmark.stats.paired import paired_bootstrap, paired_bootstrap_best_of
from benchmark.stats.pooled import meta_analysis, pooled_paired_bootstrap


# --------------------------------------------------------------------------- reproductions
def test_two_subjects_give_no_interval_and_no_p():
    """Before: AUROC 1 with CI [1, 1] and a paired p = 0.002 from two subjects."""
    y, s, s2 = np.array([0, 1]), np.array([0.1, 0.9]), np.array([0.9, 0.1])
    res = evaluate("binary", y, s, np.array([1, 2]), n_boot=500, seed=0)
    assert res["auroc"].value == 1.0
    assert res["auroc"].ci_low is None and res["auroc"].ci_high is None
    assert res["auroc"].ci_note == "CI not reported: 1 positive subjects (needs >= 10)"
    assert res["auroc"].to_dict()["ci_note"] == res["auroc"].ci_note
    r = paired_bootstrap(y, s, s2, np.array([1, 2]), n_boot=500, seed=0)
    assert r.delta == 1.0
    assert np.isnan(r.p_value) and np.isnan(r.ci_low) and "1 positive subjects" in r.note
    assert r.to_dict()["p_value"] is None


def test_one_positive_in_300_rows_gives_no_interval_and_no_p():
    """Before: one positive in 300 rows gave a CI and p = 0.0016."""
    rng = np.random.default_rng(0)
    y = np.zeros(300, int)
    y[0] = 1
    s = rng.normal(size=300) + 3 * y
    res = evaluate("binary", y, 1 / (1 + np.exp(-s)), np.arange(300), n_boot=1000, seed=0)
    for name in ("auroc", "auprc", "brier", "ece"):
        assert res[name].value is not None and res[name].ci_low is None, name
        assert "1 positive subjects" in res[name].ci_note
    r = paired_bootstrap(y, s, rng.normal(size=300), np.arange(300), n_boot=1000, seed=0)
    assert np.isnan(r.p_value) and r.note.startswith("CI not reported")


def test_mostly_degenerate_bootstrap_gives_no_interval():
    """Enough positive rows but few subjects: the rule counts subjects, and a bootstrap where the
    metric is undefined in > 1% of the resamples is not summarised from its survivors."""
    y = np.r_[np.ones(30, int), np.zeros(300, int)]
    sid = np.r_[np.repeat([0, 1, 2], 10), np.arange(3, 303)]  # 30 positive rows, 3 subjects
    ci = bootstrap_auroc(y, np.r_[np.ones(30), np.zeros(300)] + np.arange(330) * 1e-4, sid, n_boot=300)
    assert ci.low is None and ci.note == "CI not reported: 3 positive subjects (needs >= 10)"
    from benchmark.metrics.bootstrap import interval
    vals = np.r_[np.full(950, 0.7), np.full(50, np.nan)]
    lo, hi, n_valid, note = interval(0.7, vals)
    assert lo is None and n_valid == 950 and "undefined in 50 of 1000 resamples" in note


def test_survival_and_multilabel_support():
    rng = np.random.default_rng(1)
    t = rng.exponential(1, 200)
    ev = np.zeros(200, bool)
    ev[:4] = True
    res = evaluate("survival", (t, ev), rng.normal(size=200), np.arange(200), n_boot=200,
                   train_time=t, train_event=ev, horizon=2.0)
    assert res["c_index_harrell"].ci_low is None
    assert res["c_index_harrell"].ci_note == "CI not reported: 4 subjects with an event (needs >= 10)"
    y = np.zeros((300, 2), int)
    y[:60, 0] = 1
    y[:5, 1] = 1
    ml = evaluate("multilabel", y, rng.normal(size=(300, 2)) + y, np.arange(300), n_boot=200)
    assert ml["auroc/0"].ci_low is not None and ml["auroc/1"].ci_low is None
    assert "label 1" in ml["auroc/1"].ci_note and ml["auroc_macro"].ci_low is None


# --------------------------------------------------------------------------- simulations
def _binormal(rng, n_pos: int, n: int, d: float):
    y = np.r_[np.ones(n_pos, int), np.zeros(n - n_pos, int)]
    return y, rng.normal(size=n) + d * y


@pytest.mark.parametrize("d", [1.0, 2.0])
def test_coverage_at_the_boundary(d):
    """Exactly MIN_CI_SUBJECTS positives among 300 subjects: the reported 95% CI covers the true
    AUROC in >= 90% of samples. Measured with these seeds (300 samples): d = 1 (AUROC 0.76) 0.96,
    d = 2 (AUROC 0.92) 0.93; the old percentile interval covered about 0.91 and 0.84 (400 samples)."""
    rng = np.random.default_rng(10 + int(d))
    truth = norm.cdf(d / np.sqrt(2))
    hits = []
    for i in range(300):
        y, s = _binormal(rng, MIN_CI_SUBJECTS, 300, d)
        ci = bootstrap_auroc(y, s, n_boot=300, seed=i)
        assert ci.low is not None
        hits.append(ci.low <= truth <= ci.high)
    assert np.mean(hits) >= 0.90


def test_coverage_at_small_prevalence_wherever_reported():
    """n = 300, 2% prevalence (median 6 positive subjects). Before: coverage 0.82 over all samples
    with a CI; now a CI is reported only with >= 10 positives (about 8% of samples), and those
    cover (0.95 over 120 reported samples here); the others say why not."""
    rng = np.random.default_rng(3)
    truth = norm.cdf(1 / np.sqrt(2))
    hits, notes = [], 0
    while len(hits) < 120:
        y = (rng.random(300) < 0.02).astype(int)
        if y.sum() == 0:
            continue
        s = rng.normal(size=300) + y
        ci = bootstrap_auroc(y, s, n_boot=300, seed=len(hits))
        if ci.low is None:
            notes += 1
            assert ci.note.startswith("CI not reported")
            continue
        hits.append(ci.low <= truth <= ci.high)
    assert notes > 5 * len(hits)
    assert np.mean(hits) >= 0.90


def test_paired_type_one_error_at_the_boundary():
    """Two models with identical score distributions (null true), 10 positive subjects in 300.
    Before (percentile interval, bootstrap p): type-I error about 0.08 here and 0.14 in the
    issue's 2% prevalence simulation; now 0.0375 (400 samples)."""
    rng = np.random.default_rng(7)
    rejections = []
    for i in range(400):
        y, sa = _binormal(rng, MIN_CI_SUBJECTS, 300, 1.0)
        sb = rng.normal(size=300) + y
        r = paired_bootstrap(y, sa, sb, np.arange(300), n_boot=300, seed=i)
        rejections.append(r.p_value < 0.05)
        assert (r.p_value < 0.05) == (r.ci_low > 0 or r.ci_high < 0)
    assert np.mean(rejections) <= 0.06


# --------------------------------------------------------------------------- shared test set
def _shared_tasks(rng, n: int = 300, k: int = 7):
    """k binary tasks on one test set; A and B exchangeable (null true). Each model's error is
    mostly a subject-level quirk shared by every task, so the task deltas are correlated."""
    z = rng.normal(size=n)
    qa, qb = rng.normal(size=n), rng.normal(size=n)
    tasks = []
    for t in range(k):
        y = (z + 0.7 * rng.normal(size=n) > np.quantile(z, 0.7)).astype(int)
        sa = z + qa + 0.3 * rng.normal(size=n)
        sb = z + qb + 0.3 * rng.normal(size=n)
        tasks.append({"metric": "auroc", "y": y, "score_a": sa, "score_b": sb, "subject_ids": np.arange(n)})
    return tasks


def test_pooled_test_with_shared_subjects_keeps_its_level():
    """7 correlated tasks on one shared test set, null true. Treating tasks as independent
    (per-task SEs into the textbook meta-analysis) rejects far more than 5%; the joint subject
    bootstrap keeps the fixed-effect and DerSimonian-Laird tests at <= 0.06. Measured (150 samples):
    independent 0.21, joint fixed effect 0.047, joint DL 0.040."""
    rng = np.random.default_rng(11)
    old, new_f, new_r = [], [], []
    for i in range(150):
        tasks = _shared_tasks(rng)
        m = pooled_paired_bootstrap(tasks, n_boot=200, seed=i)
        d = [paired_bootstrap(t["y"], t["score_a"], t["score_b"], t["subject_ids"], n_boot=200, seed=i)
             for t in tasks]
        indep = meta_analysis([r.delta for r in d], [r.se for r in d])
        old.append(indep.fixed["p_value"] < 0.05)
        new_f.append(m.fixed["p_value"] < 0.05)
        new_r.append(m.random["p_value"] < 0.05)
        assert m.k == 7 and m.correlation is not None
    assert np.mean(old) > 0.12
    assert np.mean(new_f) <= 0.06 and np.mean(new_r) <= 0.06


def test_pooled_se_reduces_to_textbook_for_independent_tasks():
    y, s = [0.1, 0.3, -0.2], [0.1, 0.2, 0.15]
    a = meta_analysis(y, s)
    b = meta_analysis(y, s, cov=np.diag(np.square(s)))
    assert b.fixed == pytest.approx(a.fixed) and b.random == pytest.approx(a.random)
    # perfectly correlated tasks carry the evidence of one: SE_F = weighted mean of the SEs
    c = meta_analysis(y, s, cov=np.outer(s, s))
    w = 1 / np.square(s)
    assert c.fixed["se"] == pytest.approx((w * s).sum() / w.sum())


def test_best_of_b_is_corrected_for_selection():
    """B = the best of 5 candidates chosen on the held-out rows it is tested on. All six models
    exchangeable (null true). Testing the chosen B without correction: "favours B" 7.8% in the
    issue (3 candidates), 7.0% here; corrected: 1.3% (<= 2.5% + noise)."""
    rng = np.random.default_rng(5)
    naive, corrected = [], []
    n = 300
    for i in range(300):
        y = (rng.random(n) < 0.3).astype(int)
        sa = rng.normal(size=n) + y
        cands = {f"b{j}": rng.normal(size=n) + y for j in range(5)}
        name, r = paired_bootstrap_best_of(y, sa, cands, np.arange(n), n_boot=200, seed=i)
        plain = paired_bootstrap(y, sa, cands[name], np.arange(n), n_boot=200, seed=i)
        naive.append(plain.ci_high < 0)
        corrected.append(r.ci_high < 0)
        assert r.delta == plain.delta and r.ci_low <= r.delta <= r.ci_high
    assert np.mean(naive) > 0.05
    assert np.mean(corrected) <= 0.035
