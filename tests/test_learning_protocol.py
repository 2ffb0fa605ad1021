"""The one learning protocol (benchmark.learn): folds, typed search distributions, the selection
metric per task kind, Cox / Breslow; and that baselines, fusion heads and MEHRT probes all use it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from benchmark.learn import (Breslow, Choice, LogUniform, Uniform, UniformInt, cell_folds, cox_grad_hess, derive_seed,
                             draw_trials, fit_linear_cox, gain, make_folds, selection_score, stratification_key,
                             stratified_log_draws)


def _partition(groups: np.ndarray, folds) -> list[frozenset]:
    """The folds as sets of validation subjects (independent of row order)."""
    return sorted((frozenset(groups[va].tolist()) for _, va in folds), key=min)


# ------------------------------------------------------------------------------------ distributions
def test_distributions_are_frozen_seeded_and_in_range():
    rng = np.random.default_rng(0)
    u, lu, i, c = Uniform(0.5, 1.0), LogUniform(1e-3, 10.0), UniformInt(4, 8), Choice((None, 5, "sqrt"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        u.low = 0.0
    xs = [u.sample(rng) for _ in range(2000)]
    assert min(xs) >= 0.5 and max(xs) <= 1.0 and abs(np.mean(xs) - 0.75) < 0.01
    logs = np.log10([lu.sample(rng) for _ in range(2000)])
    assert logs.min() >= -3 and logs.max() <= 1 and abs(np.median(logs) - (-1.0)) < 0.15  # uniform in log space
    ints = [i.sample(rng) for _ in range(2000)]
    assert set(ints) == {4, 5, 6, 7, 8} and all(isinstance(v, int) for v in ints)  # both ends included
    counts = {v: 0 for v in c.values}
    for _ in range(3000):
        counts[c.sample(rng)] += 1
    assert all(abs(n / 3000 - 1 / 3) < 0.04 for n in counts.values())
    space = {"a": u, "b": i}
    assert draw_trials(space, {"a": 0.7, "b": 6}, 4, np.random.default_rng(5)) == \
        draw_trials(space, {"a": 0.7, "b": 6}, 4, np.random.default_rng(5))


def test_search_spaces_keep_todays_draws():
    """The typed spaces draw exactly what the raw spaces drew before (values from the old code)."""
    from baselines import spaces
    from encoders.fusion.estimator import _sample_trials
    from encoders.fusion.heads import HEADS
    SEARCH_SPACES = {name: cls.search_space for name, cls in HEADS.items()}
    # the previous catboost / logistic_regression setups live on as *_tuned (the registered catboost
    # and logistic_regression now search the MEHRT paper's Tables B1 / B4)
    t = spaces.draw_trials("catboost_tuned", 3, np.random.default_rng(0))
    assert t[0] == spaces.DEFAULTS["catboost_tuned"]
    assert t[1]["depth"] == 8 and t[1]["iterations"] == 673
    assert t[1]["l2_leaf_reg"] == pytest.approx(1.8611728721136578, rel=1e-12)
    assert t[1]["learning_rate"] == pytest.approx(0.011495367582735366, rel=1e-12)
    lr = spaces.draw_trials("logistic_regression_tuned", 3, np.random.default_rng(0))[1]
    assert lr == {"C": pytest.approx(548.5721385480549, rel=1e-12), "penalty": "l2", "solver": "saga"}
    assert all(isinstance(d, (Choice, LogUniform, Uniform, UniformInt)) for sp in spaces.SPACES.values()
               for d in sp.values())
    assert all(isinstance(d, Choice) for sp in SEARCH_SPACES.values() for d in sp.values())
    assert SEARCH_SPACES["late_fusion"]["hidden"].values == (32, 64, 128)
    assert _sample_trials("concat_lr", 6, 3) == [{}, {"modality_dropout": 0.3}, {"modality_dropout": 0.0}]


def test_probe_C_grid_is_the_stratified_log_uniform_prior():
    from encoders.mehrt.probe import C_SPACE, loguniform_candidates
    assert C_SPACE == LogUniform(1e-10, 1e10)
    np.testing.assert_array_equal(loguniform_candidates(8, 3), stratified_log_draws(C_SPACE, 8, 3))


# ------------------------------------------------------------------------------------ folds
def test_binary_folds_are_the_old_baseline_rule():
    """Stratified when both classes have >= k subjects, else a shuffled GroupKFold (as before)."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(100), 2)
    y = np.repeat(rng.random(100) < 0.2, 2).astype(int)
    ref = list(StratifiedGroupKFold(5, shuffle=True, random_state=7).split(groups, y, groups))
    assert _partition(groups, make_folds("binary", y, groups, 5, 7)) == _partition(groups, ref)
    y_rare = np.zeros(200, int)
    y_rare[:6] = 1                                   # 3 positive subjects < 5 folds
    ref = list(GroupKFold(5, shuffle=True, random_state=7).split(groups, None, groups))
    assert _partition(groups, make_folds("binary", y_rare, groups, 5, 7)) == _partition(groups, ref)


