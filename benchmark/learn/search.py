"""Random search over typed distributions, with subject-grouped K-fold CV.

A search space maps a parameter name to a distribution (`UniformInt`, `LogUniform`, `Uniform`,
`Choice`: small frozen dataclasses with `sample(rng)`). `draw_trials` turns a space into the list
of configurations a search evaluates: trial 0 is the family's defaults (so a one-trial budget
still gets a sane model), then independent draws from a numpy Generator seeded from the cell seed,
so a rerun draws the same configurations. Sampling goes through scipy.stats.

`random_search` gets a learner factory (`make(params, n_iter) -> Learner`), the trials, the
training matrix (train + tuning splits) and folds (benchmark.learn.folds), and returns the best
configuration by the task kind's selection metric (benchmark.learn.selection). The CV score of a
configuration is the mean of its per-fold scores (folds where the metric is undefined are
skipped). Boosting learners early-stop on the validation fold; the refit uses the mean best round
over the folds (per label for multilabel). That makes the CV score slightly optimistic, equally
for every trial, so it is fine for choosing between trials; it is not a test estimate. The
out-of-fold scores of the chosen configuration are kept: honest predictions for the train and
tuning rows.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
from scipy import stats

from benchmark.kinds import kind_of
from benchmark.learn.selection import SELECTION_METRIC, is_better, selection_score


# ------------------------------------------------------------------------------ distributions
@dataclass(frozen=True)
class LogUniform:
    """Continuous, uniform in log space on [low, high] (scipy.stats.loguniform)."""

    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        """Draw one value.

        Args:
            rng: numpy Generator.

        Returns:
            A float in [low, high].
        """
        return float(stats.loguniform(self.low, self.high).rvs(random_state=rng))


@dataclass(frozen=True)
class Uniform:
    """Continuous, uniform on [low, high]."""

    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        """Draw one value.

        Args:
            rng: numpy Generator.

        Returns:
            A float in [low, high].
        """
        return float(stats.uniform(self.low, self.high - self.low).rvs(random_state=rng))


@dataclass(frozen=True)
class UniformInt:
    """Integer, uniform on {low, ..., high} (both ends included)."""

    low: int
    high: int

    def sample(self, rng: np.random.Generator) -> int:
        """Draw one value.

        Args:
            rng: numpy Generator.

        Returns:
            An int in [low, high].
        """
        return int(stats.randint(self.low, self.high + 1).rvs(random_state=rng))


@dataclass(frozen=True)
class Choice:
    """One of a fixed tuple of values, each equally likely."""

    values: tuple

    def sample(self, rng: np.random.Generator) -> Any:
        """Draw one value.

        Args:
            rng: numpy Generator.

        Returns:
            One of `values` (a Python scalar or None).
        """
        return self.values[int(rng.integers(len(self.values)))]


Distribution = LogUniform | Uniform | UniformInt | Choice


def sample(space: dict[str, Distribution], rng: np.random.Generator) -> dict[str, Any]:
    """One configuration drawn from a space (parameters drawn in sorted-name order).

    Args:
        space: parameter name -> distribution.
        rng: numpy Generator.

    Returns:
        parameter name -> value.
    """
    return {k: space[k].sample(rng) for k in sorted(space)}


def draw_trials(space: dict[str, Distribution], defaults: dict[str, Any], n_trials: int,
                rng: np.random.Generator) -> list[dict[str, Any]]:
    """The configurations a random search evaluates: the defaults, then independent draws.

    Args:
        space: parameter name -> distribution.
        defaults: trial 0.
        n_trials: number of configurations (>= 1).
        rng: numpy Generator (seeded from the cell seed).

    Returns:
        [defaults, sample, sample, ...] of length n_trials.
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    return [dict(defaults)] + [sample(space, rng) for _ in range(n_trials - 1)]


def stratified_log_draws(dist: LogUniform, n: int, seed: int) -> np.ndarray:
    """n draws from a LogUniform, one per equal-width stratum of log10 space, sorted ascending.

    Latin-hypercube style: random search with less variance than independent draws, which over
    wide ranges (twenty decades for a penalty strength) would often miss the useful range.

    Args:
        dist: the distribution.
        n: number of draws (>= 1).
        seed: random seed.

    Returns:
        float64 [n], ascending.
    """
    rng = np.random.default_rng(seed)
    lo, hi = np.log10(dist.low), np.log10(dist.high)
    edges = np.linspace(lo, hi, n + 1)
    return np.sort(10.0 ** (edges[:-1] + rng.random(n) * (edges[1:] - edges[:-1])))


# ------------------------------------------------------------------------------ the search
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
        folds: (train_index, validation_index) pairs from benchmark.learn.folds.
        kind: task kind.

    Returns:
        SearchResult with the chosen configuration, its CV score, rounds and out-of-fold scores.
    """
    metric = SELECTION_METRIC[kind]
    best: SearchResult | None = None
    records = []
    errors: list[Exception] = []
    for i, params in enumerate(trials):
        oof = np.full(kind_of(kind).score_shape(len(X), y), np.nan)
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
