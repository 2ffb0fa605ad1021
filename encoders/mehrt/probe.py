"""Linear probes on frozen MEHRT patient representations (the MEHRT paper's evaluation protocol).

* binary: L2 logistic regression, C ~ LogUniform(1e-10, 1e10);
* multilabel: one logistic regression per label (one-vs-rest), one shared C, solved jointly;
* survival: Cox proportional hazards with an L2 penalty (a small numpy/scipy implementation,
  Breslow ties and baseline hazard; lifelines is only a development dependency here);
* regression: ridge, alpha = 1 / C.

Representations are standardized (mean 0, variance 1, fitted on train + tuning). The strength is
tuned by k-fold cross-validation on train + tuning with the benchmark's shared protocol
(benchmark.learn): the cell's folds (subject-grouped, stratified by the kind's key: the same folds
the baselines use), and the kind's selection metric (AUROC, macro AUROC, Harrell's C, MAE); the
Cox partial likelihood and Breslow hazard come from benchmark.learn.cox. The number of candidate strengths
is budget-limited; candidates are drawn from the log-uniform prior stratified in log space (one
draw per equal-width stratum: random search with less variance than independent draws, which over
20 decades would often miss the useful range entirely) and visited in ascending order, each fit
warm-started from the previous one; the search stops once `patience` successive candidates score
below the best (larger C only overfits further, and costs the most solver iterations). Several representations (echo, last
token, mean) can compete in the same search; the best mean CV score picks one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from benchmark.kinds import kind_of
from benchmark.learn.cox import Breslow, fit_linear_cox
from benchmark.learn.folds import cell_folds
from benchmark.learn.search import LogUniform, stratified_log_draws
from benchmark.learn.selection import LOWER_IS_BETTER, SELECTION_METRIC, gain, selection_score

C_RANGE = (1e-10, 1e10)
C_SPACE = LogUniform(*C_RANGE)  # the same prior as the logistic-regression baseline's C
PROBE_NAMES = {"binary": "logistic regression", "multilabel": "one-vs-rest logistic regression",
               "survival": "L2 Cox proportional hazards", "regression": "ridge regression"}


# ------------------------------------------------------------------------------ search space
def loguniform_candidates(n: int, seed: int, low: float = C_RANGE[0], high: float = C_RANGE[1]) -> np.ndarray:
    """n draws from LogUniform(low, high), one per equal stratum of log space (sorted ascending).

    Args:
        n: number of candidates (>= 1).
        seed: random seed.
        low: lower bound.
        high: upper bound.

    Returns:
        float64 [n], ascending.
    """
    return stratified_log_draws(LogUniform(low, high), n, seed)


def cv_folds(kind: str, y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The cell's folds, shared with every other family (benchmark.learn.folds.cell_folds).

    Args:
        kind: task kind.
        y: targets (see TaskData.y).
        groups: subject id per row.
        n_folds: number of folds (capped at the number of subjects).
        seed: the cell seed.

    Returns:
        (train indices, validation indices) per fold.
    """
    return cell_folds(kind, y, groups, n_folds, seed)


# ------------------------------------------------------------------------------ Cox with L2
# Iteration cap: weakly penalized fits on hundreds of dimensions otherwise run for seconds each;
# warm starts along the ascending C path keep the capped solutions close to the optimum.
COX_MAX_ITER = 150


def cox_fit(X: np.ndarray, time: np.ndarray, event: np.ndarray, penalizer: float,
            beta0: np.ndarray | None = None) -> np.ndarray:
    """L2-penalized Cox regression: minimize -loglik / n + penalizer / 2 * |beta|^2 (Breslow ties).

    Args:
        X: [n, d] standardized covariates.
        time: [n] follow-up times.
        event: [n] 1 = event, 0 = censored.
        penalizer: L2 strength.
        beta0: warm start.

    Returns:
        beta [d].
    """
    return fit_linear_cox(X, time, event, penalizer, beta0=beta0, max_iter=COX_MAX_ITER)[0]


