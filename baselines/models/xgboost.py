"""xgboost: the MEHRT paper's XGBoost baseline (appendix B.1 features, Table B2 space).

See baselines/tabular.py (shared wrapper) and baselines/spaces.py (the setup named "xgboost").
"""

from baselines.tabular import factory_for
from benchmark.registry import ModelSpec

SPEC = ModelSpec(
    name="xgboost",
    kind="baseline",
    description=("XGBoost (hist) on the B.1 bag-of-events features; binary:logistic / survival:cox / squared error; random search over the "
                 "MEHRT paper (OpenReview ywFxZhMnuB) Table B2 space (no early stopping) with subject-grouped CV"),
    modalities=("structured",),
    task_kinds=("binary", "multilabel", "survival", "regression"),
    n_parameters=None,  # depends on the search; each result records its own size
    training_data="none (trained per task on the benchmark's train + tuning splits)",
    license="Apache-2.0",
    reference=("Chen & Guestrin 2016, XGBoost: a scalable tree boosting system (KDD); the MEHRT paper (OpenReview ywFxZhMnuB) appendix B.1 and Table B2"),
    authors="DMLC (XGBoost); MEHR-Bench wrapper",
    factory=factory_for("xgboost"),
)
