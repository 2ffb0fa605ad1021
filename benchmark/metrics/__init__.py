"""Metrics with subject-level bootstrap confidence intervals.

numpy/scipy only: importing this package never imports torch or scikit-learn.

Modules:
    binary      auroc, auprc, brier, ece, choose_threshold, threshold_metrics
    multilabel  auroc_macro, auprc_macro, per_label
    survival    c_index_harrell, c_index_uno, td_auc, ibs, kaplan_meier (O(n log n) C-index)
    regression  mae, rmse, r2
    bootstrap   subject bootstrap (fast weighted kernels + generic fallback), percentile CIs
    evaluate    evaluate(kind, ...) -> {name: MetricResult}, the entry point for the runner

Every metric is built on a weighted kernel (see `binary`), which is how 1000 bootstrap replicates
run in vectorised passes over one precomputed sort.
"""

from benchmark.metrics.binary import (
    DegenerateInputError,
    auprc,
    auroc,
    brier,
    choose_threshold,
    ece,
    threshold_metrics,
)
from benchmark.metrics.bootstrap import (
    BootstrapCI,
    bootstrap_auprc,
    bootstrap_auroc,
    bootstrap_generic,
    bootstrap_kernel,
)
from benchmark.metrics.evaluate import MetricResult, evaluate, metric_names, split_survival
from benchmark.metrics.multilabel import auprc_macro, auroc_macro, per_label
from benchmark.metrics.regression import mae, r2, rmse
from benchmark.metrics.survival import c_index_harrell, c_index_uno, kaplan_meier
from benchmark.metrics.survival_auc import td_auc
from benchmark.metrics.survival_brier import ibs

__all__ = [
    "BootstrapCI",
    "DegenerateInputError",
    "MetricResult",
    "auprc",
    "auprc_macro",
    "auroc",
    "auroc_macro",
    "bootstrap_auprc",
    "bootstrap_auroc",
    "bootstrap_generic",
    "bootstrap_kernel",
    "brier",
    "c_index_harrell",
    "c_index_uno",
    "choose_threshold",
    "ece",
    "evaluate",
    "ibs",
    "kaplan_meier",
    "mae",
    "metric_names",
    "per_label",
    "r2",
    "rmse",
    "split_survival",
    "td_auc",
    "threshold_metrics",
]
