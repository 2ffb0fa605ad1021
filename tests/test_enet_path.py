"""The elastic-net fit of concat_lr's EHR block (encoders.fusion.train.fit_enet_path).

Oracles: scikit-learn's saga elastic-net logistic regression and scikit-survival's coordinate-
descent Coxnet solve the same penalized objectives; a planted sparse signal among many noise
features must be found (and the noise zeroed) where ridge keeps every feature.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encoders.fusion.heads import ConcatLR
from encoders.fusion.losses import cox_ph_loss
from encoders.fusion.train import fit_enet_path


def _linear_head(p: int) -> ConcatLR:
    torch.manual_seed(0)
    return ConcatLR({"ehr_dim": p, "ts_sum_dim": 0, "modalities": {}}, 1, block_scale=False)


def _sparse_problem(n: int, p: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    beta = np.zeros(p)
    beta[:3] = (1.2, -0.9, 0.7)
    return X, beta, X @ beta


def _bce(m, b):
    return torch.nn.functional.binary_cross_entropy_with_logits(m(b)[:, 0], b["y"])


@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
def test_logistic_elastic_net_matches_sklearn(l1_ratio):
    from sklearn.linear_model import LogisticRegression
    X, _, eta = _sparse_problem(400, 20, seed=0)
    y = (np.random.default_rng(1).random(400) < 1 / (1 + np.exp(-eta))).astype(np.float32)
    lam = 0.02
    head = _linear_head(20)
    batch = {"ehr": torch.tensor(X, dtype=torch.float32), "y": torch.tensor(y)}
    hist = fit_enet_path(head, _bce, batch, None, head.l1_masks(), l1_ratio, ridge=0.0,
                         lambdas=[0.2, 0.08, lam], max_iter=3000)
    assert hist["best_lambda"] == pytest.approx(lam)
    ours = head.linear.weight.detach().numpy()[0]
    # sklearn: C * sum(loss) + l1_ratio |w|_1 + (1 - l1_ratio)/2 |w|^2  ==  n C * [mean loss + lam (...)]
    sk = LogisticRegression(solver="saga", l1_ratio=l1_ratio, C=1 / (lam * len(y)),
                            tol=1e-10, max_iter=20000).fit(X, y)
    np.testing.assert_allclose(ours, sk.coef_[0], atol=1e-3)
    assert float(head.linear.bias.detach()[0]) == pytest.approx(float(sk.intercept_[0]), abs=1e-3)
    # exact zeros where sklearn has zeros (the soft-threshold, not a small value)
    assert np.array_equal(ours == 0, np.abs(sk.coef_[0]) < 1e-6)


def test_cox_lasso_matches_scikit_survival_coxnet():
    from sksurv.linear_model import CoxnetSurvivalAnalysis
    from sksurv.util import Surv
    X, _, eta = _sparse_problem(300, 15, seed=2)
    rng = np.random.default_rng(3)
    t = rng.exponential(1 / np.exp(eta))
    c = rng.exponential(2.0, len(t))
    time, event = np.round(np.minimum(t, c), 2) + 0.01, t <= c           # rounded: ties
    lam = 0.05
    head = _linear_head(15)
    batch = {"ehr": torch.tensor(X, dtype=torch.float32), "y": torch.tensor(np.c_[time, event], dtype=torch.float32)}

    def loss(m, b):
        return cox_ph_loss(m(b)[:, 0], b["y"][:, 0], b["y"][:, 1])

    fit_enet_path(head, loss, batch, None, head.l1_masks(), 1.0, ridge=0.0, lambdas=[0.3, lam], max_iter=3000)
    ours = head.linear.weight.detach().numpy()[0]
    # our loss is per event, Coxnet's per subject: the same minimiser at alpha = lam * events / n
    cn = CoxnetSurvivalAnalysis(l1_ratio=1.0, alphas=[lam * event.sum() / len(time)], normalize=False,
                                tol=1e-10, max_iter=200000).fit(X, Surv.from_arrays(event, time))
    np.testing.assert_allclose(ours, cn.coef_[:, 0], atol=1e-3)
    assert np.array_equal(ours == 0, np.abs(cn.coef_[:, 0]) < 1e-8)


def test_several_outputs_share_one_group_per_feature_as_sklearn_multitask_lasso():
    """With several outputs (labels, time bins) a feature is selected for all of them or none:
    the group lasso of sklearn's MultiTaskLasso, (1/2n) |Y - XW|_F^2 + alpha sum_j |W[:, j]|_2."""
    from sklearn.linear_model import MultiTaskLasso
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 12))
    W = np.zeros((3, 12))
    W[:, :2] = rng.normal(size=(3, 2))
    Y = X @ W.T + 0.5 * rng.normal(size=(300, 3))
    torch.manual_seed(0)
    head = ConcatLR({"ehr_dim": 12, "ts_sum_dim": 0, "modalities": {}}, 3, block_scale=False)
    batch = {"ehr": torch.tensor(X, dtype=torch.float32), "y": torch.tensor(Y, dtype=torch.float32)}
    lam = 0.1
    hist = fit_enet_path(head, lambda m, b: 0.5 * ((m(b) - b["y"]) ** 2).sum(1).mean(), batch, None,
                         head.l1_masks(), 1.0, ridge=0.0, lambdas=[1.0, lam], max_iter=3000)
    ours = head.linear.weight.detach().numpy()
    sk = MultiTaskLasso(alpha=lam, tol=1e-10, max_iter=100000).fit(X, Y)
    np.testing.assert_allclose(ours, sk.coef_, atol=1e-3)
    zero_cols = np.all(ours == 0, axis=0)
    assert np.array_equal(zero_cols, np.all(np.abs(sk.coef_) < 1e-8, axis=0)) and zero_cols.sum() >= 5
    assert np.all((ours == 0).all(0) | (ours != 0).all(0))          # whole columns in or out
    assert hist["nonzero"][-1] == int((~zero_cols).sum())           # counted in features


