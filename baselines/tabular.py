"""The shared tabular baseline: one wrapper for CatBoost, XGBoost, LightGBM, random forest and
logistic regression on bag-of-events features (MEHRT paper, OpenReview ywFxZhMnuB, appendix B.1).

    model = TabularBaseline("catboost", budget=BUDGETS["default"], seed=0)
    model.fit(data)                         # random search + refit on train + tuning
    model.predict(data, "held_out")         # Prediction(score, surv_times, surv_prob, info)

Layers, bottom up:
  * learners: one small class per library with fit(X, y, eval_set) / score(X) / n_iter_, for each
    task kind (binary, regression, survival); `OneVsRest` turns any of them into a multilabel
    learner (a label with one class in training gets its constant prior);
  * Cox helpers: signed-time labels and LightGBM's custom objective, and the ridge Cox of the linear
    baseline, on the shared partial likelihood and Breslow hazard of benchmark.learn.cox;
  * `fit_tuned`: random search over baselines.spaces with the shared subject-grouped folds and
    selection metric (benchmark.learn),
    then a refit of the best configuration on all rows;
  * `TabularBaseline`: features, targets and splits from a TaskData, predictions, info, explanations.

Score conventions (benchmark.model_api): binary P(y=1); multilabel P(label) [n, L]; survival the log
relative hazard (higher = earlier event) with Breslow survival curves; regression the value.
Predictions for the train and tuning splits are the out-of-fold CV scores of the chosen
configuration (honest, e.g. for choosing a threshold); held-out predictions come from the refit.

Every learner runs with at most `threads` (default 2) threads and a seed derived from the cell
seed, so a rerun gives identical predictions.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from baselines.explain import explain_learner
from baselines.spaces import draw_trials
from benchmark.features.bag_of_events import featurize
from benchmark.kinds import kind_of
from benchmark.learn.cox import Breslow, cox_grad_hess, fit_linear_cox
from benchmark.learn.folds import cell_folds, derive_seed
from benchmark.learn.search import SearchResult, random_search
from benchmark.model_api import Budget, Prediction, TaskData

EARLY_STOPPING_ROUNDS = 30
SMALL_DATA_CELLS = 200_000  # below this many matrix cells one thread is faster than two (sync overhead)
MIN_SURVIVAL_TIME = 1e-3  # days; Cox labels are signed times (negative = censored), so 0 is not allowed
LIBRARIES = ("catboost", "xgboost", "lightgbm", "random_forest", "logistic_regression")
SUPPORTED_KINDS = {
    "catboost": ("binary", "multilabel", "survival", "regression"),
    "xgboost": ("binary", "multilabel", "survival", "regression"),
    "lightgbm": ("binary", "multilabel", "survival", "regression"),
    "random_forest": ("binary", "multilabel", "regression"),
    "logistic_regression": ("binary", "multilabel", "survival", "regression"),
}


# ----------------------------------------------------------------------------------- Cox math
def cox_label(y: np.ndarray) -> np.ndarray:
    """Survival targets [n, 2] (days, event) -> signed times (event: +t, censored: -t), the label
    convention of XGBoost's survival:cox and CatBoost's Cox loss.

    Args:
        y: [n, 2] (time in days, event 0/1).

    Returns:
        [n] float64 signed times, |t| >= MIN_SURVIVAL_TIME.
    """
    t = np.maximum(np.asarray(y[:, 0], dtype=float), MIN_SURVIVAL_TIME)
    return np.where(np.asarray(y[:, 1]) > 0, t, -t)


def _unsign(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    label = np.asarray(label, dtype=float)
    return np.abs(label), (label > 0).astype(float)


def lightgbm_cox_objective(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LightGBM custom objective: Cox partial likelihood on signed-time labels (see cox_label).

    Args:
        y_true: [n] signed times.
        y_pred: [n] raw scores (log relative hazards).

    Returns:
        (gradient, hessian).
    """
    t, d = _unsign(y_true)
    g, h, _ = cox_grad_hess(y_pred, t, d)
    return g, h


