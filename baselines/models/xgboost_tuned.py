"""xgboost_tuned: ours, the richer XGBoost setup (not the paper's): more rounds, subsampling
and min child weight searched, early stopping on the validation fold, the "extended" bag-of-events
features. See baselines/spaces.py (the
setup named "xgboost_tuned") and baselines/README.md.
"""

from baselines.tabular import factory_for
from benchmark.registry import ModelSpec

SPEC = ModelSpec(
    name="xgboost_tuned",
    kind="baseline",
    description=("Ours (not the paper's setup): XGBoost (hist) on the extended bag-of-events features (adds last "
                 "numeric values, age at prediction, race); random search over our space (depth 3-10, learning rate 0.01-0.3, subsample, colsample, min child weight, 100-1000 rounds) "
                 "with early stopping and subject-grouped CV"),
    modalities=("structured",),
    task_kinds=("binary", "multilabel", "survival", "regression"),
    n_parameters=None,  # depends on the search; each result records its own size
    training_data="none (trained per task on the benchmark's train + tuning splits)",
    license="Apache-2.0",
    reference=("Chen & Guestrin 2016, XGBoost: a scalable tree boosting system (KDD); features after the MEHRT paper (OpenReview ywFxZhMnuB) appendix B.1, extended"),
    authors="DMLC (XGBoost); MEHR-Bench wrapper",
    factory=factory_for("xgboost_tuned"),
)
