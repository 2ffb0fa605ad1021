"""The baselines' hyperparameter search: the shared learning protocol (benchmark.learn).

Folds, random search, the selection metric per task kind and its direction are defined once in
`benchmark.learn` and used by every family (baselines, fusion heads, MEHRT probes); this module
only re-exports them under the names the baselines have always imported.
"""

from __future__ import annotations

from benchmark.learn.folds import cell_folds, make_folds
from benchmark.learn.search import Learner, SearchResult, random_search
from benchmark.learn.selection import LOWER_IS_BETTER, SELECTION_METRIC, is_better, selection_score

__all__ = ["LOWER_IS_BETTER", "Learner", "SELECTION_METRIC", "SearchResult", "cell_folds", "is_better", "make_folds",
           "random_search", "selection_score"]