def lightgbm_cox_metric(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[str, float, bool]:
    """LightGBM custom eval metric: negative Cox partial log-likelihood per event (lower is better).

    Args:
        y_true: [n] signed times.
        y_pred: [n] raw scores.

    Returns:
        ("cox_nll", value, False).
    """
    t, d = _unsign(y_true)
    _, _, loss = cox_grad_hess(y_pred, t, d)
    return "cox_nll", loss / max(d.sum(), 1.0), False


def survival_grid(time: np.ndarray, event: np.ndarray, n: int = 5) -> np.ndarray:
    """Times at which survival curves are reported: n quantiles from 20 % to 80 % of the training
    event times (inner quantiles, so the test follow-up usually covers them; the runner uses these
    times for td-AUC and the integrated Brier score).

    Args:
        time: training follow-up times.
        event: training event indicators.
        n: number of quantiles.

    Returns:
        [k <= n] unique increasing times (empty without events).
    """
    ev = np.asarray(time, dtype=float)[np.asarray(event) > 0]
    if len(ev) == 0:
        return np.array([])
    return np.unique(np.quantile(ev, np.linspace(0.2, 0.8, n)))


class RidgeCox:
    """Cox proportional hazards with an L2 penalty: min_b  sum_i loss_i(Xb) / n + ||b||^2 / (2 C n).

    The penalty uses logistic regression's C convention (C multiplies the data term), so one search
    space serves both. Fitted by L-BFGS on the exact gradient of cox_grad_hess.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 300):
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: np.ndarray, time: np.ndarray, event: np.ndarray) -> "RidgeCox":
        """Fit the coefficients.

        Args:
            X: [n, p] (standardized) features.
            time: [n] follow-up times.
            event: [n] event indicators.

        Returns:
            self
        """
        n = max(len(X), 1)
        self.coef_, self.n_iter_ = fit_linear_cox(X, time, event, 1.0 / (self.C * n), max_iter=self.max_iter)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Log relative hazards X @ coef_.

        Args:
            X: [n, p] features.

        Returns:
            [n] risk scores.
        """
        return np.asarray(X, dtype=float) @ self.coef_


# ----------------------------------------------------------------------------------- learners
class _Learner:
    """Common state: task kind, configuration, seed, threads, rounds cap, fixed rounds (refit)."""

    library = ""

    def __init__(self, kind: str, params: dict[str, Any], *, seed: int, threads: int, max_iterations: int,
                 n_iter: int | None = None):
        self.kind = kind
        self.params = params
        self.seed = seed
        self.threads = threads
        self.max_iterations = max_iterations
        self.n_iter = n_iter

    def _target(self, y: np.ndarray) -> np.ndarray:
        return cox_label(y) if kind_of(self.kind).time_to_event else np.asarray(y, dtype=float)

    def score(self, X) -> np.ndarray:
        """[n] scores: P(y=1) (binary), log relative hazard (survival) or the value (regression)."""
        return {"probability": self._probability, "risk": self._risk, "value": self._value}[
            kind_of(self.kind).score_type](X)

    def _probability(self, X) -> np.ndarray:
        return self.model_.predict_proba(X)[:, 1]

    def _risk(self, X) -> np.ndarray:
        raise ValueError(f"{self.library} does not support survival tasks")

    def _value(self, X) -> np.ndarray:
        return np.asarray(self.model_.predict(X), dtype=float)

    def _nthreads(self, X) -> int:
        """Threads for this fit: one for small matrices (deterministic in the data shape)."""
        return 1 if X.shape[0] * max(X.shape[1], 1) < SMALL_DATA_CELLS else int(self.threads)

    def _rounds(self, key: str) -> int:
        return int(self.n_iter) if self.n_iter else int(min(self.params[key], self.max_iterations))

    def native_model(self) -> Any:
        """The fitted library model (for SHAP / importances)."""
        return self.model_


class CatBoostLearner(_Learner):
    """CatBoost: Logloss (binary), RMSE (regression), Cox (survival; raw score = log hazard)."""

    library = "catboost"

    def fit(self, X, y, eval_set=None):
        from catboost import CatBoostClassifier, CatBoostRegressor

        rounds = self._rounds("iterations")
        p = dict(depth=int(self.params["depth"]), learning_rate=float(self.params["learning_rate"]),
                 l2_leaf_reg=float(self.params["l2_leaf_reg"]), iterations=rounds, random_seed=self.seed,
                 thread_count=self._nthreads(X), verbose=0, allow_writing_files=False)
        make = {"binary": lambda: CatBoostClassifier(loss_function="Logloss", **p),
                "survival": lambda: CatBoostRegressor(loss_function="Cox", eval_metric="Cox", **p),
                "regression": lambda: CatBoostRegressor(loss_function="RMSE", **p)}
        m = make[self.kind]()
        if eval_set is not None:
            m.fit(X, self._target(y), eval_set=(eval_set[0], self._target(eval_set[1])),
                  early_stopping_rounds=EARLY_STOPPING_ROUNDS, use_best_model=True)
            self.n_iter_ = int(m.get_best_iteration()) + 1
        else:
            m.fit(X, self._target(y))
            self.n_iter_ = rounds
        self.model_ = m
        return self

    def _risk(self, X):
        return np.asarray(self.model_.predict(X, prediction_type="RawFormulaVal"), dtype=float)

    def size(self) -> int:
        """Number of leaves (oblivious trees: 2**depth each)."""
        return int(self.model_.tree_count_) * 2 ** int(self.params["depth"])


class XGBoostLearner(_Learner):
    """XGBoost (hist): binary:logistic, reg:squarederror, survival:cox (margin = log hazard)."""

    library = "xgboost"

    def fit(self, X, y, eval_set=None):
        import xgboost as xgb

        rounds = self._rounds("n_estimators")
        p = dict(max_depth=int(self.params["max_depth"]), learning_rate=float(self.params["learning_rate"]),
                 subsample=float(self.params["subsample"]), colsample_bytree=float(self.params["colsample_bytree"]),
                 min_child_weight=float(self.params["min_child_weight"]), n_estimators=rounds, tree_method="hist",
                 n_jobs=self._nthreads(X), random_state=self.seed,
                 early_stopping_rounds=EARLY_STOPPING_ROUNDS if eval_set is not None else None)
        make = {"binary": lambda: xgb.XGBClassifier(objective="binary:logistic", eval_metric="logloss", **p),
                "survival": lambda: xgb.XGBRegressor(objective="survival:cox", eval_metric="cox-nloglik", **p),
                "regression": lambda: xgb.XGBRegressor(objective="reg:squarederror", eval_metric="rmse", **p)}
        m = make[self.kind]()
        if eval_set is not None:
            m.fit(X, self._target(y), eval_set=[(eval_set[0], self._target(eval_set[1]))], verbose=False)
            self.n_iter_ = int(m.best_iteration) + 1
        else:
            m.fit(X, self._target(y), verbose=False)
            self.n_iter_ = rounds
        self.model_ = m
        return self

    def _risk(self, X):
        return np.asarray(self.model_.predict(X, output_margin=True), dtype=float)

    def size(self) -> int:
        """Number of leaves over all trees."""
        return int(sum(t.count("leaf=") for t in self.model_.get_booster().get_dump()))


class LightGBMLearner(_Learner):
    """LightGBM: binary, regression (L2), survival via the Cox custom objective (raw score = log hazard)."""

    library = "lightgbm"

    def fit(self, X, y, eval_set=None):
        import lightgbm as lgb

        rounds = self._rounds("n_estimators")
        p = dict(num_leaves=int(self.params["num_leaves"]), learning_rate=float(self.params["learning_rate"]),
                 min_child_samples=int(self.params["min_child_samples"]), subsample=float(self.params["subsample"]),
                 subsample_freq=1, colsample_bytree=float(self.params["colsample_bytree"]),
                 reg_lambda=float(self.params["reg_lambda"]), n_estimators=rounds, n_jobs=self._nthreads(X),
                 random_state=self.seed, deterministic=True, force_col_wise=True, verbose=-1,
                 feature_pre_filter=False)  # else large min_child_samples can leave no feature at all
        make = {"binary": lambda: (lgb.LGBMClassifier(objective="binary", **p), {}),
                "survival": lambda: (lgb.LGBMRegressor(objective=lightgbm_cox_objective, metric="None", **p),
                                     {"eval_metric": lightgbm_cox_metric}),
                "regression": lambda: (lgb.LGBMRegressor(objective="regression", **p), {})}
        m, fit_kw = make[self.kind]()
        if eval_set is not None:
            m.fit(X, self._target(y), eval_X=(eval_set[0],), eval_y=(self._target(eval_set[1]),),
                  callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False)],
                  **fit_kw)
            self.n_iter_ = int(m.best_iteration_) if m.best_iteration_ else rounds
        else:
            m.fit(X, self._target(y))
            self.n_iter_ = rounds
        self.model_ = m
        return self

    def _risk(self, X):
        return np.asarray(self.model_.predict(X, raw_score=True), dtype=float)

    def size(self) -> int:
        """Number of leaves over all trees."""
        return int(sum(t["num_leaves"] for t in self.model_.booster_.dump_model()["tree_info"]))


