"""logistic_regression: see baselines/tabular.py (shared wrapper) and baselines/spaces.py (search space)."""

from baselines.tabular import factory_for
from benchmark.registry import ModelSpec

SPEC = ModelSpec(
    name="logistic_regression",
    kind="baseline",
    description=("Logistic regression (saga / liblinear, L1 / L2) on standardized bag-of-events features; "
                 "ridge regression and ridge Cox with the same C for regression / survival; the MEHRT paper (OpenReview ywFxZhMnuB) Table "
                 "B4"),
    modalities=("structured",),
    task_kinds=("binary", "multilabel", "survival", "regression"),
    n_parameters=None,  # depends on the search; each result records its own size
    training_data="none (trained per task on the benchmark's train + tuning splits)",
    license="BSD-3-Clause",
    reference="the MEHRT paper (OpenReview ywFxZhMnuB) appendix B.1 (logistic regression baseline); Cox 1972 for the survival variant",
    authors="scikit-learn developers; MEHR-Bench wrapper",
    factory=factory_for("logistic_regression"),
)
