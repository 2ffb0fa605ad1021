"""The shared tabular baseline: one wrapper for CatBoost, XGBoost, LightGBM, random forest and
logistic regression on bag-of-events features (MEHRT paper, OpenReview ywFxZhMnuB, appendix B.1).

    model = TabularBaseline("catboost", budget=BUDGETS["default"], seed=0)   # a setup of baselines.spaces
    model.fit(data)                         # random search + refit on train + tuning
    model.predict(data, "held_out")         # Prediction(score, surv_times, surv_prob, info)

Layers, bottom up (one module each):
  * cox.py: signed-time labels and LightGBM's custom objective, and the ridge Cox of the linear
    baseline, on the shared partial likelihood and Breslow hazard of benchmark.learn.cox;
  * learners.py: one small class per library with fit(X, y, eval_set) / score(X) / n_iter_, for
    each task kind; `OneVsRest` turns any of them into a multilabel learner;
  * spaces.py: the setups (library, search space, trial 0, early stopping, feature set) by name;
  * tuning.py: `fit_tuned`, random search over baselines.spaces with the shared subject-grouped
    folds and selection metric (benchmark.learn), then a refit of the best configuration on all rows;
  * explain.py: SHAP / importances of a fitted learner;
  * tabular.py (this file): `TabularBaseline`, features, targets and splits from a TaskData,
    predictions, info, explanations.

Score conventions (benchmark.model_api): binary P(y=1); multilabel P(label) [n, L]; survival the log
relative hazard (higher = earlier event) with Breslow survival curves; regression the value.
Predictions for the train and tuning splits are the out-of-fold CV scores of the chosen
configuration (honest, e.g. for choosing a threshold); held-out predictions come from the refit.

Every learner runs with at most `threads` (default 2) threads and a seed derived from the cell
seed, so a rerun gives identical predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from baselines.cox import survival_grid
from baselines.explain import explain_learner
from baselines.learners import SUPPORTED_KINDS
from baselines.spaces import setup_of
from baselines.tuning import fit_tuned
from benchmark.features.bag_of_events import featurize
from benchmark.kinds import kind_of
from benchmark.learn.cox import Breslow
from benchmark.learn.folds import cell_folds, derive_seed
from benchmark.model_api import Budget, Prediction, TaskData
from benchmark.vocabulary import FIT_SPLITS, SPLITS


# ----------------------------------------------------------------------------------- data helpers
def dense(X) -> np.ndarray:
    """CSR or array -> dense float32 C-contiguous array (absent counts are 0)."""
    return np.ascontiguousarray(X.toarray() if sp.issparse(X) else X, dtype=np.float32)


def split_rows(data: TaskData, split: str | tuple[str, ...]) -> list[str]:
    """The split names of a split argument, validated."""
    splits = [split] if isinstance(split, str) else list(split)
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ValueError(f"unknown split(s) {bad}; expected {SPLITS}")
    return splits


def in_label_order(data: TaskData, splits: list[str], parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate per-split arrays and reorder them to TaskData.samples(splits) order.

    (TaskData.frame(tuple) keeps label order, while per-split blocks stack split after split.)
    """
    if len(splits) == 1:
        return parts[0]
    lab = data.labels.with_row_index("_row")
    rows = np.concatenate([lab.filter(pl.col("split") == s)["_row"].to_numpy() for s in splits])
    return np.concatenate(parts, axis=0)[np.argsort(rows, kind="stable")]


def stacked_targets(data: TaskData, splits=FIT_SPLITS) -> tuple[np.ndarray, np.ndarray]:
    """Targets and subject ids of several splits, stacked split after split (TaskData.stacked order,
    like BagOfEvents.stacked).

    Returns:
        (y, groups)
    """
    return data.y(splits, stacked=True), data.stacked(splits)["subject_id"].to_numpy()


def n_labels_of(data: TaskData) -> int | None:
    """Number of labels of a multilabel task, else None."""
    return len(data.task.label_names()) if data.task.kind_obj.multi_output else None


