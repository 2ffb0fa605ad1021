"""Survival metrics against scikit-survival and lifelines (test-only oracles; sksurv is GPL-3 and
must never be imported by benchmark/), plus a brute-force O(n^2) oracle for the C-index."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines import KaplanMeierFitter
from lifelines.datasets import load_rossi, load_waltons
from lifelines.utils import concordance_index as ll_concordance_index
from sksurv.datasets import load_gbsg2, load_veterans_lung_cancer, load_whas500
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.metrics import (
    concordance_index_censored,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from benchmark.metrics import DegenerateInputError, c_index_harrell, c_index_uno, evaluate, ibs
from benchmark.metrics import kaplan_meier, td_auc
from benchmark.metrics.evaluate import td_auc_name
from benchmark.metrics.survival import make_harrell_kernel, make_uno_kernel
from benchmark.metrics.survival_auc import make_td_auc_kernel
from benchmark.metrics.survival_brier import make_ibs_kernel

TOL = 1e-9


def _dataset(name: str):
    """(X numeric, time, event) of a bundled scikit-survival dataset."""
    loader = {"whas500": load_whas500, "gbsg2": load_gbsg2,
              "veterans": load_veterans_lung_cancer}[name]
    X, y = loader()
    event_field, time_field = y.dtype.names
    Xn = X.select_dtypes("number").to_numpy(dtype=float)
    Xn = (Xn - Xn.mean(0)) / Xn.std(0)
    return Xn, y[time_field].astype(float), y[event_field].astype(bool)


DATASETS = ["whas500", "gbsg2", "veterans"]


def _split(name: str, seed: int = 0):
    """Cox model fitted on 2/3 of a dataset; returns train/test times, events, risks, surv fns."""
    X, t, e = _dataset(name)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(t))
    tr, te = idx[: 2 * len(t) // 3], idx[2 * len(t) // 3:]
    # the longest follow-up goes to training, so every test time lies inside G's support
    top = int(np.argmax(t))
    if top in te:
        tr, te = np.r_[tr, top], te[te != top]
    cox = CoxPHSurvivalAnalysis(alpha=1e-3).fit(X[tr], Surv.from_arrays(e[tr], t[tr]))
    return dict(t_tr=t[tr], e_tr=e[tr], t_te=t[te], e_te=e[te], risk=cox.predict(X[te]),
                X_te=X[te], cox=cox)


def _brute_harrell(t, e, r, tol=0.0):
    """O(n^2) direct definition: i event and (t_j > t_i or (t_j == t_i and j censored))."""
    num = den = 0.0
    for i in range(len(t)):
        if not e[i]:
            continue
        for j in range(len(t)):
            if j == i or not (t[j] > t[i] or (t[j] == t[i] and not e[j])):
                continue
            den += 1
            if abs(r[i] - r[j]) <= tol:
                num += 0.5
            elif r[i] > r[j]:
                num += 1
    return num / den


# --------------------------------------------------------------------------- Kaplan-Meier
@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("reverse", [False, True])
def test_kaplan_meier_matches_sksurv(name, reverse):
    _, t, e = _dataset(name)
    times, prob = kaplan_meier(t, e, reverse=reverse)
    t_ref, p_ref = kaplan_meier_estimator(e, t, reverse=reverse)
    np.testing.assert_array_equal(times, t_ref)
    np.testing.assert_allclose(prob, p_ref, atol=1e-12)


def test_kaplan_meier_matches_lifelines():
    df = load_waltons()
    times, prob = kaplan_meier(df["T"], df["E"])
    kmf = KaplanMeierFitter().fit(df["T"], df["E"])
    np.testing.assert_allclose(prob, kmf.survival_function_at_times(times).to_numpy(), atol=1e-12)


# --------------------------------------------------------------------------- Harrell
@pytest.mark.parametrize("name", DATASETS)
def test_harrell_matches_sksurv_cox_risk(name):
    X, t, e = _dataset(name)
    cox = CoxPHSurvivalAnalysis(alpha=1e-3).fit(X, Surv.from_arrays(e, t))
    risk = cox.predict(X)
    assert c_index_harrell(t, e, risk) == pytest.approx(
        concordance_index_censored(e, t, risk)[0], abs=TOL)


@pytest.mark.parametrize("name", DATASETS)
def test_harrell_matches_sksurv_tied_risk(name):
    """A single raw column (ages, scores) has many tied risks; times are tied too."""
    X, t, e = _dataset(name)
    for col in range(min(X.shape[1], 3)):
        risk = np.round(X[:, col], 1)
        assert c_index_harrell(t, e, risk) == pytest.approx(
            concordance_index_censored(e, t, risk)[0], abs=TOL)


def test_harrell_matches_lifelines_rossi_and_waltons():
    rossi = load_rossi()
    for col in ["age", "prio", "fin"]:  # integer columns: exact ties in risk, weeks tie in time
        risk = rossi[col].to_numpy(dtype=float)
        # lifelines scores are "higher = longer survival": pass -risk
        ours = c_index_harrell(rossi["week"], rossi["arrest"], risk, tied_tol=0.0)
        assert ours == pytest.approx(
            ll_concordance_index(rossi["week"], -risk, rossi["arrest"]), abs=TOL)
    w = load_waltons()
    risk = (w["group"] == "miR-137").to_numpy(dtype=float)
    assert c_index_harrell(w["T"], w["E"], risk, tied_tol=0.0) == pytest.approx(
        ll_concordance_index(w["T"], -risk, w["E"]), abs=TOL)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.booleans(), st.integers(0, 4)),
                min_size=2, max_size=30))
def test_harrell_property_against_brute_force_and_sksurv(rows):
    t = np.array([r[0] for r in rows], dtype=float)
    e = np.array([r[1] for r in rows])
    r = np.array([r[2] for r in rows], dtype=float)
    try:
        ref = _brute_harrell(t, e, r)
    except ZeroDivisionError:
        with pytest.raises(DegenerateInputError):
            c_index_harrell(t, e, r)
        return
    assert c_index_harrell(t, e, r) == pytest.approx(ref, abs=1e-12)
    assert c_index_harrell(t, e, r) == pytest.approx(
        concordance_index_censored(e, t, r)[0], abs=1e-12)


def test_harrell_tolerance_and_weights():
    rng = np.random.default_rng(3)
    t = rng.exponential(size=60)
    e = rng.random(60) < 0.6
    r = np.round(rng.normal(size=60), 1)
    r_jit = r + rng.uniform(-4e-9, 4e-9, size=60)  # within 1e-8 of the tie partner: still ties
    brute = _brute_harrell(t, e, r_jit, 1e-8)
    assert c_index_harrell(t, e, r_jit) == pytest.approx(brute, abs=1e-12)
    assert c_index_harrell(t, e, r_jit) == pytest.approx(c_index_harrell(t, e, r), abs=1e-12)
    assert c_index_harrell(t, e, r_jit, tied_tol=0) == pytest.approx(
        _brute_harrell(t, e, r_jit, 0.0), abs=1e-12)
    w = rng.integers(0, 3, size=60)
    rows = np.repeat(np.arange(60), w)
    assert c_index_harrell(t, e, r, sample_weight=w) == pytest.approx(
        concordance_index_censored(e[rows], t[rows], r[rows])[0], abs=1e-12)


# --------------------------------------------------------------------------- Uno
@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("q", [50, 80])
def test_uno_matches_sksurv(name, q):
    d = _split(name)
    tau = float(np.percentile(d["t_tr"], q))
    y_tr = Surv.from_arrays(d["e_tr"], d["t_tr"])
    y_te = Surv.from_arrays(d["e_te"], d["t_te"])
    ref = concordance_index_ipcw(y_tr, y_te, d["risk"], tau=tau)[0]
    got = c_index_uno(d["t_te"], d["e_te"], d["risk"], d["t_tr"], d["e_tr"], tau=tau)
    assert got == pytest.approx(ref, abs=TOL)


def test_uno_untruncated_and_tied_risk_match_sksurv():
    X, t, e = _dataset("whas500")
    y = Surv.from_arrays(e, t)
    risk = np.round(X[:, 0], 1)
    assert c_index_uno(t, e, risk, t, e) == pytest.approx(
        concordance_index_ipcw(y, y, risk)[0], abs=TOL)


# --------------------------------------------------------------------------- td-AUC and IBS
def _times(t_te, e_te, t_tr, qs=(20, 40, 60, 80)):
    hi = min(t_te.max(), t_tr.max())
    tm = np.percentile(t_te[e_te & (t_te < hi)], qs)
    return np.unique(tm)


@pytest.mark.parametrize("name", DATASETS)
def test_td_auc_matches_sksurv(name):
    d = _split(name)
    y_tr = Surv.from_arrays(d["e_tr"], d["t_tr"])
    y_te = Surv.from_arrays(d["e_te"], d["t_te"])
    times = _times(d["t_te"], d["e_te"], d["t_tr"])
    auc, mean = td_auc(d["t_te"], d["e_te"], d["risk"], times, d["t_tr"], d["e_tr"])
    auc_ref, mean_ref = cumulative_dynamic_auc(y_tr, y_te, d["risk"], times)
    np.testing.assert_allclose(auc, auc_ref, atol=TOL)
    assert mean == pytest.approx(mean_ref, abs=TOL)
    # tied risks, a single time, and time-dependent (2-D) risks
    tied = np.round(d["risk"], 1)
    auc1, mean1 = td_auc(d["t_te"], d["e_te"], tied, times[:1], d["t_tr"], d["e_tr"])
    ref1, mref1 = cumulative_dynamic_auc(y_tr, y_te, tied, times[:1])
    assert auc1[0] == pytest.approx(ref1[0], abs=TOL) and mean1 == pytest.approx(mref1, abs=TOL)
    risk2 = d["risk"][:, None] + np.round(np.random.default_rng(0).normal(
        size=(len(d["risk"]), len(times))), 1)
    auc2, mean2 = td_auc(d["t_te"], d["e_te"], risk2, times, d["t_tr"], d["e_tr"])
    ref2, mref2 = cumulative_dynamic_auc(y_tr, y_te, risk2, times)
    np.testing.assert_allclose(auc2, ref2, atol=TOL)
    assert mean2 == pytest.approx(mref2, abs=TOL)


@pytest.mark.parametrize("name", DATASETS)
def test_ibs_matches_sksurv(name):
    d = _split(name)
    y_tr = Surv.from_arrays(d["e_tr"], d["t_tr"])
    y_te = Surv.from_arrays(d["e_te"], d["t_te"])
    times = _times(d["t_te"], d["e_te"], d["t_tr"], qs=(10, 25, 40, 55, 70, 85))
    fns = d["cox"].predict_survival_function(d["X_te"])
    surv = np.asarray([[fn(x) for x in times] for fn in fns])
    got = ibs(d["t_te"], d["e_te"], surv, times, d["t_tr"], d["e_tr"])
    assert got == pytest.approx(integrated_brier_score(y_tr, y_te, surv, times), abs=TOL)


# --------------------------------------------------------------------------- weighted kernels
def test_kernels_with_counts_equal_metrics_on_resampled_rows():
    """A bootstrap replicate as counts must equal the oracle on the materialised rows."""
    d = _split("whas500")
    t, e, r = d["t_te"], d["e_te"], np.round(d["risk"], 1)
    n = len(t)
    tau = float(np.percentile(d["t_tr"], 70))
    times = _times(t, e, d["t_tr"])
    surv = np.exp(-np.outer(np.exp(r - r.mean()), times / times.max()))
    rng = np.random.default_rng(11)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(4)])
    harrell = make_harrell_kernel(t, e, r)(counts)
    uno = make_uno_kernel(t, e, r, d["t_tr"], d["e_tr"], tau)(counts)
    tda = make_td_auc_kernel(t, e, r, times, d["t_tr"], d["e_tr"])(counts)
    ib = make_ibs_kernel(t, e, surv, times, d["t_tr"], d["e_tr"])(counts)
    y_tr = Surv.from_arrays(d["e_tr"], d["t_tr"])
    for k in range(len(counts)):
        rows = np.repeat(np.arange(n), counts[k])
        y_k = Surv.from_arrays(e[rows], t[rows])
        ref_h = concordance_index_censored(e[rows], t[rows], r[rows])[0]
        assert harrell[k] == pytest.approx(ref_h, abs=TOL)
        ref_u = concordance_index_ipcw(y_tr, y_k, r[rows], tau=tau)[0]
        assert uno[k] == pytest.approx(ref_u, abs=TOL)
        ok = times[(times >= t[rows].min()) & (times < t[rows].max())]
        if len(ok) == len(times):
            auc_ref, mean_ref = cumulative_dynamic_auc(y_tr, y_k, r[rows], times)
            np.testing.assert_allclose(tda[k, :-1], auc_ref, atol=TOL)
            assert tda[k, -1] == pytest.approx(mean_ref, abs=TOL)
            ref_ibs = integrated_brier_score(y_tr, y_k, surv[rows], times)
            assert ib[k] == pytest.approx(ref_ibs, abs=TOL)


def test_multi_row_subjects_give_all_rows_the_subject_count():
    rng = np.random.default_rng(2)
    t = rng.exponential(size=40)
    e = rng.random(40) < 0.7
    r = rng.normal(size=40)
    subj = np.arange(40) // 4  # 10 subjects, 4 rows each
    counts = rng.integers(0, 3, size=(3, 10))
    got = make_harrell_kernel(t, e, r, subj)(counts)
    for k in range(3):
        w = counts[k][subj]
        assert got[k] == pytest.approx(c_index_harrell(t, e, r, sample_weight=w), abs=1e-12)


# --------------------------------------------------------------------------- refusals
def test_survival_degenerate_inputs():
    t = np.array([1.0, 2, 3, 4])
    with pytest.raises(DegenerateInputError, match="no events"):
        c_index_harrell(t, [0, 0, 0, 0], [1, 2, 3, 4])
    with pytest.raises(DegenerateInputError, match="non-finite"):
        c_index_harrell(t, [1, 0, 1, 0], [1, np.nan, 3, 4])
    with pytest.raises(DegenerateInputError, match="length mismatch"):
        c_index_harrell(t, [1, 0, 1], [1, 2, 3, 4])
    with pytest.raises(DegenerateInputError, match="no comparable pairs"):
        c_index_harrell([1.0, 1.0], [1, 1], [1, 2])  # two events at the same time
    with pytest.raises(DegenerateInputError, match="beyond the last training time"):
        c_index_uno([1.0, 5, 9], [1, 1, 0], [3, 2, 1], [1.0, 2, 3], [1, 0, 1])
    with pytest.raises(DegenerateInputError, match="G\\(t\\) is 0"):  # last training row censored
        c_index_uno([1.0, 5, 9], [1, 1, 0], [3, 2, 1], [1.0, 2, 3], [1, 0, 0])
    with pytest.raises(DegenerateInputError, match="train_time and train_event"):
        c_index_uno(t, [1, 0, 1, 0], [1, 2, 3, 4], None, None)
    with pytest.raises(DegenerateInputError, match="outside the test follow-up"):
        td_auc(t, [1, 0, 1, 0], [4, 3, 2, 1], [4.0], t, [1, 0, 1, 0])


def test_evaluate_survival_matches_functions_and_refuses():
    d = _split("gbsg2")
    times = _times(d["t_te"], d["e_te"], d["t_tr"])
    horizon = float(times[-1])
    res = evaluate("survival", (d["t_te"], d["e_te"]), d["risk"], n_boot=30, seed=0,
                   train_time=d["t_tr"], train_event=d["e_tr"], horizon=horizon, times=times)
    y_tr = Surv.from_arrays(d["e_tr"], d["t_tr"])
    y_te = Surv.from_arrays(d["e_te"], d["t_te"])
    assert res["c_index_harrell"].value == pytest.approx(
        concordance_index_censored(d["e_te"], d["t_te"], d["risk"])[0], abs=TOL)
    assert res["c_index_uno"].value == pytest.approx(
        concordance_index_ipcw(y_tr, y_te, d["risk"], tau=horizon)[0], abs=TOL)
    auc_ref, mean_ref = cumulative_dynamic_auc(y_tr, y_te, d["risk"], times)
    for tk, a in zip(times, auc_ref):
        assert res[td_auc_name(tk)].value == pytest.approx(a, abs=TOL)
    assert res["td_auc"].value == pytest.approx(mean_ref, abs=TOL)
    assert "Kaplan-Meier" in res["td_auc"].method
    assert "surv_prob" in res["ibs"].refused  # declared by survival tasks, refused with a reason
    h = res["c_index_harrell"]
    assert h.ci_low < h.value < h.ci_high
    # sksurv-style structured labels are accepted too
    struct = evaluate("survival", y_te, d["risk"], n_boot=0)
    assert struct["c_index_harrell"].value == res["c_index_harrell"].value
    assert "train_time" in struct["c_index_uno"].refused
    # an evaluation time past the follow-up is refused on its own, the others stay
    late = evaluate("survival", (d["t_te"], d["e_te"]), d["risk"], n_boot=0, train_time=d["t_tr"],
                    train_event=d["e_tr"], times=[times[0], 1e9])
    assert late[td_auc_name(times[0])].value is not None
    assert "outside the test follow-up" in late["td_auc@1000000000"].refused
    assert late["td_auc"].value is None and "not every evaluation time" in late["td_auc"].refused
    assert "no evaluation times" in struct["td_auc"].refused
    none = evaluate("survival", (d["t_te"], np.zeros(len(d["t_te"]))), d["risk"], n_boot=10,
                    train_time=d["t_tr"], train_event=d["e_tr"], horizon=horizon)
    assert "no events" in none["c_index_harrell"].refused
