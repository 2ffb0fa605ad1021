"""Tabular learners: one small class per library (CatBoost, XGBoost, LightGBM, random forest, linear)
with fit(X, y, eval_set) / score(X) / n_iter_ / size() for each task kind (binary, regression,
survival); `OneVsRest` turns any of them into a multilabel learner (a label with one class in
training gets its constant prior). `make_learner` builds one from a search-space configuration:
the parameters a configuration names are passed on, every other one keeps the library's default
(the MEHRT paper's tables name only a few knobs; ours name more). With `early_stopping=False` (the
paper's setups) a learner ignores the validation fold and trains the configuration's own rounds.

Every learner runs with at most `threads` threads and a seed derived from the cell seed, so a rerun
gives identical predictions.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from baselines.cox import MIN_SURVIVAL_TIME, RidgeCox, cox_label, lightgbm_cox_metric, lightgbm_cox_objective
from benchmark.kinds import kind_of

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


class _Learner:
    """Common state: task kind, configuration, seed, threads, rounds cap, fixed rounds (refit)."""

    library = ""

    def __init__(self, kind: str, params: dict[str, Any], *, seed: int, threads: int, max_iterations: int,
                 n_iter: int | None = None, early_stopping: bool = True):
        self.kind = kind
        self.params = params
        self.seed = seed
        self.threads = threads
        self.max_iterations = max_iterations
        self.n_iter = n_iter
        self.early_stopping = early_stopping

    def _stop_on(self, eval_set):
        """The validation fold to early-stop on (None without early stopping)."""
        return eval_set if self.early_stopping else None

    def _given(self, casts: dict[str, Any]) -> dict[str, Any]:
        """The configuration's parameters among `casts` (name -> type), cast; absent ones are left out."""
        return {k: (None if self.params[k] is None else cast(self.params[k])) for k, cast in casts.items()
                if k in self.params}

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
        eval_set = self._stop_on(eval_set)
        p = dict(**self._given({"depth": int, "learning_rate": float, "l2_leaf_reg": float}), iterations=rounds,
                 random_seed=self.seed, thread_count=self._nthreads(X), verbose=0, allow_writing_files=False)
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
        return int(self.model_.tree_count_) * 2 ** int(self.model_.get_all_params()["depth"])


class XGBoostLearner(_Learner):
    """XGBoost (hist): binary:logistic, reg:squarederror, survival:cox (margin = log hazard)."""

    library = "xgboost"

    def fit(self, X, y, eval_set=None):
        import xgboost as xgb

        rounds = self._rounds("n_estimators")
        eval_set = self._stop_on(eval_set)
        p = dict(**self._given({"max_depth": int, "learning_rate": float, "subsample": float,
                                "colsample_bytree": float, "min_child_weight": float, "reg_alpha": float,
                                "reg_lambda": float}),
                 n_estimators=rounds, tree_method="hist", n_jobs=self._nthreads(X), random_state=self.seed,
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
        eval_set = self._stop_on(eval_set)
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
    """scikit-learn random forest (binary, regression); n_estimators capped by the budget; no early stopping."""

    library = "random_forest"

    def fit(self, X, y, eval_set=None):
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        if self.kind not in SUPPORTED_KINDS[self.library]:
            raise ValueError(f"random_forest does not support {self.kind} tasks")
        p = dict(n_estimators=int(min(self.params["n_estimators"], self.max_iterations)),
                 **self._given({"max_depth": int, "min_samples_leaf": int, "max_features": _max_features}),
                 n_jobs=self._nthreads(X), random_state=self.seed)
        m = {"binary": RandomForestClassifier, "regression": RandomForestRegressor}[self.kind](**p)
        m.fit(X, self._target(y))
        self.model_, self.n_iter_ = m, None
        return self

    def size(self) -> int:
        """Number of leaves over all trees."""
        return int(sum(e.tree_.n_leaves for e in self.model_.estimators_))


def _max_features(v):
    """random forest max_features: a name ("sqrt", "log2") or a fraction."""
    return v if isinstance(v, str) else float(v)


class LinearLearner(_Learner):
    """Linear baselines on standardized features, all with logistic regression's C:
    binary = LogisticRegression (the configuration's solver and L1 | L2 penalty where it names them,
    else scikit-learn's default: lbfgs, L2); regression = ridge (alpha = 1/C); survival = RidgeCox
    (L2, C as above). Solver and penalty apply to the logistic model only.
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
                       C=C, **self._logistic_options(),
                       max_iter=max(int(self.max_iterations), 100), random_state=self.seed).fit(Z, np.asarray(y).astype(int)),
                   "survival": lambda: RidgeCox(C=C, max_iter=max(int(self.max_iterations), 100)).fit(Z, y[:, 0], y[:, 1]),
                   "regression": lambda: Ridge(alpha=1.0 / C).fit(Z, np.asarray(y, dtype=float))}
            m = fit[self.kind]()
        self.model_, self.n_iter_ = m, None
        return self

    def _logistic_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if "solver" in self.params:
            opts["solver"] = self.params["solver"]
        if "penalty" in self.params:
            opts["l1_ratio"] = 1.0 if self.params["penalty"] == "l1" else 0.0
        return opts

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
                 n_iter: Any = None, n_labels: int | None = None, early_stopping: bool = True):
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
        early_stopping: early-stop boosting on the eval_set fit() gets (False: ignore it).

    Returns:
        A learner with fit(X, y, eval_set=None), score(X), n_iter_ and size().
    """
    if kind not in SUPPORTED_KINDS[library]:
        raise ValueError(f"{library} does not support {kind} tasks")
    cls = LEARNERS[library]
    if kind_of(kind).multi_output:  # one binary learner per label
        return OneVsRest(lambda it: cls("binary", params, seed=seed, threads=threads, max_iterations=max_iterations,
                                        n_iter=it, early_stopping=early_stopping), int(n_labels), n_iter)
    return cls(kind, params, seed=seed, threads=threads, max_iterations=max_iterations, n_iter=n_iter,
               early_stopping=early_stopping)
