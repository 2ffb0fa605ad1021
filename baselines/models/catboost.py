"""catboost: see baselines/tabular.py (shared wrapper) and baselines/spaces.py (search space)."""

from baselines.tabular import factory_for
from benchmark.registry import ModelSpec

SPEC = ModelSpec(
    name="catboost",
    kind="baseline",
    description=("CatBoost (symmetric-tree GBDT) on bag-of-events features; Logloss / Cox / RMSE; random "
                 "search over the MEHRT paper (OpenReview ywFxZhMnuB) Table B1 with subject-grouped CV"),
    modalities=("structured",),
    task_kinds=("binary", "multilabel", "survival", "regression"),
    n_parameters=None,  # depends on the search; each result records its own size
    training_data="none (trained per task on the benchmark's train + tuning splits)",
    license="Apache-2.0",
    reference=("Prokhorenkova et al. 2018, CatBoost: unbiased boosting with categorical features "
               "(NeurIPS); the MEHRT paper (OpenReview ywFxZhMnuB) appendix B.1"),
    authors="Yandex (CatBoost); MEHR-Bench wrapper",
    factory=factory_for("catboost"),
)
