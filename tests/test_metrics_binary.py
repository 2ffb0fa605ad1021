"""Binary, multilabel and regression metrics against scikit-learn, plus `evaluate` refusals.

scikit-learn is the oracle here (a test-only import: benchmark.metrics must not import it).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from benchmark.metrics import (
    DegenerateInputError,
    MetricResult,
    auprc,
    auprc_macro,
    auroc,
    auroc_macro,
    brier,
    choose_threshold,
    ece,
    evaluate,
    mae,
    per_label,
    r2,
    rmse,
    threshold_metrics,
)
from benchmark.metrics.binary import ece_bins, make_auroc_kernel, make_auprc_kernel

TOL = 1e-12


def _data(seed: int, n: int = 400, tied: bool = False, prevalence: float = 0.3):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    y[:2] = [0, 1]
    s = rng.normal(size=n) + 1.2 * y
    if tied:  # few distinct values: many ties within and across classes
        s = np.round(s, 0)
    p = 1 / (1 + np.exp(-s))
    return y, s, p


# --------------------------------------------------------------------------- AUROC / AUPRC
@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_auroc_auprc_match_sklearn(seed, tied):
    y, s, _ = _data(seed, tied=tied)
    assert auroc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=TOL)
    assert auprc(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=TOL)


@pytest.mark.parametrize("seed", range(3))
def test_weighted_auroc_auprc_match_sklearn(seed):
    y, s, _ = _data(seed, n=300, tied=True)
    w = np.random.default_rng(seed).integers(0, 4, size=len(y)).astype(float)
    w[:2] = 1
    assert auroc(y, s, w) == pytest.approx(skm.roc_auc_score(y, s, sample_weight=w), abs=TOL)
    assert auprc(y, s, w) == pytest.approx(
        skm.average_precision_score(y, s, sample_weight=w), abs=TOL)
    wf = np.random.default_rng(seed + 10).random(len(y))
    assert auroc(y, s, wf) == pytest.approx(skm.roc_auc_score(y, s, sample_weight=wf), abs=TOL)
    assert auprc(y, s, wf) == pytest.approx(
        skm.average_precision_score(y, s, sample_weight=wf), abs=TOL)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5)), min_size=2, max_size=40))
def test_auroc_auprc_property_small_tied(rows):
    y = np.array([r[0] for r in rows], dtype=int)
    s = np.array([r[1] for r in rows], dtype=float)
    if y.min() == y.max():
        with pytest.raises(DegenerateInputError):
            auroc(y, s)
        return
    assert auroc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=TOL)
    assert auprc(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=TOL)


def test_kernel_with_counts_equals_metric_on_resampled_rows():
    """A count vector is a resample: the weighted kernel equals sklearn on the repeated rows."""
    y, s, _ = _data(7, n=250, tied=True)
    rng = np.random.default_rng(0)
    counts = np.stack([np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y))
                       for _ in range(5)])
    got_roc = make_auroc_kernel(y, s)(counts)
    got_pr = make_auprc_kernel(y, s)(counts)
    for r in range(5):
        rows = np.repeat(np.arange(len(y)), counts[r])
        assert got_roc[r] == pytest.approx(skm.roc_auc_score(y[rows], s[rows]), abs=TOL)
        assert got_pr[r] == pytest.approx(skm.average_precision_score(y[rows], s[rows]), abs=TOL)


def test_known_values():
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auroc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert auroc([0, 1], [0.9, 0.1]) == 0.0
    # AP: ranks 1 (pos), 2 (neg), 3 (pos): (1/2)*1 + (1/2)*(2/3)
    assert auprc([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(0.5 + 1 / 3)


# --------------------------------------------------------------------------- calibration
@pytest.mark.parametrize("seed", range(3))
def test_brier_matches_sklearn(seed):
    y, _, p = _data(seed)
    assert brier(y, p) == pytest.approx(skm.brier_score_loss(y, p), abs=TOL)


def _ece_loop(y, p, n_bins=10):
    """Direct definition: per bin, |mean(y) - mean(p)| weighted by the bin's share of rows."""
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        m = (p >= lo) & ((p < hi) if b < n_bins - 1 else (p <= hi))
        if m.any():
            total += m.mean() * abs(y[m].mean() - p[m].mean())
    return total


@pytest.mark.parametrize("seed", range(3))
def test_ece_matches_direct_definition(seed):
    y, _, p = _data(seed, n=1000)
    p = np.round(p, 3)  # no value near a bin edge is ambiguous at 3 decimals except the edges
    assert ece(y, p) == pytest.approx(_ece_loop(y, p), abs=1e-12)


