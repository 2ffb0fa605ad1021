"""random_forest: the MEHRT paper's random forest baseline (appendix B.1 features, Table B3 space).

See baselines/tabular.py (shared wrapper) and baselines/spaces.py (the setup named "random_forest").
"""

from baselines.tabular import factory_for
from benchmark.registry import ModelSpec

SPEC = ModelSpec(
    name="random_forest",
    kind="baseline",
    description=("scikit-learn random forest on the B.1 bag-of-events features; classifier / regressor (no survival variant); random search over the "
                 "MEHRT paper (OpenReview ywFxZhMnuB) Table B3 space (no early stopping) with subject-grouped CV"),
    modalities=("structured",),
    task_kinds=("binary", "multilabel", "regression"),
    n_parameters=None,  # depends on the search; each result records its own size
    training_data="none (trained per task on the benchmark's train + tuning splits)",
    license="BSD-3-Clause",
    reference=("Breiman 2001, Random forests (Machine Learning 45); the MEHRT paper (OpenReview ywFxZhMnuB) appendix B.1 and Table B3"),
    authors="scikit-learn developers; MEHR-Bench wrapper",
    factory=factory_for("random_forest"),
)