def test_probe_folds_no_longer_shrink_to_the_minority_count():
    """Before: the probe capped k at the number of minority rows (3 folds here); the one rule keeps
    k = min(n_folds, subjects) and drops stratification instead, like the baselines."""
    from encoders.mehrt.probe import cv_folds
    groups = np.arange(60)
    y = np.zeros(60, int)
    y[:3] = 1
    folds = cv_folds("binary", y, groups, 5, seed=0)
    assert len(folds) == 5
    assert _partition(groups, folds) == _partition(groups, cell_folds("binary", y, groups, 5, 0))


def test_regression_and_multilabel_folds_are_stratified():
    rng = np.random.default_rng(1)
    groups = np.arange(500)
    y = rng.lognormal(1.0, 1.0, 500)
    key = stratification_key("regression", y)
    assert np.bincount(key).tolist() == [100] * 5                     # quintile bins
    for _, va in make_folds("regression", y, groups, 5, 0):
        assert np.bincount(key[va], minlength=5).tolist() == [20] * 5  # each fold: 20 per quintile
    Y = np.zeros((500, 3), int)
    Y[:, 0] = rng.random(500) < 0.5
    Y[:15, 2] = 1                                                      # the rarest label: 15 rows
    key = stratification_key("multilabel", Y)
    assert (key[:15] == 2).all() and set(key[15:]) <= {0, 3}           # 3 = no positive label
    for _, va in make_folds("multilabel", Y, groups, 5, 0):
        assert Y[va, 2].sum() == 3                                     # the rare label spread evenly


def test_folds_depend_on_subjects_not_row_order():
    rng = np.random.default_rng(2)
    groups = rng.integers(0, 80, 300)
    y = np.column_stack([rng.exponential(100, 300), rng.random(300) < 0.4])
    perm = rng.permutation(300)
    a = cell_folds("survival", y, groups, 5, 3)
    b = cell_folds("survival", y[perm], groups[perm], 5, 3)
    assert _partition(groups, a) == _partition(groups[perm], b)
    for tr, va in a:
        assert not set(groups[tr]) & set(groups[va])
    assert derive_seed(3, "folds") != 3                               # the cell seed is not used raw


def _fusion_data(cohort, tmp_path):
    from benchmark.labels import extract_labels
    from benchmark.model_api import TaskData
    from benchmark.task_registry import select_tasks
    task = select_tasks("oncology/mortality_1y")[0]
    labels = extract_labels(task, cohort).labels.join(cohort.splits, on="subject_id")
    return TaskData(task, cohort, labels, 0, tmp_path)


def _two_trials():
    from benchmark.model_api import BUDGETS
    return dataclasses.replace(BUDGETS["smoke"], n_trials=2)           # n_trials >= 2: a real search


def test_every_family_gets_the_same_folds(small_cohort, tmp_path):
    """One task, one seed: the tabular baseline (stacked rows), the MEHRT probe (label-order
    rows) and a fusion head (label-order rows, CV search) validate on the same subjects, fold by fold."""
    from baselines.tabular import TabularBaseline
    from benchmark.labels import extract_labels
    from benchmark.model_api import BUDGETS, TaskData
    from benchmark.task_registry import select_tasks
    from encoders.mehrt.probe import Probe
    task = select_tasks("oncology/mortality_1y")[0]
    labels = extract_labels(task, small_cohort).labels.join(small_cohort.splits, on="subject_id")
    data = TaskData(task, small_cohort, labels, 0, tmp_path)
    budget = BUDGETS["smoke"]
    base = TabularBaseline("logistic_regression", budget=budget, seed=4, explain=False).fit(data)
    stacked_groups = data.stacked(("train", "tuning"))["subject_id"].to_numpy()
    y = data.y(("train", "tuning"))                                   # the pipeline's rows: label order
    groups = data.samples(("train", "tuning"))["subject_id"].to_numpy()
    assert not np.array_equal(groups, stacked_groups)                 # really two row orders
    reps = {"mean": np.random.default_rng(0).normal(size=(len(y), 4))}
    probe = Probe(task.kind, n_trials=2, n_folds=budget.n_folds, seed=4).fit(reps, y, groups)
    assert len(base.folds_) == budget.n_folds
    assert _partition(stacked_groups, base.folds_) == _partition(groups, probe.folds_)
    from encoders.fusion.estimator import FusionModel
    fusion = FusionModel(head="concat_lr", budget=_two_trials(), seed=4, l1_ratio=0.0).fit(data)
    assert _partition(groups, fusion.folds_) == _partition(groups, probe.folds_)
    assert [t["trial"] for t in fusion.trials_] == [0, 1]
    assert all(len(t["fold_scores"]) == budget.n_folds for t in fusion.trials_)
    best = max(fusion.trials_, key=lambda t: t["cv_score"])
    assert best["cv_score"] == pytest.approx(np.mean(best["fold_scores"]))    # the baselines' rule: mean of folds
    assert fusion.best_trial_["trial"] == best["trial"]
    # the refit on all rows stops at the median point of the folds' ridge paths (3 folds: the middle one)
    assert fusion.estimator_.history_["task"]["best_epoch"] == sorted(f["task"] for f in best["fold_epochs"])[1]


