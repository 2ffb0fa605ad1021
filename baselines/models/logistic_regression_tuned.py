"""logistic_regression_tuned: ours, the richer logistic regression setup (not the paper's): solver
and L1 / L2 penalty searched besides C, the "extended" bag-of-events features. See baselines/spaces.py (the
setup named "logistic_regression_tuned") and baselines/README.md.
"""

from baselines.tabular import factory_for
from benchmark.registry import ModelSpec

SPEC = ModelSpec(
    name="logistic_regression_tuned",
    kind="baseline",
    description=("Ours (not the paper's setup): logistic regression on standardized extended bag-of-events features (adds last "
                 "numeric values, age at prediction, race); random search over our space (C 1e-10-1e10, saga / liblinear, L1 / L2) "
                 "with early stopping and subject-grouped CV"),
    modalities=("structured",),
    task_kinds=("binary", "multilabel", "survival", "regression"),
    n_parameters=None,  # depends on the search; each result records its own size
    training_data="none (trained per task on the benchmark's train + tuning splits)",
    license="BSD-3-Clause",
    reference=("Cox 1972 for the survival variant; features after the MEHRT paper (OpenReview ywFxZhMnuB) appendix B.1, extended"),
    authors="scikit-learn developers; MEHR-Bench wrapper",
    factory=factory_for("logistic_regression_tuned"),
)