class RandomForestLearner(_Learner):
    """scikit-learn random forest (binary, regression); n_estimators capped by the budget."""

    library = "random_forest"

    def fit(self, X, y, eval_set=None):
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        if self.kind not in SUPPORTED_KINDS[self.library]:
            raise ValueError(f"random_forest does not support {self.kind} tasks")
        p = dict(n_estimators=int(min(self.params["n_estimators"], self.max_iterations)),
                 max_depth=self.params["max_depth"], min_samples_leaf=int(self.params["min_samples_leaf"]),
                 max_features=self.params["max_features"], n_jobs=self._nthreads(X),
                 random_state=self.seed)
        m = {"binary": RandomForestClassifier, "regression": RandomForestRegressor}[self.kind](**p)
        m.fit(X, self._target(y))
        self.model_, self.n_iter_ = m, None
        return self

    def size(self) -> int:
        """Number of leaves over all trees."""
        return int(sum(e.tree_.n_leaves for e in self.model_.estimators_))


class LinearLearner(_Learner):
    """Linear baselines on standardized features, all with logistic regression's C:
    binary = LogisticRegression (saga | liblinear, L1 | L2); regression = ridge (alpha = 1/C);
    survival = RidgeCox (L2, C as above). Solver and penalty apply to the logistic model only.
    """

    library = "logistic_regression"

    def fit(self, X, y, eval_set=None):
        from sklearn.linear_model import LogisticRegression, Ridge
        from sklearn.preprocessing import StandardScaler

        C = float(self.params["C"])
        self.scaler_ = StandardScaler().fit(X)
        Z = self.scaler_.transform(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # extreme C values do not converge; the search judges them
            fit = {"binary": lambda: LogisticRegression(
                       C=C, solver=self.params["solver"], l1_ratio=1.0 if self.params["penalty"] == "l1" else 0.0,
                       max_iter=max(int(self.max_iterations), 100), random_state=self.seed).fit(Z, np.asarray(y).astype(int)),
                   "survival": lambda: RidgeCox(C=C, max_iter=max(int(self.max_iterations), 100)).fit(Z, y[:, 0], y[:, 1]),
                   "regression": lambda: Ridge(alpha=1.0 / C).fit(Z, np.asarray(y, dtype=float))}
            m = fit[self.kind]()
        self.model_, self.n_iter_ = m, None
        return self

    def _probability(self, X):
        return self.model_.predict_proba(self.scaler_.transform(X))[:, 1]

    def _value(self, X):
        return np.asarray(self.model_.predict(self.scaler_.transform(X)), dtype=float)

    _risk = _value  # RidgeCox.predict: the linear predictor (log relative hazard)

    def coefficients(self) -> np.ndarray:
        """Coefficients on the standardized features, [p]."""
        return np.ravel(self.model_.coef_)

    def size(self) -> int:
        """Number of coefficients plus intercept."""
        return int(self.coefficients().size) + 1


LEARNERS = {"catboost": CatBoostLearner, "xgboost": XGBoostLearner, "lightgbm": LightGBMLearner,
            "random_forest": RandomForestLearner, "logistic_regression": LinearLearner}


class ConstantLearner:
    """Predicts the training prevalence (a multilabel label with one class in training)."""

    library = None  # no fitted model: explain.explain_learner skips it

    def __init__(self, value: float):
        self.value = float(value)
        self.n_iter_ = None

    def score(self, X) -> np.ndarray:
        return np.full(X.shape[0], self.value)


class OneVsRest:
    """One binary learner per label; labels with a single class in training get a constant prior."""

    def __init__(self, make_binary, n_labels: int, n_iter: list | None = None):
        self.make_binary = make_binary
        self.n_labels = n_labels
        self.n_iter = n_iter

    def fit(self, X, Y, eval_set=None):
        Y = np.asarray(Y)
        self.learners_ = []
        for j in range(self.n_labels):
            yj = Y[:, j]
            if len(np.unique(yj)) < 2:
                self.learners_.append(ConstantLearner(yj.mean() if len(yj) else 0.0))
                continue
            ev = None if eval_set is None else (eval_set[0], np.asarray(eval_set[1])[:, j])
            it = None if self.n_iter is None else self.n_iter[j]
            self.learners_.append(self.make_binary(it).fit(X, yj, eval_set=ev))
        self.n_iter_ = [lr.n_iter_ for lr in self.learners_]
        return self

    def score(self, X) -> np.ndarray:
        return np.column_stack([lr.score(X) for lr in self.learners_])

    def fitted(self) -> list:
        """The non-constant per-label learners."""
        return [lr for lr in self.learners_ if not isinstance(lr, ConstantLearner)]

    def size(self) -> int:
        return int(sum(lr.size() for lr in self.fitted()))


def make_learner(library: str, kind: str, params: dict[str, Any], *, seed: int, threads: int, max_iterations: int,
                 n_iter: Any = None, n_labels: int | None = None):
    """Build an unfitted learner for one library and task kind.

    Args:
        library: one of LIBRARIES.
        kind: binary | multilabel | survival | regression.
        params: a configuration from the library's search space.
        seed: model seed.
        threads: thread count for the library.
        max_iterations: cap on boosting rounds / trees.
        n_iter: fixed rounds for a refit (int; per-label list for multilabel); None = the config's own.
        n_labels: number of labels (multilabel).

    Returns:
        A learner with fit(X, y, eval_set=None), score(X), n_iter_ and size().
    """
    if kind not in SUPPORTED_KINDS[library]:
        raise ValueError(f"{library} does not support {kind} tasks")
    cls = LEARNERS[library]
    if kind_of(kind).multi_output:  # one binary learner per label
        return OneVsRest(lambda it: cls("binary", params, seed=seed, threads=threads, max_iterations=max_iterations,
                                        n_iter=it), int(n_labels), n_iter)
    return cls(kind, params, seed=seed, threads=threads, max_iterations=max_iterations, n_iter=n_iter)


@dataclass
class Tuned:
    """A searched and refitted learner."""

    library: str
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


def fit_tuned(library: str, kind: str, X: np.ndarray, y: np.ndarray, folds, budget: Budget, seed: int,
              *, threads: int = 2, n_labels: int | None = None, tag: str = "") -> Tuned:
    """Random search (budget.n_trials configurations, CV over `folds`), then refit the best on all rows.

    Args:
        library: one of LIBRARIES.
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
    trials = draw_trials(library, budget.n_trials, np.random.default_rng(derive_seed(seed, library, tag, "trials")))
    model_seed = derive_seed(seed, library, tag, "model")

    def make(params, n_iter):
        return make_learner(library, kind, params, seed=model_seed, threads=threads,
                            max_iterations=budget.max_iterations, n_iter=n_iter, n_labels=n_labels)

    res = random_search(make, trials, X, y, folds, kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        final = make(res.best_params, res.n_iter).fit(X, y)
    return Tuned(library, kind, res, final, res.best_params)


# ----------------------------------------------------------------------------------- data helpers
SPLITS = ("train", "tuning", "held_out")


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


def stacked_targets(data: TaskData, splits=("train", "tuning")) -> tuple[np.ndarray, np.ndarray]:
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
        library: catboost | xgboost | lightgbm | random_forest | logistic_regression.
        budget: search budget (trials, folds, rounds cap).
        seed: the cell seed (folds, trials and model seeds derive from it).
        threads: threads for the library (<= 2 on the benchmark machine).
        explain: add explanations to held-out predictions.
    """

    def __init__(self, library: str, budget: Budget, seed: int = 0, threads: int = 2, explain: bool = True):
        self.library = library
        self.budget = budget
        self.seed = seed
        self.threads = threads
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
        boe = featurize(data)
        X = dense(boe.stacked(("train", "tuning")))
        y, groups = stacked_targets(data)
        self.folds_ = folds = cell_folds(kind, y, groups, self.budget.n_folds, self.seed)
        self.tuned_ = fit_tuned(self.library, kind, X, y, folds, self.budget, self.seed, threads=self.threads,
                                n_labels=n_labels_of(data))
        self.feature_names_ = list(boe.names)
        self.n_rows_ = {"train": data.frame("train").height, "tuning": data.frame("tuning").height}
        if kind_of(kind).time_to_event:
            eta = self.tuned_.model.score(X)
            self.breslow_ = Breslow().fit(eta, y[:, 0], y[:, 1])
            self.surv_times_ = survival_grid(y[:, 0], y[:, 1])
        return self

    def _held_out_X(self, data: TaskData) -> np.ndarray:
        return dense(featurize(data).block("held_out"))  # disk-cached by featurize

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
            "hyperparameters": t.hyperparameters(),
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


def factory_for(library: str):
    """The ModelSpec factory of one library: factory(budget=Budget, seed=int) -> TabularBaseline."""

    def factory(budget: Budget, seed: int = 0) -> TabularBaseline:
        return TabularBaseline(library, budget=budget, seed=seed)

    factory.__name__ = f"{library}_factory"
    return factory