def test_fusion_scaler_never_sees_a_folds_validation_rows(small_cohort, tmp_path, monkeypatch):
    """Planted: the validation rows of fold 0 get huge inputs. Fold 0's scaler must equal the one
    fitted on its training rows of the clean data; the other folds (which train on those rows) move."""
    from encoders.cache import split_rows
    from encoders.fusion import estimator
    from encoders.fusion.inputs import InputConfig, InputScaler
    data = _fusion_data(small_cohort, tmp_path)
    cfg = InputConfig(modalities=("ct",))
    clean, mods, info = estimator.raw_inputs(data, cfg)
    rows = split_rows(data, ("train", "tuning"))
    folds = cell_folds("binary", data.y(("train", "tuning")),
                       data.samples(("train", "tuning"))["subject_id"].to_numpy(), 3, 1)
    planted = {k: v.copy() for k, v in clean.items()}
    va0 = rows[folds[0][1]]
    for k in ("ehr", "ct.mean"):
        planted[k][va0] = planted[k][va0] * 1e6 + 1e6
    monkeypatch.setattr(estimator, "raw_inputs", lambda d, c: (planted, mods, info))
    m = estimator.FusionModel(head="late_fusion", budget=_two_trials(), seed=1, inputs=cfg, max_epochs=8,
                              patience=2).fit(data)
    assert _partition(rows, m.folds_) == _partition(rows, folds)
    for trial in m.trials_:
        for k, ((tr, _), scaler) in enumerate(zip(m.folds_, trial["scalers_"])):
            ref = InputScaler().fit(clean, mods, rows[tr])
            same = all(a.shape == b.shape and np.allclose(a, b) for key in ("ehr", "ct")
                       for a, b in zip(scaler.stats_[key], ref.stats_[key]))
            assert same == (k == 0), k                                  # only fold 0 never trained on them
    # the refit: all train + tuning rows, for the median of the winner's best epochs (no early stopping)
    epochs = sorted(f["task"] for f in m.best_trial_["fold_epochs"])
    assert m.estimator_.history_["task"]["epochs"] == epochs[1] + 1
    assert np.allclose(m.scaler_.stats_["ct"][0], InputScaler().fit(planted, mods, rows).stats_["ct"][0])


# ------------------------------------------------------------------------------------ selection
def test_selection_metric_per_kind_against_references():
    from lifelines.utils import concordance_index
    from sklearn.metrics import mean_absolute_error, roc_auc_score
    rng = np.random.default_rng(3)
    y = (rng.random(200) < 0.3).astype(int)
    s = y + rng.normal(size=200)
    assert selection_score("binary", y, s) == pytest.approx(roc_auc_score(y, s))
    Y = np.column_stack([y, 1 - y, np.zeros(200, int)])              # label 3 has one class: skipped
    S = np.column_stack([s, -s + rng.normal(size=200), rng.random(200)])
    assert selection_score("multilabel", Y, S) == pytest.approx(
        (roc_auc_score(Y[:, 0], S[:, 0]) + roc_auc_score(Y[:, 1], S[:, 1])) / 2)
    t, e = rng.exponential(10, 200), (rng.random(200) < 0.6).astype(float)
    risk = -t + rng.normal(scale=5, size=200)
    assert selection_score("survival", np.column_stack([t, e]), risk) == pytest.approx(
        concordance_index(t, -risk, e), abs=1e-9)
    v, p = rng.normal(size=200), rng.normal(size=200)
    assert selection_score("regression", v, p) == pytest.approx(mean_absolute_error(v, p))
    assert math.isnan(selection_score("binary", np.zeros(5, int), np.arange(5.0)))
    assert gain("mae", 2.0) < gain("mae", 1.0) and gain("auroc", 0.6) > gain("auroc", 0.5)
    assert gain("auroc", math.nan) == -math.inf


