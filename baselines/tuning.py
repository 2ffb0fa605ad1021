"""Tuning and refit of a tabular learner: random search over a setup of baselines.spaces (space,
trial 0, early stopping or not) with the shared subject-grouped folds and selection metric
(benchmark.learn), then a refit of the best configuration on all rows.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from baselines.learners import make_learner
from baselines.spaces import draw_trials, setup_of
from benchmark.learn.folds import derive_seed
from benchmark.learn.search import SearchResult, random_search
from benchmark.model_api import Budget


@dataclass
class Tuned:
    """A searched and refitted learner."""

    library: str
    setup: str
    kind: str
    search: SearchResult
    model: Any
    params: dict[str, Any]

    def hyperparameters(self) -> dict[str, Any]:
        """Chosen configuration plus the rounds actually used in the refit."""
        out = dict(self.params)
        it = self.search.n_iter
        if it is not None and not (isinstance(it, list) and all(v is None for v in it)):
            out["rounds_used"] = it
        return out


def fit_tuned(setup: str, kind: str, X: np.ndarray, y: np.ndarray, folds, budget: Budget, seed: int,
              *, threads: int = 2, n_labels: int | None = None, tag: str = "") -> Tuned:
    """Random search (budget.n_trials configurations, CV over `folds`), then refit the best on all rows.

    Args:
        setup: a key of baselines.spaces.SETUPS (e.g. "catboost" = the paper's Table B1,
            "catboost_tuned" = ours); it names the library, space, trial 0 and early stopping.
        kind: task kind.
        X: [n, p] features (train + tuning rows).
        y: targets of those rows.
        folds: from benchmark.learn.folds.cell_folds.
        budget: trials and rounds cap.
        seed: the cell seed.
        threads: library thread count.
        n_labels: multilabel label count.
        tag: extra seed label (late fusion: the modality), so sub-models draw different trials.

    Returns:
        Tuned with the search result and the refitted learner.
    """
    s = setup_of(setup)
    library = s.library  # seeds derive from the library, so a setup's draws do not depend on its name
    trials = draw_trials(setup, budget.n_trials, np.random.default_rng(derive_seed(seed, library, tag, "trials")))
    model_seed = derive_seed(seed, library, tag, "model")

    def make(params, n_iter):
        return make_learner(library, kind, params, seed=model_seed, threads=threads,
                            max_iterations=budget.max_iterations, n_iter=n_iter, n_labels=n_labels,
                            early_stopping=s.early_stopping)

    res = random_search(make, trials, X, y, folds, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        final = make(res.best_params, res.n_iter).fit(X, y)
    return Tuned(library, setup, kind, res, final, res.best_params)
