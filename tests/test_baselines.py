"""Unit tests of the tabular baselines: search spaces, grouped folds, the search, Cox math and its
sign conventions per library, one-vs-rest, explanations, late-fusion sidecar features."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import polars as pl
import pytest

from baselines import spaces
from baselines.explain import describe_feature, modality_attribution, pick_rows
from baselines.late_fusion import _embedding_array, fuse
from baselines.cox import RidgeCox, cox_label, lightgbm_cox_objective, survival_grid
from baselines.learners import ConstantLearner, make_learner
from baselines.search import make_folds, random_search, selection_score
from benchmark.learn.cox import Breslow, cox_grad_hess
from benchmark.learn.folds import derive_seed
from benchmark.metrics.binary import auroc
from benchmark.metrics.survival import c_index_harrell


# ------------------------------------------------------------------------------------ spaces
@pytest.mark.parametrize("setup", ["xgboost", "xgboost_tuned"])
def test_trials_are_seeded_and_start_with_defaults(setup):
    a = spaces.draw_trials(setup, 5, np.random.default_rng(1))
    b = spaces.draw_trials(setup, 5, np.random.default_rng(1))
    c = spaces.draw_trials(setup, 5, np.random.default_rng(2))
    assert a == b and a != c
    assert a[0] == spaces.DEFAULTS[setup]
    lo, hi = (1, 125) if setup == "xgboost" else (3, 1000)   # the paper's Table B2 / ours
    for t in a[1:]:
        assert lo <= t["max_depth"] <= 10 and t["n_estimators"] <= hi
        assert setup == "xgboost" or (0.5 <= t["subsample"] <= 1.0 and 100 <= t["n_estimators"])


@pytest.mark.parametrize("library", sorted(spaces.SPACES))
def test_defaults_lie_in_their_space(library):
    space, d = spaces.SPACES[library], spaces.DEFAULTS[library]
    assert set(d) == set(space)
    for k, dist in space.items():
        v = d[k]
        if isinstance(dist, spaces.Choice):
            assert v in dist.values
        else:
            assert dist.low <= v <= dist.high, (k, v)


def test_lr_C_is_log_uniform_over_twenty_decades():
    rng = np.random.default_rng(0)
    logs = np.log10([spaces.LOGISTIC_REGRESSION["C"].sample(rng) for _ in range(4000)])
    assert logs.min() >= -10 and logs.max() <= 10
    # uniform in log10 on [-10, 10]: quartiles at -5, 0, 5
    q = np.quantile(logs, [0.25, 0.5, 0.75])
    np.testing.assert_allclose(q, [-5, 0, 5], atol=0.6)


# ------------------------------------------------------------------------------------ folds / search
def test_folds_group_subjects_and_stratify():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(100), 3)          # 3 samples per subject
    y = np.repeat(rng.random(100) < 0.2, 3).astype(int)
    folds = make_folds("binary", y, groups, 5, seed=1)
    assert len(folds) == 5
    seen = np.zeros(len(y), dtype=int)
    for tr, va in folds:
        assert not set(groups[tr]) & set(groups[va])
        assert 0.1 < y[va].mean() < 0.3           # stratified
        seen[va] += 1
    assert np.all(seen == 1)
    again = make_folds("binary", y, groups, 5, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


def test_folds_capped_by_subject_count_and_unstratified_kinds():
    groups = np.array([1, 1, 2, 2, 3])
    folds = make_folds("regression", np.arange(5.0), groups, 5, seed=0)
    assert len(folds) == 3
    with pytest.raises(ValueError):
        make_folds("regression", np.arange(2.0), np.array([1, 1]), 5, seed=0)


def test_selection_score_directions_and_degenerate_folds():
    y = np.array([0, 0, 1, 1])
    assert selection_score("binary", y, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert math.isnan(selection_score("binary", np.zeros(4), np.arange(4.0)))
    Y = np.column_stack([y, 1 - y, np.zeros(4)])    # third label has one class: skipped
    assert selection_score("multilabel", Y, np.column_stack([y, 1 - y, y]).astype(float)) == 1.0
    assert selection_score("regression", np.array([1.0, 2.0]), np.array([2.0, 2.0])) == 0.5


def test_random_search_picks_the_better_configuration():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    y = (X[:, 0] + 0.3 * rng.normal(size=300) > 0).astype(np.int8)
    folds = make_folds("binary", y, np.arange(300), 3, seed=0)

    def make(params, n_iter):
        return make_learner("logistic_regression", "binary", params, seed=0, threads=1, max_iterations=100)

    bad = {"C": 1e-10, "solver": "liblinear", "penalty": "l1"}    # all-zero coefficients: AUROC 0.5
    good = {"C": 1.0, "solver": "liblinear", "penalty": "l2"}
    res = random_search(make, [bad, good], X, y, folds, "binary")
    assert res.best_params == good and res.best_index == 1
    assert res.best_score > 0.9 and res.trials[0]["cv_score"] < 0.6
    assert res.oof.shape == (300,) and np.all(np.isfinite(res.oof))
    # out-of-fold scores are honest: their AUROC is close to the CV score
    assert abs(auroc(y, res.oof) - res.best_score) < 0.05


def test_random_search_skips_a_configuration_that_raises():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int8)
    folds = make_folds("binary", y, np.arange(120), 3, seed=0)

    def make(params, n_iter):
        if params["C"] < 0:
            raise ValueError("C must be positive")
        return make_learner("logistic_regression", "binary", params, seed=0, threads=1, max_iterations=100)

    broken = {"C": -1.0, "solver": "liblinear", "penalty": "l2"}
    ok = {"C": 1.0, "solver": "liblinear", "penalty": "l2"}
    res = random_search(make, [broken, ok], X, y, folds, "binary")
    assert res.best_index == 1 and "ValueError" in res.summary()["trials"][0]["error"]
    with pytest.raises(ValueError):
        random_search(make, [broken], X, y, folds, "binary")


def test_derive_seed_is_stable_and_label_dependent():
    assert derive_seed(0, "catboost", "model") == derive_seed(0, "catboost", "model")
    assert derive_seed(0, "catboost", "model") != derive_seed(0, "xgboost", "model")
    assert derive_seed(0, "x") != derive_seed(1, "x")


# ------------------------------------------------------------------------------------ Cox math
def _cox_data(n=400, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    eta = 1.2 * X[:, 0] - 0.6 * X[:, 1]
    T = rng.exponential(100.0 / np.exp(eta))
    C = rng.exponential(150.0, n)
    t = np.minimum(T, C)
    if ties:
        t = np.ceil(t / 10.0) * 10.0
    return X, t, (T <= C).astype(float), eta


@pytest.mark.parametrize("ties", [False, True])
def test_cox_gradient_and_hessian_match_finite_differences(ties):
    X, t, e, _ = _cox_data(60, ties=ties)
    eta = np.random.default_rng(1).normal(size=60)
    g, h, loss = cox_grad_hess(eta, t, e)
    eps = 1e-5
    for k in (0, 7, 33):
        up, dn = eta.copy(), eta.copy()
        up[k] += eps
        dn[k] -= eps
        gu, _, lu = cox_grad_hess(up, t, e)
        gd, _, ld = cox_grad_hess(dn, t, e)
        assert (lu - ld) / (2 * eps) == pytest.approx(g[k], rel=1e-4, abs=1e-7)
        assert (gu[k] - gd[k]) / (2 * eps) == pytest.approx(h[k], rel=1e-4, abs=1e-7)
    # shift invariance (and no overflow for huge scores)
    g2, _, loss2 = cox_grad_hess(eta + 800.0, t, e)
    np.testing.assert_allclose(g2, g, atol=1e-10)
    assert loss2 == pytest.approx(loss)


def test_cox_loss_matches_lifelines_partial_likelihood():
    lifelines = pytest.importorskip("lifelines")
    import pandas as pd
    X, t, e, _ = _cox_data(300)
    Z = (X - X.mean(0)) / X.std(0, ddof=1)
    n, C = len(Z), 0.5
    df = pd.DataFrame(Z, columns=list("abcd")).assign(T=t, E=e)
    lam = 1.0 / (C * n)
    cph = lifelines.CoxPHFitter(penalizer=lam).fit(df, "T", "E")
    ours = RidgeCox(C=C, max_iter=500).fit(Z, t, e)
    np.testing.assert_allclose(ours.coef_, cph.params_.to_numpy(), atol=2e-3)


def test_breslow_reduces_to_nelson_aalen_without_covariates():
    t = np.array([1.0, 2.0, 2.0, 3.0, 5.0, 8.0])
    e = np.array([1, 1, 0, 1, 0, 1])
    b = Breslow().fit(np.zeros(6), t, e)
    # Nelson-Aalen: 1/6 at t=1, +1/5 at t=2, +1/3 at t=3, +1/1 at t=8
    na = np.cumsum([1 / 6, 1 / 5, 1 / 3, 1 / 1])
    S = b.survival(np.zeros(1), np.array([0.5, 1.0, 2.5, 3.0, 7.0, 9.0]))[0]
    np.testing.assert_allclose(S, np.exp(-np.array([0, na[0], na[1], na[2], na[2], na[3]])))
    # higher risk -> lower survival, monotone in time
    S2 = b.survival(np.array([-1.0, 0.0, 1.0]), np.array([1.0, 3.0, 8.0]))
    assert np.all(np.diff(S2, axis=0) < 0) and np.all(np.diff(S2, axis=1) <= 0)


def test_survival_grid_quantiles_of_event_times():
    grid = survival_grid(np.arange(1.0, 101.0), np.ones(100))
    assert len(grid) == 5 and grid[0] == pytest.approx(20.8) and grid[-1] == pytest.approx(80.2)
    assert len(survival_grid(np.arange(5.0), np.zeros(5))) == 0


def test_cox_label_signs_and_clips_zero_times():
    lab = cox_label(np.array([[5.0, 1], [7.0, 0], [0.0, 0], [0.0, 1]]))
    assert lab[0] == 5.0 and lab[1] == -7.0 and lab[2] < 0 and lab[3] > 0


@pytest.mark.parametrize("library", ["catboost", "xgboost", "lightgbm", "logistic_regression"])
def test_survival_risk_is_higher_for_earlier_events(library):
    """Sign conventions: every library's survival score must rank by hazard (C-index >> 0.5)."""
    X, t, e, eta = _cox_data(500, seed=3)
    y = np.column_stack([t, e])
    params = spaces.DEFAULTS[library]
    m = make_learner(library, "survival", params, seed=0, threads=2, max_iterations=100).fit(X[:400], y[:400])
    risk = m.score(X[400:])
    assert c_index_harrell(t[400:], e[400:].astype(bool), risk) > 0.7
    assert np.corrcoef(risk, eta[400:])[0, 1] > 0.5