def test_probe_regression_selects_by_mae_not_r2():
    """Before: the probe's regression CV objective was R^2; now minus the MAE, like every family."""
    from encoders.mehrt.probe import score
    y, pred = np.array([0.0, 0.0, 0.0, 10.0]), np.array([0.0, 0.0, 0.0, 0.0])
    assert score("regression", y, pred) == pytest.approx(-2.5)
    assert score("binary", np.array([0, 1, 0, 1]), np.array([0.1, 0.9, 0.2, 0.8])) == 1.0
    from encoders.mehrt.probe import Probe
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 3))
    yv = X[:, 0] + rng.normal(scale=0.3, size=120)
    info = Probe("regression", n_trials=4, n_folds=3, seed=0).fit({"r": X}, yv, np.arange(120)).info()
    assert info["cv_metric"] == "mae"
    maes = [v for v in info["cv_scores"]["r"].values() if v is not None]
    assert info["cv_best"] == min(maes) and 0 < info["cv_best"] < np.mean(np.abs(yv - yv.mean()))


def test_fusion_trials_are_chosen_by_the_selection_metric():
    from encoders.fusion.estimator import _beats
    a = {"cv_score": 0.80, "cv_loss": 0.70}
    b = {"cv_score": 0.75, "cv_loss": 0.50}                           # lower loss, worse AUROC
    assert _beats("binary", a, b) and not _beats("binary", b, a)
    assert _beats("regression", {"cv_score": 1.0, "cv_loss": 9.0}, {"cv_score": 2.0, "cv_loss": 1.0})
    nan = {"cv_score": math.nan, "cv_loss": 0.4}
    assert _beats("binary", nan, {"cv_score": math.nan, "cv_loss": 0.5})  # undefined: loss decides


# ------------------------------------------------------------------------------------ Cox / Breslow
def _simulated_survival(n=300, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    X = (X - X.mean(0)) / X.std(0, ddof=1)
    t = rng.exponential(np.exp(-X @ np.array([0.7, -0.4, 0.0])))
    c = rng.exponential(1.5, n)
    return X, np.minimum(t, c), (t <= c).astype(float)


def test_linear_cox_and_breslow_match_lifelines():
    lifelines = pytest.importorskip("lifelines")
    import pandas as pd
    X, time_, event = _simulated_survival()
    df = pd.DataFrame(X, columns=["a", "b", "c"]).assign(T=time_, E=event)
    cph = lifelines.CoxPHFitter().fit(df, "T", "E")                 # no ties: Efron = Breslow
    beta, _ = fit_linear_cox(X, time_, event, 0.0, max_iter=500)
    np.testing.assert_allclose(beta, cph.params_.to_numpy(), atol=2e-4)
    br = Breslow().fit(X @ beta, time_, event)
    ref = cph.baseline_cumulative_hazard_["baseline cumulative hazard"]
    at = np.quantile(time_[event > 0], [0.1, 0.5, 0.9])
    # lifelines' baseline is at the mean covariate, ours at the mean score: the same point
    np.testing.assert_allclose(br.cumulative_hazard(at), ref.reindex(at, method="ffill").to_numpy(), rtol=2e-3)
    surv = br.survival(X[:5] @ beta, at)
    np.testing.assert_allclose(surv, cph.predict_survival_function(df.iloc[:5], times=at).to_numpy().T, atol=2e-3)


def test_cox_gradient_is_the_derivative_of_the_loss():
    _, t, e = _simulated_survival(60, seed=1)
    eta = np.random.default_rng(2).normal(size=60)
    g, h, loss = cox_grad_hess(eta, t, e)
    for k in (0, 17, 41):
        d = np.zeros(60)
        d[k] = 1e-6
        num = (cox_grad_hess(eta + d, t, e)[2] - cox_grad_hess(eta - d, t, e)[2]) / 2e-6
        assert num == pytest.approx(g[k], abs=1e-6)
    assert (h > 0).all()


def test_baselines_and_probes_share_the_cox_code():
    """Ridge Cox (baselines) and the Cox probe solve the same penalized problem through one function."""
    from baselines.cox import RidgeCox
    from encoders.mehrt.probe import cox_fit
    X, t, e = _simulated_survival(200, seed=3)
    C = 0.05
    np.testing.assert_allclose(RidgeCox(C=C, max_iter=150).fit(X, t, e).coef_,
                               cox_fit(X, t, e, penalizer=1.0 / (C * len(X))), atol=1e-8)
