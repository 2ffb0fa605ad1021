"""Shared hyperparameter search: subject-grouped K-fold random search with early stopping.

The search is library-agnostic. It gets a learner factory (`make(params, n_iter) -> Learner`), the
candidate configurations (baselines.spaces.draw_trials), the training matrix (train + tuning
splits), and folds, and returns the best configuration by the task kind's selection metric:

    binary      AUROC                        (higher is better)
    multilabel  macro AUROC over the labels with both classes in the validation fold
    survival    Harrell's C-index of the risk score
    regression  MAE                          (lower is better)

The cross-validated score of a configuration is the mean of its per-fold scores (folds where the
metric is undefined, e.g. one class, are skipped). Boosting learners early-stop on the validation
fold; the number of rounds used for the final refit is the mean best round over the folds (per
label for multilabel). That makes the CV score slightly optimistic, equally for every trial, so it
is fine for choosing between trials; it is not a test estimate. The out-of-fold scores of the
chosen configuration are kept: they are honest predictions for the train and tuning rows.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from benchmark.metrics.binary import DegenerateInputError, auroc
from benchmark.metrics.regression import mae
from benchmark.metrics.survival import c_index_harrell

SELECTION_METRIC = {"binary": "auroc", "multilabel": "auroc_macro", "survival": "c_index_harrell",
                    "regression": "mae"}
LOWER_IS_BETTER = {"mae"}


class Learner(Protocol):
    """What the search needs from a learner (see baselines.tabular)."""

    n_iter_: Any  # rounds used (int), per-label list, or None for non-iterative learners

    def fit(self, X: np.ndarray, y: np.ndarray, eval_set: tuple[np.ndarray, np.ndarray] | None = None) -> "Learner": ...

    def score(self, X: np.ndarray) -> np.ndarray: ...


@dataclass
class SearchResult:
    """Outcome of a random search.

    Attributes:
        metric: selection metric name.
        best_params: the chosen configuration.
        best_score: its mean CV score.
        best_index: index of the chosen trial.
        n_iter: boosting rounds for the refit (int, per-label list, or None).
        oof: out-of-fold scores of the chosen configuration, rows as in X.
        trials: per trial: params, cv_score, fold_scores, n_iter.
    """

    metric: str
    best_params: dict[str, Any]
    best_score: float
    best_index: int
    n_iter: Any
    oof: np.ndarray
    trials: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """JSON-able summary for Prediction.info.

        Returns:
            dict with metric, cv_score, trials (params and score of each).
        """
        trials = [{"params": t["params"], "cv_score": _jsonable(t["cv_score"])} | ({"error": t["error"]} if "error" in t
                                                                                   else {}) for t in self.trials]
        return {"metric": self.metric, "cv_score": _jsonable(self.best_score), "best_trial": self.best_index,
                "trials": trials}


def _jsonable(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def make_folds(kind: str, y: np.ndarray, groups: np.ndarray, n_folds: int,
               seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Subject-grouped K folds (no subject in both sides), stratified where that is possible.

    Binary tasks stratify on the label, survival tasks on the event indicator (StratifiedGroupKFold);
    multilabel and regression tasks, and any task whose rarer class has fewer groups than folds, use a
    shuffled GroupKFold.

    Args:
        kind: task kind.
        y: targets in the task kind's layout (binary [n], multilabel [n, L], survival [n, 2], regression [n]).
        groups: subject id of each row.
        n_folds: requested number of folds; capped at the number of subjects.
        seed: shuffling seed.

    Returns:
        list of (train_index, validation_index) arrays.
    """
    n_groups = len(np.unique(groups))
    k = min(int(n_folds), n_groups)
    if k < 2:
        raise ValueError(f"need at least 2 subjects for cross-validation, got {n_groups}")
    strat = None
    if kind == "binary":
        strat = np.asarray(y).astype(int)
    elif kind == "survival":
        strat = np.asarray(y)[:, 1].astype(int)
    idx = np.arange(len(groups))
    if strat is not None:
        per_class = [len(np.unique(groups[strat == c])) for c in np.unique(strat)]
        if len(per_class) == 2 and min(per_class) >= k:
            cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
            return [(tr, va) for tr, va in cv.split(idx, strat, groups)]
    cv = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in cv.split(idx, None, groups)]