def test_path_finds_a_planted_sparse_signal_that_ridge_spreads():
    """3 true features among 150 on 300 training rows: the path chosen on a tuning split keeps few
    features (all three true ones), the other blocks keep their ridge, and the held-out loss beats
    the ridge path's."""
    from encoders.fusion.train import fit_l2_path
    X, beta, eta = _sparse_problem(1800, 150, seed=4)
    y = (np.random.default_rng(5).random(len(eta)) < 1 / (1 + np.exp(-2 * eta))).astype(np.float32)
    part = {"train": slice(0, 300), "tune": slice(300, 600), "test": slice(600, None)}
    b = {k: {"ehr": torch.tensor(X[s], dtype=torch.float32), "y": torch.tensor(y[s])} for k, s in part.items()}
    ridge = _linear_head(150)
    fit_l2_path(ridge, _bce, b["train"], b["tune"])
    enet = _linear_head(150)
    hist = fit_enet_path(enet, _bce, b["train"], b["tune"], enet.l1_masks(), 0.9, ridge=0.0)
    w = enet.linear.weight.detach().numpy()[0]
    nz = np.flatnonzero(w)
    assert set(range(3)) <= set(nz) and len(nz) < 75, nz
    assert hist["lam_max"] > hist["best_lambda"] and hist["nonzero"][0] <= 1   # the path starts (nearly) empty
    with torch.no_grad():
        l_enet, l_ridge = float(_bce(enet, b["test"])), float(_bce(ridge, b["test"]))
    assert l_enet < l_ridge - 0.01


def test_only_the_masked_block_is_sparse_and_bad_ratio_is_refused():
    torch.manual_seed(0)
    spec = {"ehr_dim": 30, "ts_sum_dim": 0, "modalities": {"ct": (4, 1)}}
    head = ConcatLR(spec, 1)
    mask = head.l1_masks()["linear.weight"]
    assert mask[:, :30].all() and not mask[:, 30:].any()
    rng = np.random.default_rng(6)
    n = 400
    b = {"ehr": torch.tensor(rng.normal(size=(n, 30)), dtype=torch.float32),
         "ct.mean": torch.tensor(rng.normal(size=(n, 4)), dtype=torch.float32),
         "ct.present": torch.ones(n, dtype=torch.bool)}
    b["y"] = (torch.rand(n, generator=torch.Generator().manual_seed(0)) < torch.sigmoid(2 * b["ct.mean"][:, 0])).float()
    fit_enet_path(head, _bce, b, None, head.l1_masks(), 1.0, ridge=1e-3, lambdas=[1.0])
    w = head.linear.weight.detach()[0]
    assert torch.all(w[:30] == 0) and torch.all(w[30:34] != 0)   # huge lam: EHR block empty, ct block ridge
    with pytest.raises(ValueError, match="l1_ratio"):
        fit_enet_path(head, _bce, b, None, head.l1_masks(), 0.0, ridge=0.0)


def test_search_trials_are_distinct_configurations():
    """Random search never spends a trial on a configuration it already tried (concat_lr's space has
    three modality-dropout values: the defaults (0.15) and the other two, then it stops)."""
    from encoders.fusion.estimator import _sample_trials
    from encoders.fusion.heads import HEADS
    SEARCH_SPACES = {name: cls.search_space for name, cls in HEADS.items()}
    trials = _sample_trials("concat_lr", 10, seed=0)
    assert trials[0] == {} and sorted(t["modality_dropout"] for t in trials[1:]) == [0.0, 0.3]
    for head in ("late_fusion", "cross_attention"):
        drawn = _sample_trials(head, 30, seed=1)
        assert len(drawn) == 30 and len({tuple(sorted(t.items())) for t in drawn[1:]}) == 29
        assert all(set(t) == set(SEARCH_SPACES[head]) for t in drawn[1:])


@pytest.mark.slow  # about 2 minutes on 2 cores: make test-slow
def test_concat_lr_runs_the_elastic_net_once_on_the_winning_trial(default_cohort):
    """On MACE (a 3-feature structured signal among ~250) the elastic net wins the tuning loss, keeps
    a handful of EHR weights, and the prediction says so; l1_ratio=0 is the plain ridge fit."""
    from benchmark.labels import extract_labels
    from benchmark.model_api import BUDGETS
    from benchmark.runner import task_data
    from benchmark.task_registry import load_tasks
    from encoders.fusion.estimator import FusionModel
    task = load_tasks()["survival/mace"]
    data = task_data(task, default_cohort, 0, extract_labels(task, default_cohort).labels)
    m = FusionModel(head="concat_lr", budget=BUDGETS["default"], seed=0).fit(data)
    assert [t["trial"] for t in m.trials_] == [0, 1, 2, "elastic_net"]
    info = m.predict(data, "held_out").info["ehr_elastic_net"]
    assert info["kept"] and 0 < info["nonzero_ehr_features"] < 0.2 * info["ehr_features"]
    assert m.trials_[-1]["cv_loss"] < min(t["cv_loss"] for t in m.trials_[:-1])
    ridge = FusionModel(head="concat_lr", budget=BUDGETS["smoke"], seed=0, l1_ratio=0.0).fit(data)
    assert "ehr_elastic_net" not in ridge.predict(data, "held_out").info