# ----------------------------------------------------------------------------------- the model
class TabularBaseline:
    """A tuned tabular model on bag-of-events features (the object a baseline's factory returns).

    Args:
        setup: a key of baselines.spaces.SETUPS: the paper's catboost | xgboost | random_forest |
            logistic_regression (Tables B1-B4, B.1 features), ours lightgbm, or the *_tuned variants.
        budget: search budget (trials, folds, rounds cap).
        seed: the cell seed (folds, trials and model seeds derive from it).
        threads: threads for the library (default: 2, or the worker's share under `run --jobs K` /
            Ray, benchmark.parallel.thread_budget(): K cells must not oversubscribe the cores).
        explain: add explanations to held-out predictions.
    """

    def __init__(self, setup: str, budget: Budget, seed: int = 0, threads: int | None = None, explain: bool = True):
        from benchmark.parallel import thread_budget
        self.setup = setup
        self.library = setup_of(setup).library
        self.feature_set = setup_of(setup).feature_set
        self.budget = budget
        self.seed = seed
        self.threads = threads if threads is not None else min(2, thread_budget())
        self.explain = explain

    def fit(self, data: TaskData) -> "TabularBaseline":
        """Featurize, search hyperparameters with subject-grouped CV on train + tuning, refit the best.

        Args:
            data: the task's samples (only train and tuning targets are read).

        Returns:
            self
        """
        kind = data.task.kind
        if kind not in SUPPORTED_KINDS[self.library]:
            raise ValueError(f"{self.library} does not support {kind} tasks")
        boe = featurize(data, feature_set=self.feature_set)
        X = dense(boe.stacked(FIT_SPLITS))
        y, groups = stacked_targets(data)
        self.folds_ = folds = cell_folds(kind, y, groups, self.budget.n_folds, self.seed)
        self.tuned_ = fit_tuned(self.setup, kind, X, y, folds, self.budget, self.seed, threads=self.threads,
                                n_labels=n_labels_of(data))
        self.feature_names_ = list(boe.names)
        self.n_rows_ = {"train": data.frame("train").height, "tuning": data.frame("tuning").height}
        if kind_of(kind).time_to_event:
            eta = self.tuned_.model.score(X)
            self.breslow_ = Breslow().fit(eta, y[:, 0], y[:, 1])
            self.surv_times_ = survival_grid(y[:, 0], y[:, 1])
        return self

    def _held_out_X(self, data: TaskData) -> np.ndarray:
        return dense(featurize(data, feature_set=self.feature_set).block("held_out"))  # disk-cached by featurize

    def _scores(self, data: TaskData, split: str) -> np.ndarray:
        if split == "held_out":
            return self.tuned_.model.score(self._held_out_X(data))
        oof = self.tuned_.search.oof
        n_tr = self.n_rows_["train"]
        return oof[:n_tr] if split == "train" else oof[n_tr:]

    def predict(self, data: TaskData, split: str | tuple[str, ...]) -> Prediction:
        """Scores for a split: the refit model on held_out, out-of-fold CV scores on train/tuning.

        Args:
            data: the same TaskData as in fit.
            split: a split name or a tuple of them.

        Returns:
            Prediction aligned with data.samples(split); survival adds Breslow curves (held_out);
            info has hyperparameters, CV score, size and (held_out) explanations.
        """
        splits = split_rows(data, split)
        score = in_label_order(data, splits, [self._scores(data, s) for s in splits])
        t = self.tuned_
        info: dict[str, Any] = {
            "library": self.library,
            "hyperparameters": t.hyperparameters() | {"feature_set": self.feature_set},
            "search_space": setup_of(self.setup).source,
            "cv_metric": t.search.metric,
            "cv_score": t.search.summary()["cv_score"],
            "search": t.search.summary() | {"n_folds": self.budget.n_folds, "n_trials": self.budget.n_trials},
            "n_parameters": t.model.size(),
            "n_features": len(self.feature_names_),
            "modalities_used": ["structured"],
            "prediction_source": ("refit on train+tuning" if splits == ["held_out"]
                                  else "out-of-fold CV scores (train/tuning), refit (held_out)"),
        }
        surv_times = surv_prob = None
        if data.task.kind_obj.time_to_event and splits == ["held_out"] and len(self.surv_times_) >= 2:
            surv_times = self.surv_times_
            surv_prob = self.breslow_.survival(score, surv_times)
        if self.explain and splits == ["held_out"]:
            info["explanations"] = explain_learner(t.model, self._held_out_X(data), self.feature_names_,
                                                   data.cohort.codes(), seed=derive_seed(self.seed, "explain"))
        return Prediction(score=score, surv_times=surv_times, surv_prob=surv_prob, info=info)


def factory_for(setup: str):
    """The ModelSpec factory of one setup: factory(budget=Budget, seed=int) -> TabularBaseline."""
    setup_of(setup)  # an unknown name fails at registration, not at the first run

    def factory(budget: Budget, seed: int = 0) -> TabularBaseline:
        return TabularBaseline(setup, budget=budget, seed=seed)

    factory.__name__ = f"{setup}_factory"
    return factory
