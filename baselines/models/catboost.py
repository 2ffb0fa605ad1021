"""catboost: the MEHRT paper's CatBoost baseline (appendix B.1 features, Table B1 space).

See baselines/tabular.py (shared wrapper) and baselines/spaces.py (the setup named "catboost").
"""

from baselines.tabular import factory_for
from benchmark.registry import ModelSpec

SPEC = ModelSpec(
    name="catboost",
    kind="baseline",
    description=("CatBoost (symmetric-tree GBDT) on the B.1 bag-of-events features; Logloss / Cox / RMSE; random search over the "
                 "MEHRT paper (OpenReview ywFxZhMnuB) Table B1 space (no early stopping) with subject-grouped CV"),
    modalities=("structured",),
    task_kinds=("binary", "multilabel", "survival", "regression"),
    n_parameters=None,  # depends on the search; each result records its own size
    training_data="none (trained per task on the benchmark's train + tuning splits)",
    license="Apache-2.0",
    reference=("Prokhorenkova et al. 2018, CatBoost: unbiased boosting with categorical features (NeurIPS); the MEHRT paper (OpenReview ywFxZhMnuB) appendix B.1 and Table B1"),
    authors="Yandex (CatBoost); MEHR-Bench wrapper",
    factory=factory_for("catboost"),
)
