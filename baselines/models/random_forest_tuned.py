"""random_forest_tuned: ours, the richer random forest setup (not the paper's): more trees,
leaf size and max features searched, the "extended" bag-of-events features. See baselines/spaces.py (the
setup named "random_forest_tuned") and baselines/README.md.
"""

from baselines.tabular import factory_for
from benchmark.registry import ModelSpec

SPEC = ModelSpec(
    name="random_forest_tuned",
    kind="baseline",
    description=("Ours (not the paper's setup): scikit-learn random forest on the extended bag-of-events features (adds last "
                 "numeric values, age at prediction, race); random search over our space (100-500 trees, depth {None, 5, 10, 20}, min samples per leaf, max features) "
                 "with early stopping and subject-grouped CV"),
    modalities=("structured",),
    task_kinds=("binary", "multilabel", "regression"),
    n_parameters=None,  # depends on the search; each result records its own size
    training_data="none (trained per task on the benchmark's train + tuning splits)",
    license="BSD-3-Clause",
    reference=("Breiman 2001, Random forests (Machine Learning 45); features after the MEHRT paper (OpenReview ywFxZhMnuB) appendix B.1, extended"),
    authors="scikit-learn developers; MEHR-Bench wrapper",
    factory=factory_for("random_forest_tuned"),
)
