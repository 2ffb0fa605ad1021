"""lightgbm: see baselines/tabular.py (shared wrapper) and baselines/spaces.py (search space)."""

from baselines.tabular import factory_for
from benchmark.registry import ModelSpec

SPEC = ModelSpec(
    name="lightgbm",
    kind="baseline",
    description=("LightGBM on bag-of-events features; binary / L2 / Cox partial likelihood as a custom "
                 "objective; random search over the space in baselines/README.md"),
    modalities=("structured",),
    task_kinds=("binary", "multilabel", "survival", "regression"),
    n_parameters=None,  # depends on the search; each result records its own size
    training_data="none (trained per task on the benchmark's train + tuning splits)",
    license="MIT",
    reference="Ke et al. 2017, LightGBM: a highly efficient gradient boosting decision tree (NeurIPS)",
    authors="Microsoft (LightGBM); MEHR-Bench wrapper",
    factory=factory_for("lightgbm"),
)