def breslow(X: np.ndarray, time: np.ndarray, event: np.ndarray, beta: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Breslow cumulative baseline hazard H0 at times `at` (of the uncentred score X beta). Returns [len(at)]."""
    b = Breslow().fit(X @ beta, time, event)
    return b.cumulative_hazard(at) * np.exp(-b.center_)  # cumhaz_ is of the centred score


# ------------------------------------------------------------------------------ logistic (joint over labels)
LOGISTIC_MAX_ITER = 100


def logistic_fit(X: np.ndarray, Y: np.ndarray, C: float, W0: np.ndarray | None = None) -> np.ndarray:
    """L2 logistic regressions of several labels on shared features, solved jointly.

    Each label k minimizes C * sum_i logloss(y_ik, x_i w_k + b_k) + |w_k|^2 / 2 (scikit-learn's
    objective; the intercept is not penalized). The problems are independent, so one L-BFGS run
    over all labels' parameters solves them all, and one matrix product evaluates every label:
    far cheaper than one solver call per label. The iteration cap bounds the nearly unpenalized
    candidates (C >> 1), whose optimum runs off to infinity on separable data.

    Args:
        X: [n, d] features.
        Y: [n, K] 0/1 labels, each with both classes present.
        C: inverse regularization strength.
        W0: [K, d + 1] warm start (weights, then intercept).

    Returns:
        W [K, d + 1].
    """
    n, d = X.shape
    K = Y.shape[1]
    Xb = np.hstack([X, np.ones((n, 1))])
    Yf = Y.astype(np.float64)
    reg = np.ones(d + 1)
    reg[-1] = 0.0

    def f(w):
        W = w.reshape(K, d + 1)
        Z = Xb @ W.T  # [n, K]
        # logloss = log(1 + e^z) - y z, computed stably
        loss = np.logaddexp(0.0, Z) - Yf * Z
        G = (0.5 * (1.0 + np.tanh(0.5 * Z)) - Yf)  # sigmoid(z) - y
        obj = C * loss.sum() + 0.5 * np.sum(reg * W * W)
        grad = C * (G.T @ Xb) + reg * W
        return obj, grad.ravel()

    w0 = np.zeros(K * (d + 1)) if W0 is None else W0.ravel()
    res = minimize(f, w0, jac=True, method="L-BFGS-B", options={"maxiter": LOGISTIC_MAX_ITER, "gtol": 1e-6})
    return res.x.reshape(K, d + 1)


@dataclass
class _Logistic:
    """Fitted labels: W for labels with both classes, constant training prevalence for the rest."""

    W: np.ndarray | None
    fit_cols: np.ndarray
    prior: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        out = np.tile(self.prior, (len(X), 1))
        if self.W is not None:
            Z = X @ self.W[:, :-1].T + self.W[:, -1]
            out[:, self.fit_cols] = 0.5 * (1.0 + np.tanh(0.5 * Z))
        return out


def _fit_labels(X: np.ndarray, Y: np.ndarray, C: float, warm: _Logistic | None) -> _Logistic:
    prior = Y.mean(0) if len(Y) else np.zeros(Y.shape[1])
    cols = np.flatnonzero((prior > 0) & (prior < 1))
    W0 = warm.W if warm is not None and warm.W is not None and np.array_equal(warm.fit_cols, cols) else None
    W = logistic_fit(X, Y[:, cols], C, W0) if len(cols) else None
    return _Logistic(W, cols, prior.astype(np.float64))


# ------------------------------------------------------------------------------ estimators
def _fit_one(kind: str, X: np.ndarray, y: np.ndarray, C: float, warm=None):
    """Fit one probe at strength C; returns an opaque fitted object usable by `_predict`."""
    return _PROBES[kind][0](X, y, C, warm)


def _fit_ridge(X: np.ndarray, y: np.ndarray, C: float, warm=None):
    """Ridge regression (alpha = 1/C); `warm` is ignored (a closed-form solve needs no start)."""
    from scipy.linalg import LinAlgWarning
    from sklearn.linear_model import Ridge
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)  # alpha -> 1e-10: near-singular, still solved
        warnings.filterwarnings("ignore", message="Singular matrix")
        return Ridge(alpha=1.0 / C).fit(X, y)


def _predict(kind: str, m, X: np.ndarray) -> np.ndarray:
    return _PROBES[kind][1](m, X)


# kind name -> (fit(X, y, C, warm), predict(model, X)): the probe's estimator per kind
_PROBES = {
    "binary": (lambda X, y, C, warm: _fit_labels(X, y.reshape(len(y), -1), C, warm), lambda m, X: m.predict(X)[:, 0]),
    "multilabel": (lambda X, y, C, warm: _fit_labels(X, y.reshape(len(y), -1), C, warm), lambda m, X: m.predict(X)),
    # log relative hazard: higher = earlier event
    "survival": (lambda X, y, C, warm: cox_fit(X, y[:, 0], y[:, 1], penalizer=1.0 / C, beta0=warm),
                 lambda m, X: X @ m),
    "regression": (_fit_ridge, lambda m, X: m.predict(X)),
}


def score(kind: str, y: np.ndarray, pred: np.ndarray) -> float:
    """CV objective on a higher-is-better scale: the kind's selection metric (benchmark.learn.selection;
    AUROC, macro AUROC, Harrell's C, or minus the MAE), -inf where it is undefined."""
    return gain(SELECTION_METRIC[kind], selection_score(kind, y, pred))


def _natural(kind: str, g: float) -> float | None:
    """A CV gain back in the metric's own units (MAE positive), None where it was undefined."""
    if not np.isfinite(g):
        return None
    return -g if SELECTION_METRIC[kind] in LOWER_IS_BETTER else g


# ------------------------------------------------------------------------------ the probe
@dataclass
class Probe:
    """A tuned linear probe (scikit-learn style: no logic in __init__, fitted state ends in `_`).

    Args:
        kind: binary | multilabel | survival | regression.
        n_trials: candidate strengths C.
        n_folds: cross-validation folds.
        seed: seed for candidates and folds.
        patience: stop the ascending-C search after this many candidates score below the best.
    """

    kind: str
    n_trials: int = 8
    n_folds: int = 5
    seed: int = 0
    patience: int = 2
    representation_: str = field(default="", init=False)
    C_: float = field(default=np.nan, init=False)
    cv_: dict = field(default_factory=dict, init=False)

    def fit(self, reps: dict[str, np.ndarray], y: np.ndarray, groups: np.ndarray) -> Probe:
        """Choose (representation, C) by grouped k-fold CV, then refit on all rows.

        Args:
            reps: representation name -> [n, d] features of the training rows (train + tuning).
            y: targets aligned with the rows (TaskData.y).
            groups: subject id per row.

        Returns:
            self.
        """
        Cs = loguniform_candidates(self.n_trials, self.seed)
        self.folds_ = folds = cv_folds(self.kind, y, groups, self.n_folds, self.seed)
        best = (-np.inf, None, None)
        # Small matrices: BLAS threads only add synchronisation (10x slower on a busy 2-core box).
        with threadpool_limits(1, user_api="blas"):
            for name, X in reps.items():
                Z = (X - X.mean(0)) / (X.std(0) + 1e-6)
                means, warm, since_best = [], [None] * len(folds), 0
                for C in Cs:  # ascending C, each fold warm-started from its previous fit
                    fold_scores = []
                    for f, (tr, va) in enumerate(folds):
                        warm[f] = _fit_one(self.kind, Z[tr], y[tr], C, warm[f])
                        fold_scores.append(score(self.kind, y[va], _predict(self.kind, warm[f], Z[va])))
                    finite = [v for v in fold_scores if np.isfinite(v)]  # skip folds where it is undefined
                    m = float(np.mean(finite)) if finite else -np.inf
                    means.append(m)
                    since_best = 0 if m >= max(means) else since_best + 1
                    if since_best >= self.patience:
                        break  # larger C only overfits more (and costs the most iterations)
                self.cv_[name] = {f"{C:.3g}": _natural(self.kind, s) for C, s in zip(Cs, means)}
                i = int(np.argmax(means))
                if means[i] > best[0]:
                    best = (means[i], name, float(Cs[i]))
        _, self.representation_, self.C_ = best
        if self.representation_ is None:  # every score undefined: fall back to the first, mid C
            self.representation_, self.C_ = next(iter(reps)), 1.0
        X = reps[self.representation_]
        self.mu_, self.sd_ = X.mean(0), X.std(0) + 1e-6
        Z = (X - self.mu_) / self.sd_
        with threadpool_limits(1, user_api="blas"):
            self.model_ = _fit_one(self.kind, Z, y, self.C_)
        if kind_of(self.kind).time_to_event:
            self.breslow_ = Breslow().fit(Z @ self.model_, y[:, 0], y[:, 1])
        return self

    def predict(self, reps: dict[str, np.ndarray]) -> np.ndarray:
        """Scores for new rows: P(y=1) [n], P(label) [n, L], log relative hazard [n], or values [n]."""
        Z = (reps[self.representation_] - self.mu_) / self.sd_
        return _predict(self.kind, self.model_, Z)

    def survival_curves(self, reps: dict[str, np.ndarray], times: np.ndarray) -> np.ndarray:
        """Cox survival S(t | x) = exp(-H0(t) exp(x beta)) at `times` (survival probes only). [n, k]"""
        Z = (reps[self.representation_] - self.mu_) / self.sd_
        return self.breslow_.survival(Z @ self.model_, times)

    def info(self) -> dict:
        """What was chosen: probe type, representation, C, CV scores per candidate."""
        metric = SELECTION_METRIC[self.kind]
        scores = [v for per_rep in self.cv_.values() for v in per_rep.values() if v is not None]
        best = max(scores, key=lambda v: gain(metric, v), default=None)
        return {"probe": PROBE_NAMES[self.kind], "representation": self.representation_, "C": self.C_,
                "cv_folds": self.n_folds, "cv_trials": self.n_trials, "cv_metric": metric,
                "cv_best": best, "cv_scores": self.cv_}
