"""Hyperparameter search spaces of the tabular baselines (MEHRT paper, OpenReview ywFxZhMnuB, appendix Tables B1-B4).

A space maps a parameter name to a typed distribution (benchmark.learn.search: UniformInt,
LogUniform, Uniform, Choice); `draw_trials` turns a space into the list of configurations a
random search evaluates. Trial 0 is always the space's `DEFAULTS` point (a
library-default-like configuration), so even a one-trial budget gets a sane model; trials 1..n-1
are independent random draws. Sampling goes through scipy.stats with a numpy Generator derived
from the cell seed, so a rerun draws the same configurations.

Boosting-round parameters (`iterations`, `n_estimators`) are capped by `Budget.max_iterations`
when the learner is built (see baselines.tabular), not here: the space stays the paper's.
LightGBM's space is ours (the seed paper has no LightGBM table); see baselines/README.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.learn import search
from benchmark.learn.search import Choice, Distribution, LogUniform, Uniform, UniformInt

# Table B1: CatBoost.
CATBOOST = {
    "depth": UniformInt(4, 8),
    "learning_rate": LogUniform(0.01, 0.3),
    "l2_leaf_reg": LogUniform(1.0, 10.0),
    "iterations": UniformInt(100, 1000),
}
# Table B2: XGBoost.
XGBOOST = {
    "max_depth": UniformInt(3, 10),
    "learning_rate": LogUniform(0.01, 0.3),
    "subsample": Uniform(0.5, 1.0),
    "colsample_bytree": Uniform(0.5, 1.0),
    "min_child_weight": LogUniform(1.0, 10.0),
    "n_estimators": UniformInt(100, 1000),
}
# Table B3: random forest. (n_estimators is capped by Budget.max_iterations too.)
RANDOM_FOREST = {
    "n_estimators": UniformInt(100, 500),
    "max_depth": Choice((None, 5, 10, 20)),
    "min_samples_leaf": UniformInt(1, 20),
    "max_features": Choice(("sqrt", "log2", 0.3)),
}
# Table B4: logistic regression on standardized features. C spans twenty decades, as in the paper.
LOGISTIC_REGRESSION = {
    "C": LogUniform(1e-10, 1e10),
    "solver": Choice(("saga", "liblinear")),
    "penalty": Choice(("l1", "l2")),
}
# Ours (no table in MEHRT paper, OpenReview ywFxZhMnuB): the usual LightGBM knobs, ranges as wide as XGBoost's.
LIGHTGBM = {
    "num_leaves": UniformInt(8, 128),
    "learning_rate": LogUniform(0.01, 0.3),
    "min_child_samples": UniformInt(5, 100),
    "subsample": Uniform(0.5, 1.0),
    "colsample_bytree": Uniform(0.5, 1.0),
    "reg_lambda": LogUniform(1e-3, 10.0),
    "n_estimators": UniformInt(100, 1000),
}

SPACES: dict[str, dict[str, Distribution]] = {
    "catboost": CATBOOST,
    "xgboost": XGBOOST,
    "lightgbm": LIGHTGBM,
    "random_forest": RANDOM_FOREST,
    "logistic_regression": LOGISTIC_REGRESSION,
}

# Trial 0 of every search: the library defaults (inside each space), rounds set high and left to
# the budget cap plus early stopping.
DEFAULTS: dict[str, dict[str, Any]] = {
    "catboost": {"depth": 6, "learning_rate": 0.05, "l2_leaf_reg": 3.0, "iterations": 1000},
    "xgboost": {"max_depth": 6, "learning_rate": 0.05, "subsample": 0.8, "colsample_bytree": 0.8,
                "min_child_weight": 1.0, "n_estimators": 1000},
    "lightgbm": {"num_leaves": 31, "learning_rate": 0.05, "min_child_samples": 20, "subsample": 0.8,
                 "colsample_bytree": 0.8, "reg_lambda": 1e-3, "n_estimators": 1000},
    "random_forest": {"n_estimators": 500, "max_depth": None, "min_samples_leaf": 1, "max_features": "sqrt"},
    "logistic_regression": {"C": 1.0, "solver": "liblinear", "penalty": "l2"},
}


def draw_trials(library: str, n_trials: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """The configurations a random search over `library`'s space evaluates.

    Args:
        library: a key of SPACES.
        n_trials: number of configurations (>= 1).
        rng: numpy Generator (seeded from the cell seed).

    Returns:
        [DEFAULTS[library], sample, sample, ...] of length n_trials (benchmark.learn.search.draw_trials).
    """
    return search.draw_trials(SPACES[library], DEFAULTS[library], n_trials, rng)