def selection_score(kind: str, y: np.ndarray, score: np.ndarray) -> float:
    """The selection metric of one validation fold; NaN where it is undefined.

    Args:
        kind: task kind.
        y: fold targets.
        score: fold scores (probability, risk or value).

    Returns:
        AUROC, macro AUROC, Harrell's C or MAE (NaN if undefined, e.g. one class).
    """
    try:
        if kind == "binary":
            return float(auroc(y, score))
        if kind == "multilabel":
            vals = [float(auroc(y[:, j], score[:, j])) for j in range(y.shape[1]) if len(np.unique(y[:, j])) == 2]
            return float(np.mean(vals)) if vals else math.nan
        if kind == "survival":
            return float(c_index_harrell(y[:, 0], y[:, 1].astype(bool), score))
        return float(mae(y, score))
    except DegenerateInputError:
        return math.nan


def is_better(metric: str, a: float, b: float) -> bool:
    """True if score a beats score b under `metric` (NaN never wins)."""
    if not math.isfinite(a):
        return False
    if not math.isfinite(b):
        return True
    return a < b if metric in LOWER_IS_BETTER else a > b


def _mean_iters(values: list[Any]) -> Any:
    """Mean rounds over folds: int for single learners, elementwise for per-label lists."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    if isinstance(vals[0], list):
        return [_mean_iters([v[j] for v in vals]) for j in range(len(vals[0]))]
    return max(1, int(round(float(np.mean(vals)))))


def random_search(make: Callable[[dict[str, Any], Any], Learner], trials: list[dict[str, Any]], X: np.ndarray,
                  y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], kind: str) -> SearchResult:
    """Evaluate each configuration by K-fold CV and pick the best.

    Args:
        make: learner factory, make(params, n_iter) (n_iter None = the config's own round count).
        trials: configurations to evaluate, in order (ties keep the earlier one).
        X: features of the train + tuning rows.
        y: targets of those rows.
        folds: (train_index, validation_index) pairs from make_folds.
        kind: task kind.

    Returns:
        SearchResult with the chosen configuration, its CV score, rounds and out-of-fold scores.
    """
    metric = SELECTION_METRIC[kind]
    best: SearchResult | None = None
    records = []
    errors: list[Exception] = []
    for i, params in enumerate(trials):
        oof = np.full((len(X), y.shape[1]) if kind == "multilabel" else len(X), np.nan)
        scores, iters = [], []
        rec: dict[str, Any] = {"params": params}
        try:
            for tr, va in folds:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # convergence chatter of extreme configurations
                    learner = make(params, None).fit(X[tr], y[tr], eval_set=(X[va], y[va]))
                    s = learner.score(X[va])
                oof[va] = s
                scores.append(selection_score(kind, y[va], s))
                iters.append(learner.n_iter_)
        except Exception as e:  # noqa: BLE001 - a configuration the library rejects loses, the search goes on
            errors.append(e)
            rec["error"] = f"{type(e).__name__}: {e}"[:300]
            scores = []
        finite = [s for s in scores if math.isfinite(s)]
        cv = float(np.mean(finite)) if finite else math.nan
        rec.update({"cv_score": cv, "fold_scores": scores, "n_iter": _mean_iters(iters)})
        records.append(rec)
        if "error" not in rec and (best is None or is_better(metric, cv, best.best_score)):
            best = SearchResult(metric, params, cv, i, rec["n_iter"], oof)
    if best is None:
        raise errors[0]
    best.trials = records
    return best
