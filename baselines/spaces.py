"""Hyperparameter search spaces of the tabular baselines, and the setup each registered baseline uses.

The MEHRT paper (Multimodal EHR transformer, OpenReview ywFxZhMnuB) lists one search space per
baseline in appendix B.3, Tables B1-B4; `CATBOOST`, `XGBOOST`, `RANDOM_FOREST` and
`LOGISTIC_REGRESSION` are those tables, parameter for parameter (nothing added), and the registered
`catboost`, `xgboost`, `random_forest`, `logistic_regression` models (and their late-fusion
ensembles) search them without early stopping, on the B.1 features. The paper names no other knob,
so every other setting stays at the library's default.

Ours, labelled as ours: `LIGHTGBM` (the paper has no LightGBM table) and the `*_TUNED` spaces (more
rounds, narrower learning rates, extra regularizers, early stopping, the "extended" features), which
the registered `catboost_tuned`, `xgboost_tuned`, `random_forest_tuned` and
`logistic_regression_tuned` models search; they are what these four baselines were before they
followed the paper.

A space maps a parameter name to a typed distribution (benchmark.learn.search: UniformInt (both
ends included), LogUniform, Uniform, Choice); `draw_trials` turns a setup into the list of
configurations a random search evaluates. Trial 0 is always the setup's `defaults` point, so even a
one-trial budget gets a sane model; trials 1..n-1 are independent random draws. Sampling goes
through scipy.stats with a numpy Generator derived from the cell seed, so a rerun draws the same
configurations.

The budget still applies on top of every space: `Budget.n_trials` configurations are drawn (the
paper does not say how many it drew), and boosting rounds / trees (`iterations`, `n_estimators`) are
capped at `Budget.max_iterations` when the learner is built (baselines.learners), not here (smoke:
60, so the paper's 5-125 range is cut at 60 there; default: 300, no cut).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmark.features.bag_of_events import EXTENDED, PAPER_B1
from benchmark.learn import search
from benchmark.learn.search import Choice, Distribution, LogUniform, Uniform, UniformInt

PAPER = "MEHRT paper (OpenReview ywFxZhMnuB), appendix B.3"

# ------------------------------------------------------------------ the paper's tables (appendix B.3)
# Table B1: CatBoost (number of estimators, max depth, learning rate, L2 regularization).
CATBOOST = {
    "iterations": UniformInt(5, 125),
    "depth": UniformInt(2, 12),
    "learning_rate": LogUniform(1e-5, 1.0),
    "l2_leaf_reg": LogUniform(1.0, 10.0),
}
# Table B2: XGBoost (number of estimators, max depth, alpha = L1, lambda = L2, learning rate).
XGBOOST = {
    "n_estimators": UniformInt(5, 125),
    "max_depth": UniformInt(1, 10),
    "reg_alpha": LogUniform(1e-16, 1e2),
    "reg_lambda": LogUniform(1e-16, 1e2),
    "learning_rate": LogUniform(1e-7, 1.0),
}
# Table B3: random forest (number of estimators, max depth).
RANDOM_FOREST = {
    "n_estimators": UniformInt(5, 100),
    "max_depth": UniformInt(2, 12),
}
# Table B4: logistic regression (inverse regularization C, twenty decades).
LOGISTIC_REGRESSION = {
    "C": LogUniform(1e-10, 1e10),
}

# ------------------------------------------------------------------ ours
# No table in the MEHRT paper: the usual LightGBM knobs, ranges as wide as XGBOOST_TUNED's.
LIGHTGBM = {
    "num_leaves": UniformInt(8, 128),
    "learning_rate": LogUniform(0.01, 0.3),
    "min_child_samples": UniformInt(5, 100),
    "subsample": Uniform(0.5, 1.0),
    "colsample_bytree": Uniform(0.5, 1.0),
    "reg_lambda": LogUniform(1e-3, 10.0),
    "n_estimators": UniformInt(100, 1000),
}
# The richer setups the baselines had before they followed the paper (early stopping on the fold).
CATBOOST_TUNED = {
    "depth": UniformInt(4, 8),
    "learning_rate": LogUniform(0.01, 0.3),
    "l2_leaf_reg": LogUniform(1.0, 10.0),
    "iterations": UniformInt(100, 1000),
}
XGBOOST_TUNED = {
    "max_depth": UniformInt(3, 10),
    "learning_rate": LogUniform(0.01, 0.3),
    "subsample": Uniform(0.5, 1.0),
    "colsample_bytree": Uniform(0.5, 1.0),
    "min_child_weight": LogUniform(1.0, 10.0),
    "n_estimators": UniformInt(100, 1000),
}
RANDOM_FOREST_TUNED = {
    "n_estimators": UniformInt(100, 500),
    "max_depth": Choice((None, 5, 10, 20)),
    "min_samples_leaf": UniformInt(1, 20),
    "max_features": Choice(("sqrt", "log2", 0.3)),
}
LOGISTIC_REGRESSION_TUNED = {
    "C": LogUniform(1e-10, 1e10),
    "solver": Choice(("saga", "liblinear")),
    "penalty": Choice(("l1", "l2")),
}


@dataclass(frozen=True)
class Setup:
    """How one registered baseline searches: library, space, trial 0, early stopping, features.

    Attributes:
        library: the learner (baselines.learners.LIBRARIES).
        space: parameter -> distribution.
        defaults: trial 0 (inside `space`).
        early_stopping: stop boosting on the validation fold (30 rounds patience) and refit with the
            folds' mean best round; False = every configuration trains its own round count.
        feature_set: bag-of-events feature set (benchmark.features.bag_of_events.FEATURE_SETS).
        source: where the space comes from (the paper's table, or "ours").
    """

    library: str
    space: dict[str, Distribution]
    defaults: dict[str, Any]
    early_stopping: bool
    feature_set: str
    source: str


# Trial 0 of the paper's setups: the library's default where it lies inside the table, else the
# nearest point inside it (CatBoost's 1000 iterations and XGBoost's and scikit-learn's 100 trees
# -> 125 / 100; XGBoost's alpha = 0 -> 1e-16, the table's floor; random forest's unlimited depth ->
# 12, the table's top). CatBoost's learning rate is chosen automatically by the library; 0.1 is
# about what it picks for ~100 rounds on a few thousand rows.
SETUPS: dict[str, Setup] = {
    "catboost": Setup("catboost", CATBOOST, {"iterations": 125, "depth": 6, "learning_rate": 0.1, "l2_leaf_reg": 3.0},
                      False, PAPER_B1, f"{PAPER}, Table B1"),
    "xgboost": Setup("xgboost", XGBOOST, {"n_estimators": 100, "max_depth": 6, "reg_alpha": 1e-16, "reg_lambda": 1.0,
                                          "learning_rate": 0.3}, False, PAPER_B1, f"{PAPER}, Table B2"),
    "random_forest": Setup("random_forest", RANDOM_FOREST, {"n_estimators": 100, "max_depth": 12}, False, PAPER_B1,
                           f"{PAPER}, Table B3"),
    "logistic_regression": Setup("logistic_regression", LOGISTIC_REGRESSION, {"C": 1.0}, False, PAPER_B1,
                                 f"{PAPER}, Table B4"),
    "lightgbm": Setup("lightgbm", LIGHTGBM, {"num_leaves": 31, "learning_rate": 0.05, "min_child_samples": 20,
                                            "subsample": 0.8, "colsample_bytree": 0.8, "reg_lambda": 1e-3,
                                            "n_estimators": 1000}, True, EXTENDED, "ours (no LightGBM table in the paper)"),
    # trial 0: the library defaults, rounds set high and left to the budget cap plus early stopping
    "catboost_tuned": Setup("catboost", CATBOOST_TUNED,
                            {"depth": 6, "learning_rate": 0.05, "l2_leaf_reg": 3.0, "iterations": 1000},
                            True, EXTENDED, "ours"),
    "xgboost_tuned": Setup("xgboost", XGBOOST_TUNED,
                           {"max_depth": 6, "learning_rate": 0.05, "subsample": 0.8, "colsample_bytree": 0.8,
                            "min_child_weight": 1.0, "n_estimators": 1000}, True, EXTENDED, "ours"),
    "random_forest_tuned": Setup("random_forest", RANDOM_FOREST_TUNED,
                                 {"n_estimators": 500, "max_depth": None, "min_samples_leaf": 1, "max_features": "sqrt"},
                                 False, EXTENDED, "ours"),
    "logistic_regression_tuned": Setup("logistic_regression", LOGISTIC_REGRESSION_TUNED,
                                       {"C": 1.0, "solver": "liblinear", "penalty": "l2"}, False, EXTENDED, "ours"),
}
# the paper's four baselines (the late-fusion ensembles use these setups too)
PAPER_SETUPS = ("catboost", "xgboost", "random_forest", "logistic_regression")

SPACES: dict[str, dict[str, Distribution]] = {name: s.space for name, s in SETUPS.items()}
DEFAULTS: dict[str, dict[str, Any]] = {name: s.defaults for name, s in SETUPS.items()}


def setup_of(name: str) -> Setup:
    """The setup of a registered baseline name (a key of SETUPS); ValueError naming the choices."""
    if name not in SETUPS:
        raise ValueError(f"unknown baseline setup {name!r}: choose one of {sorted(SETUPS)}")
    return SETUPS[name]


def draw_trials(name: str, n_trials: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """The configurations a random search over a setup's space evaluates.

    Args:
        name: a key of SETUPS (a registered baseline's name, e.g. "catboost", "catboost_tuned").
        n_trials: number of configurations (>= 1).
        rng: numpy Generator (seeded from the cell seed).

    Returns:
        [DEFAULTS[name], sample, sample, ...] of length n_trials (benchmark.learn.search.draw_trials).
    """
    s = setup_of(name)
    return search.draw_trials(s.space, s.defaults, n_trials, rng)