def test_lightgbm_objective_unsigns_labels():
    X, t, e, _ = _cox_data(50)
    eta = np.zeros(50)
    g1, h1 = lightgbm_cox_objective(cox_label(np.column_stack([t, e])), eta)
    g2, h2, _ = cox_grad_hess(eta, t, e)
    np.testing.assert_allclose(g1, g2)
    np.testing.assert_allclose(h1, h2)


# ------------------------------------------------------------------------------------ learners
@pytest.mark.parametrize("library", ["catboost", "xgboost", "lightgbm", "random_forest", "logistic_regression"])
def test_multilabel_one_vs_rest_with_a_one_class_label(library):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    Y = np.column_stack([(X[:, 0] > 0), (X[:, 1] > 0.5), np.zeros(200)]).astype(np.int8)
    m = make_learner(library, "multilabel", spaces.DEFAULTS[library], seed=0, threads=2, max_iterations=50,
                     n_labels=3).fit(X, Y)
    assert isinstance(m.learners_[2], ConstantLearner)
    s = m.score(X)
    assert s.shape == (200, 3) and np.all((s >= 0) & (s <= 1))
    assert np.all(s[:, 2] == 0.0)
    assert auroc(Y[:, 0], s[:, 0]) > 0.9
    assert m.size() > 0


