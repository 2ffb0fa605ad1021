"""catboost_tuned: ours, the richer CatBoost setup (not the paper's): more rounds, a
narrower learning-rate range, early stopping on the validation fold, the "extended" bag-of-events
features. See baselines/spaces.py (the
setup named "catboost_tuned") and baselines/README.md.
"""

from baselines.tabular import factory_for
from benchmark.registry import ModelSpec

SPEC = ModelSpec(
    name="catboost_tuned",
    kind="baseline",
    description=("Ours (not the paper's setup): CatBoost (symmetric-tree GBDT) on the extended bag-of-events features (adds last "
                 "numeric values, age at prediction, race); random search over our space (depth 4-8, learning rate 0.01-0.3, L2 1-10, 100-1000 rounds) "
                 "with early stopping and subject-grouped CV"),
    modalities=("structured",),
    task_kinds=("binary", "multilabel", "survival", "regression"),
    n_parameters=None,  # depends on the search; each result records its own size
    training_data="none (trained per task on the benchmark's train + tuning splits)",
    license="Apache-2.0",
    reference=("Prokhorenkova et al. 2018, CatBoost: unbiased boosting with categorical features (NeurIPS); features after the MEHRT paper (OpenReview ywFxZhMnuB) appendix B.1, extended"),
    authors="Yandex (CatBoost); MEHR-Bench wrapper",
    factory=factory_for("catboost_tuned"),
)