def test_ece_known_cases():
    # constant prediction 0.2 on a sample with 30% positives: one bin, |0.3 - 0.2|
    y = np.r_[np.ones(30), np.zeros(70)]
    assert ece(y, np.full(100, 0.2)) == pytest.approx(0.1)
    # two bins, each perfectly calibrated
    y2 = np.r_[1, 0, 0, 0, 1, 1, 1, 0]
    p2 = np.r_[0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75]
    assert ece(y2, p2) == pytest.approx(0.0, abs=1e-15)
    assert ece_bins(np.array([0.0, 0.05, 0.1, 0.95, 1.0])).tolist() == [0, 0, 1, 9, 9]
    with pytest.raises(DegenerateInputError, match="not a probability"):
        ece([0, 1], [0.5, 1.5])


# --------------------------------------------------------------------------- thresholds
@pytest.mark.parametrize("seed", range(4))
def test_choose_threshold_youden_matches_roc_curve(seed):
    y, _, p = _data(seed)
    fpr, tpr, thr = skm.roc_curve(y, p, drop_intermediate=False)
    j = tpr - fpr
    best = int(np.argmax(j))
    t = choose_threshold(y, p, "youden")
    assert t == pytest.approx(thr[best])
    m = threshold_metrics(y, p, t)
    assert m["sensitivity"] + m["specificity"] - 1 == pytest.approx(j.max(), abs=TOL)


@pytest.mark.parametrize("seed", range(4))
def test_choose_threshold_f1_matches_pr_curve(seed):
    y, _, p = _data(seed)
    prec, rec, thr = skm.precision_recall_curve(y, p)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0)[:-1]
    t = choose_threshold(y, p, "f1")
    assert threshold_metrics(y, p, t)["f1"] == pytest.approx(f1.max(), abs=TOL)
    assert t == pytest.approx(thr[int(np.argmax(f1))])


@pytest.mark.parametrize("thr", [0.2, 0.5, 0.8])
def test_threshold_metrics_match_sklearn(thr):
    y, _, p = _data(3)
    pred = (p >= thr).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    m = threshold_metrics(y, p, thr)
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred))
    assert m["specificity"] == pytest.approx(tn / (tn + fp))
    assert m["ppv"] == pytest.approx(skm.precision_score(y, pred))
    assert m["npv"] == pytest.approx(tn / (tn + fn))
    assert m["f1"] == pytest.approx(skm.f1_score(y, pred))


def test_threshold_metrics_undefined_are_nan_and_refused_in_evaluate():
    y, _, p = _data(1)
    m = threshold_metrics(y, p, 2.0)  # nothing predicted positive
    assert np.isnan(m["ppv"]) and m["sensitivity"] == 0.0
    res = evaluate("binary", y, p, n_boot=0, threshold=2.0)
    assert res["ppv"].value is None and "no row scores at or above" in res["ppv"].refused
    assert res["sensitivity"].value == 0.0


# --------------------------------------------------------------------------- multilabel
def test_multilabel_macro_matches_sklearn_on_valid_labels():
    rng = np.random.default_rng(5)
    n, labels = 300, 5
    y = (rng.random((n, labels)) < [0.3, 0.1, 0.5, 0.2, 0.4]).astype(int)
    y[:, 3] = 0  # single-class label: refused, left out of the macro mean
    s = rng.normal(size=(n, labels)) + y
    valid = [0, 1, 2, 4]
    assert auroc_macro(y, s) == pytest.approx(
        skm.roc_auc_score(y[:, valid], s[:, valid], average="macro"), abs=TOL)
    assert auprc_macro(y, s) == pytest.approx(
        skm.average_precision_score(y[:, valid], s[:, valid], average="macro"), abs=TOL)
    per = per_label(y, s, "auroc")
    assert per[3].value is None and "only one class" in per[3].refused
    for j in valid:
        assert per[j].value == pytest.approx(skm.roc_auc_score(y[:, j], s[:, j]), abs=TOL)
    with pytest.raises(DegenerateInputError, match="no label has both classes"):
        auroc_macro(np.zeros((10, 2)), rng.random((10, 2)))


