"""The meta-analysis selection rule and the paired thresholded metrics (Integrating Genomics into
Multimodal EHR Foundation Models, Amar et al. 2025): truth table, scikit-learn oracle, coverage."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from benchmark.stats.pooled import emphasis_rule, meta_analysis
from benchmark.stats.thresholded import THRESHOLDED_METRICS, paired_thresholded, thresholded_metrics


# --------------------------------------------------------------------------- selection rule
@pytest.mark.parametrize("k, i2, q_p, expected", [
    # k <= 5: random effects whatever the heterogeneity (the paper's few-tasks clause wins)
    (2, 0.0, 0.9, "random"), (4, 0.0, 0.8, "random"), (5, 0.10, 0.50, "random"), (5, 0.9, 0.001, "random"),
    (1, 0.0, float("nan"), "random"),
    # k > 5: fixed when I^2 <= 25% OR p(Q) >= 0.10 ...
    (6, 0.0, 0.9, "fixed"), (6, 0.25, 0.01, "fixed"),      # I^2 at the bound, Q significant
    (6, 0.60, 0.10, "fixed"),                               # p(Q) at the bound, I^2 high
    (10, 0.20, 0.50, "fixed"),
    # ... random when both signal heterogeneity
    (6, 0.26, 0.09, "random"), (8, 0.607, 0.054, "random"),
])
def test_selection_rule_truth_table(k, i2, q_p, expected):
    choice, why = emphasis_rule(k, i2, q_p)
    assert choice == expected
    assert f"k = {k}" in why and why.startswith("fixed effect" if expected == "fixed" else "random effects")


def test_meta_analysis_reports_the_emphasised_estimate():
    # the paper's own case: 4 tasks, Q p = 0.054, I^2 = 61% -> random effects (k <= 5)
    m = meta_analysis([0.025, 0.007, 0.012, 0.020], [0.004, 0.003, 0.005, 0.006])
    assert m.k == 4 and m.emphasis == "random" and "k = 4 <= 5" in m.emphasis_reason
    # 8 homogeneous tasks -> fixed effect; the reason quotes I^2 and p(Q)
    m = meta_analysis([0.01] * 8, [0.01] * 8)
    assert m.i2 == 0 and m.emphasis == "fixed" and "I\u00b2 = 0%" in m.emphasis_reason
    assert m.to_dict()["emphasis"] == "fixed"
    # 8 clearly heterogeneous tasks -> random
    m = meta_analysis([0.0, 0.1, 0.0, 0.1, 0.0, 0.1, 0.0, 0.1], [0.01] * 8)
    assert m.i2 > 0.25 and m.q_p_value < 0.10 and m.emphasis == "random"


# --------------------------------------------------------------------------- thresholded metrics
def _fixed_data(seed=3, n=400):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.clip(0.35 * y + rng.uniform(0, 0.75, n), 0, 1)
    s[:5] = 0.5  # exactly at the threshold counts as positive
    return y, s


def test_thresholded_metrics_match_sklearn():
    y, s = _fixed_data()
    pred = (s >= 0.5).astype(int)
    got = thresholded_metrics(y, s, 0.5)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert got["precision"] == pytest.approx(precision_score(y, pred), abs=1e-12)
    assert got["recall"] == pytest.approx(recall_score(y, pred), abs=1e-12)
    assert got["f1"] == pytest.approx(f1_score(y, pred), abs=1e-12)
    assert got["specificity"] == pytest.approx(recall_score(1 - y, 1 - pred), abs=1e-12)
    # no predicted positive: precision undefined (NaN), recall 0, F1 0
    none = thresholded_metrics(y, np.zeros(len(y)), 0.5)
    assert np.isnan(none["precision"]) and none["recall"] == 0 and none["f1"] == 0 and none["specificity"] == 1


def test_paired_thresholded_full_data_values_and_weighting():
    y, sa = _fixed_data(1)
    _, sb = _fixed_data(2)
    res = paired_thresholded(y, sa, sb, n_boot=200, seed=0)
    assert set(res) == set(THRESHOLDED_METRICS)
    ta, tb = thresholded_metrics(y, sa), thresholded_metrics(y, sb)
    for m in THRESHOLDED_METRICS:
        assert res[m].value_a == pytest.approx(ta[m]) and res[m].delta == pytest.approx(ta[m] - tb[m])
        assert res[m].ci_low < res[m].delta < res[m].ci_high
    # identical models: zero delta, p = 1
    same = paired_thresholded(y, sa, sa, n_boot=200, seed=0)
    assert all(same[m].delta == 0 and same[m].p_value == 1.0 for m in THRESHOLDED_METRICS)


def test_paired_thresholded_resamples_subjects_like_a_loop():
    """The weighted-count kernel equals recomputing the metric on explicitly resampled subjects."""
    from benchmark.metrics.bootstrap import count_chunks
    rng = np.random.default_rng(5)
    sid = np.repeat(np.arange(60), 3)
    y = rng.integers(0, 2, len(sid))
    sa, sb = rng.uniform(size=len(sid)), rng.uniform(size=len(sid))
    res = paired_thresholded(y, sa, sb, sid, n_boot=50, seed=7)
    counts = np.concatenate([c.copy() for c in count_chunks(60, 50, 7)])
    loop = []
    for c in counts:
        rows = np.concatenate([np.flatnonzero(sid == s).repeat(0) if k == 0 else np.tile(np.flatnonzero(sid == s), k)
                               for s, k in enumerate(c)])
        loop.append(thresholded_metrics(y[rows], sa[rows])["f1"] - thresholded_metrics(y[rows], sb[rows])["f1"])
    assert res["f1"].mean_delta == pytest.approx(np.mean(loop), abs=1e-12)


def test_paired_ci_covers_the_known_difference():
    """Simulation: model B's predictions are A's with a known share of rows flipped to the truth.
    The population accuracy difference is known in closed form; the 95% paired CI must cover it in
    close to 95% of the simulated cohorts (and exclude it rarely)."""
    n, reps, covered = 300, 120, 0
    rng = np.random.default_rng(11)
    # population: P(A correct) = 0.70; B = A corrected on 30% of A's errors -> accuracy 0.79
    true_delta = 0.70 - (0.70 + 0.30 * 0.30)
    for r in range(reps):
        y = rng.integers(0, 2, n)
        a_correct = rng.uniform(size=n) < 0.70
        fix = rng.uniform(size=n) < 0.30
        pa = np.where(a_correct, y, 1 - y)
        pb = np.where(a_correct | fix, y, 1 - y)
        res = paired_thresholded(y, pa.astype(float), pb.astype(float), n_boot=300, seed=r)["accuracy"]
        covered += res.ci_low <= true_delta <= res.ci_high
    assert covered / reps >= 0.88


def test_undefined_metric_is_refused_with_a_reason():
    y, sa = _fixed_data()
    res = paired_thresholded(y, sa, np.zeros(len(y)), n_boot=100)
    assert np.isnan(res["precision"].value_b) and np.isnan(res["precision"].ci_low)
    assert "no row is predicted positive" in res["precision"].note
    assert np.isfinite(res["recall"].ci_low)  # the others still get their interval