@pytest.mark.parametrize("library", ["catboost", "xgboost", "lightgbm"])
def test_early_stopping_records_rounds_and_refit_uses_them(library):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    y = (X[:, 0] + rng.normal(size=300) > 0).astype(np.int8)
    m = make_learner(library, "binary", spaces.DEFAULTS[library], seed=0, threads=2, max_iterations=200)
    m.fit(X[:200], y[:200], eval_set=(X[200:], y[200:]))
    assert 1 <= m.n_iter_ <= 200
    r = make_learner(library, "binary", spaces.DEFAULTS[library], seed=0, threads=2, max_iterations=200,
                     n_iter=7).fit(X, y)
    assert r.n_iter_ == 7


def test_random_forest_refuses_survival():
    with pytest.raises(ValueError):
        make_learner("random_forest", "survival", spaces.DEFAULTS["random_forest"], seed=0, threads=1,
                     max_iterations=10)


def test_budget_caps_rounds():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int8)
    m = make_learner("xgboost", "binary", spaces.DEFAULTS["xgboost"], seed=0, threads=1, max_iterations=13).fit(X, y)
    assert m.model_.get_booster().num_boosted_rounds() == 13
    rf = make_learner("random_forest", "binary", spaces.DEFAULTS["random_forest"], seed=0, threads=1,
                      max_iterations=13).fit(X, y)
    assert len(rf.model_.estimators_) == 13