# --------------------------------------------------------------------------- regression
@pytest.mark.parametrize("seed", range(3))
def test_regression_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = 1000 + rng.normal(size=200)  # large offset: the centred SS_tot must stay accurate
    p = y + rng.normal(0, 0.5, 200)
    w = rng.random(200)
    assert mae(y, p) == pytest.approx(skm.mean_absolute_error(y, p), abs=1e-10)
    assert rmse(y, p) == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)), abs=1e-10)
    assert r2(y, p) == pytest.approx(skm.r2_score(y, p), abs=1e-9)
    assert r2(y, p, w) == pytest.approx(skm.r2_score(y, p, sample_weight=w), abs=1e-9)
    with pytest.raises(DegenerateInputError, match="constant"):
        r2(np.full(5, 3.0), np.arange(5.0))


# --------------------------------------------------------------------------- degenerate inputs
@pytest.mark.parametrize("fn", [auroc, auprc])
def test_degenerate_inputs_raise(fn):
    with pytest.raises(DegenerateInputError, match="only one class"):
        fn([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(DegenerateInputError, match="non-finite"):
        fn([0, 1, 1], [0.1, np.nan, 0.3])
    with pytest.raises(DegenerateInputError, match="non-finite"):
        fn([0, 1, 1], [0.1, np.inf, 0.3])
    with pytest.raises(DegenerateInputError, match="length mismatch"):
        fn([0, 1, 1], [0.1, 0.3])
    with pytest.raises(DegenerateInputError, match="only 0 and 1"):
        fn([0, 2, 1], [0.1, 0.2, 0.3])


def test_evaluate_binary_values_and_refusals():
    y, _, p = _data(2)
    res = evaluate("binary", y, p, np.arange(len(y)) // 2, n_boot=50, seed=1, threshold=0.5)
    assert list(res) == ["auroc", "auprc", "brier", "ece", "sensitivity", "specificity", "ppv",
                         "npv", "f1"]
    assert res["auroc"].value == pytest.approx(skm.roc_auc_score(y, p), abs=TOL)
    assert res["auroc"].ci_low < res["auroc"].value < res["auroc"].ci_high
    assert "subjects" in res["auroc"].method and res["auroc"].refused is None
    json.dumps({k: v.to_dict() for k, v in res.items()})  # serialisable
    assert set(res["auroc"].to_dict()) == {"value", "ci_low", "ci_high", "method", "refused", "ci_note"}

    one_class = evaluate("binary", np.zeros(20), np.linspace(0, 1, 20), n_boot=10)
    assert one_class["auroc"].value is None and "only one class" in one_class["auroc"].refused
    nan = evaluate("binary", y, np.r_[p[:-1], np.nan], n_boot=10)
    assert all(r.value is None and "non-finite" in r.refused for r in nan.values())
    short = evaluate("binary", y, p[:-3], n_boot=10)
    assert all("length mismatch" in r.refused for r in short.values())
    sid_short = evaluate("binary", y, p, np.arange(5), n_boot=10)
    assert all("subject_ids" in r.refused for r in sid_short.values())
    logits = evaluate("binary", y, np.log(p / (1 - p)), n_boot=0)
    assert logits["auroc"].value is not None and "not a probability" in logits["brier"].refused
    assert isinstance(logits["auroc"], MetricResult) and logits["auroc"].ci_low is None


def test_evaluate_multilabel_and_regression():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 3)) < 0.3).astype(int)
    y[:, 2] = 1
    s = rng.random((200, 3)) + y
    res = evaluate("multilabel", y, s, n_boot=20)
    assert list(res) == ["auroc_macro", "auprc_macro", "auroc/0", "auroc/1", "auroc/2"]
    assert res["auroc/2"].value is None and "label 2" in res["auroc/2"].refused
    assert res["auroc_macro"].value == pytest.approx(
        skm.roc_auc_score(y[:, :2], s[:, :2]), abs=TOL)
    yr = rng.normal(size=100)
    pred = yr + rng.normal(0, 0.1, 100)
    reg = evaluate("regression", yr, pred, n_boot=20)
    assert reg["r2"].value == pytest.approx(skm.r2_score(yr, pred), abs=1e-10)
    assert reg["rmse"].value == pytest.approx(skm.root_mean_squared_error(yr, pred), abs=1e-12)
    const = evaluate("regression", np.ones(10), np.arange(10.0), n_boot=5)
    assert const["r2"].value is None and "constant" in const["r2"].refused
    assert const["mae"].value == pytest.approx(np.mean(np.abs(np.arange(10.0) - 1)))
    with pytest.raises(ValueError, match="unknown task kind"):
        evaluate("ranking", yr, yr)


def test_metrics_package_does_not_import_torch_or_sklearn():
    code = ("import sys, benchmark.metrics; "
            "print(any(m.split('.')[0] in ('torch', 'sklearn', 'sksurv', 'lifelines') "
            "for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
