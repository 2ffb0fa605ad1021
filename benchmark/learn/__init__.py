"""The learning protocol every model family uses (baselines, fusion heads, MEHRT probes).

The benchmark, not the model family, owns how a model is tuned, so comparisons stay fair:

* `folds`: subject-grouped K folds, stratified by the task kind's key, seeded from the cell seed;
* `search`: typed search-space distributions and a random search with K-fold CV;
* `selection`: the one selection metric per task kind, and which direction is better;
* `cox`: the Cox partial likelihood (gradient, diagonal Hessian, penalized linear fit) and
  Breslow's baseline hazard / survival curves.

Torch-free: numpy, scipy and scikit-learn only.
"""

from benchmark.learn.cox import Breslow, cox_grad_hess, fit_linear_cox
from benchmark.learn.folds import cell_folds, derive_seed, make_folds, stratification_key
from benchmark.learn.search import (Choice, Distribution, LogUniform, SearchResult, Uniform, UniformInt,
                                    draw_trials, random_search, sample, stratified_log_draws)
from benchmark.learn.selection import LOWER_IS_BETTER, SELECTION_METRIC, gain, is_better, selection_score

__all__ = ["Breslow", "Choice", "Distribution", "LOWER_IS_BETTER", "LogUniform", "SELECTION_METRIC", "SearchResult",
           "Uniform", "UniformInt", "cell_folds", "cox_grad_hess", "derive_seed", "draw_trials", "fit_linear_cox",
           "gain", "is_better", "make_folds", "random_search", "sample", "selection_score", "stratification_key",
           "stratified_log_draws"]