# ------------------------------------------------------------------------------------ explanations
def test_feature_descriptions():
    d = {"LOINC/2160-0": "Creatinine", "ICD10CM/C34.90": "Lung cancer", "ICD10CM/E11.9": "T2D",
         "ICD10CM/E11.65": "T2D with hyperglycemia"}
    assert describe_feature("count:LOINC/2160-0", d) == "Creatinine"
    assert describe_feature("last:LOINC/2160-0", d) == "Creatinine"
    assert describe_feature("count:ICD10CM/C34", d) == "Lung cancer"
    assert describe_feature("count:ICD10CM/E11", d).startswith("group of 2 codes")
    assert describe_feature("age_at_prediction", d) is None
    assert describe_feature("count:UNKNOWN/1", d) is None


def test_pick_rows_caps_and_is_deterministic():
    assert len(pick_rows(100, 0)) == 100
    a, b = pick_rows(2000, 3), pick_rows(2000, 3)
    assert len(a) == 500 and np.array_equal(a, b) and len(np.unique(a)) == 500


def test_tree_shap_summary_finds_the_informative_feature():
    from baselines.explain import explain_learner
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5)).astype(np.float32)
    y = (2 * X[:, 3] + 0.2 * rng.normal(size=400) > 0).astype(np.int8)
    names = ["count:A", "count:B", "last:C", "count:D", "age_at_prediction"]
    codes = pl.DataFrame({"code": ["D"], "description": ["the informative code"]})
    for library in ("catboost", "xgboost", "lightgbm"):
        m = make_learner(library, "binary", spaces.DEFAULTS[library], seed=0, threads=2, max_iterations=50).fit(X, y)
        ex = explain_learner(m, X, names, codes, seed=0, max_rows=300)
        assert ex["n_rows"] == 300 and ex["method"].startswith("Tree")
        top = ex["top_features"][0]
        assert top == {"feature": "count:D", "description": "the informative code",
                       "mean_abs_shap": pytest.approx(top["mean_abs_shap"])}
        assert all(set(f) == {"feature", "description", "mean_abs_shap"} for f in ex["top_features"])


