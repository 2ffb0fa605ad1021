"""logistic_regression: the MEHRT paper's logistic regression baseline (appendix B.1 features, Table B4 space).

See baselines/tabular.py (shared wrapper) and baselines/spaces.py (the setup named "logistic_regression").
"""

from baselines.tabular import factory_for
from benchmark.registry import ModelSpec

SPEC = ModelSpec(
    name="logistic_regression",
    kind="baseline",
    description=("Logistic regression (scikit-learn defaults: lbfgs, L2) on standardized B.1 bag-of-events features; "
                 "ridge regression and ridge Cox with the same C for regression / survival (ours); random search over the "
                 "MEHRT paper (OpenReview ywFxZhMnuB) Table B4 space (no early stopping) with subject-grouped CV"),
    modalities=("structured",),
    task_kinds=("binary", "multilabel", "survival", "regression"),
    n_parameters=None,  # depends on the search; each result records its own size
    training_data="none (trained per task on the benchmark's train + tuning splits)",
    license="BSD-3-Clause",
    reference=("Cox 1972 for the survival variant; the MEHRT paper (OpenReview ywFxZhMnuB) appendix B.1 and Table B4"),
    authors="scikit-learn developers; MEHR-Bench wrapper",
    factory=factory_for("logistic_regression"),
)
