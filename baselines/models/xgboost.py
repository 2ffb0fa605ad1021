"""xgboost: see baselines/tabular.py (shared wrapper) and baselines/spaces.py (search space)."""

from baselines.tabular import factory_for
from benchmark.registry import ModelSpec

SPEC = ModelSpec(
    name="xgboost",
    kind="baseline",
    description=("XGBoost (hist) on bag-of-events features; binary:logistic / survival:cox / squared error; "
                 "random search over the MEHRT paper (OpenReview ywFxZhMnuB) Table B2 with subject-grouped CV"),
    modalities=("structured",),
    task_kinds=("binary", "multilabel", "survival", "regression"),
    n_parameters=None,  # depends on the search; each result records its own size
    training_data="none (trained per task on the benchmark's train + tuning splits)",
    license="Apache-2.0",
    reference="Chen & Guestrin 2016, XGBoost: a scalable tree boosting system (KDD); the MEHRT paper (OpenReview ywFxZhMnuB) appendix B.1",
    authors="DMLC (XGBoost); MEHR-Bench wrapper",
    factory=factory_for("xgboost"),
)