def test_modality_attribution_credits_the_useful_modality():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.5).astype(int)
    present = {"structured": np.ones(400, bool), "ct": rng.random(400) < 0.7, "prs": np.ones(400, bool)}
    oof = {"structured": rng.random(400), "ct": np.where(present["ct"], y + 0.3 * rng.normal(size=400), np.nan),
           "prs": rng.random(400)}
    att = modality_attribution("binary", y, oof, present, fuse, selection_score)
    by = {r["modality"]: r for r in att["modalities"]}
    assert by["ct"]["drop"] > 0.1 and abs(by["prs"]["drop"]) < 0.05
    assert by["ct"]["n_rows_with"] == int(present["ct"].sum())


# ------------------------------------------------------------------------------------ late fusion helpers
def test_fuse_averages_over_present_modalities():
    s = {"a": np.array([0.2, 0.4, 0.6]), "b": np.array([0.8, np.nan, 0.0])}
    p = {"a": np.array([True, True, False]), "b": np.array([True, False, False])}
    out = fuse(s, p)
    np.testing.assert_allclose(out[:2], [0.5, 0.4])
    assert np.isnan(out[2])
    m = fuse({"a": np.ones((2, 3)), "b": np.zeros((2, 3))}, {"a": np.array([True, True]), "b": np.array([True, False])})
    np.testing.assert_allclose(m, [[0.5] * 3, [1.0] * 3])


def test_embedding_array_accepts_lists_and_arrays():
    lst = pl.Series([[1.0, 2.0], [3.0, 4.0]], dtype=pl.List(pl.Float32))
    arr = lst.cast(pl.Array(pl.Float32, 2))
    np.testing.assert_array_equal(_embedding_array(lst), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(_embedding_array(arr), [[1, 2], [3, 4]])
    with pytest.raises(ValueError):
        _embedding_array(pl.Series([[1.0], [1.0, 2.0]]))


def test_modality_features_mean_of_visible_rows_only(tmp_path):
    from baselines.late_fusion import modality_features
    from benchmark.data.cohort import Cohort
    from benchmark.model_api import TaskData
    from benchmark.task_registry import select_tasks
    from tests.cohort_factory import make_cohort

    root = make_cohort(tmp_path / "c", [(1, "2020-01-01", "A"), (2, "2020-01-01", "A"), (3, "2020-01-01", "A")],
                       splits={1: "train", 2: "tuning", 3: "held_out"})
    (root / "modalities").mkdir()
    T = datetime.fromisoformat
    pl.DataFrame({"subject_id": [1, 1, 1, 2, 2], "time": [T("2020-01-01"), T("2020-01-05"), T("2020-03-01"),
                                                         T("2020-06-01"), None],
                  "embedding": [[1.0, 1.0], [3.0, 5.0], [100.0, 100.0], [50.0, 50.0], [2.0, 4.0]]},
                 schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "embedding": pl.List(pl.Float32)}
                 ).write_parquet(root / "modalities" / "ct.parquet")
    labels = pl.DataFrame({"subject_id": [1, 2, 3], "prediction_time": [T("2020-02-01")] * 3,
                           "boolean_value": [True, False, True], "split": ["train", "tuning", "held_out"]},
                          schema_overrides={"prediction_time": pl.Datetime("us")})
    data = TaskData(select_tasks("leak/probe")[0], Cohort(root), labels, 0, tmp_path)
    f = modality_features(data, "ct")
    p, X = f["train"]
    assert p.tolist() == [True] and X.tolist() == [[2.0, 3.0]]      # rows at day 1 and 5; day 60 is future
    p, X = f["tuning"]
    assert p.tolist() == [True] and X.tolist() == [[2.0, 4.0]]      # static row only; the June row is future
    p, X = f["held_out"]
    assert p.tolist() == [False]
