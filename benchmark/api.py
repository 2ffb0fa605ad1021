"""The public API for model authors: everything a plug-in package needs, so it never imports a
private module.

A model package registers through the entry-point group `mehr_bench.models` (pyproject.toml):

    [project.entry-points."mehr_bench.models"]
    my_model = "my_package.my_model"            # the module defines SPEC (or SPECS, several specs)

The entry point's name is the model name; the module (or `module:attribute`) holds one spec, a
tuple of specs, or a function returning them. Built-in models register the same way.
"""

from __future__ import annotations

from typing import Callable

from benchmark.model_api import Budget, NotApplicable, Prediction, TaskData
from benchmark.registry import ENTRY_POINT_GROUP, ModelSpec, Resources, get_model, list_models, model_names, require

__all__ = ["ALL_KINDS", "ENTRY_POINT_GROUP", "TRAINING_DATA", "Budget", "ModelSpec", "NotApplicable", "Prediction", "Resources",
           "TaskData",
           "get_model", "list_models", "model_names", "require", "spec"]

ALL_KINDS = ("binary", "multilabel", "survival", "regression")
TRAINING_DATA = "the task's training split (early stopping and model selection on its tuning split)"


def spec(name: str, description: str, factory: Callable, *, modalities: tuple[str, ...],
         requires: tuple[str, ...] = (), reference: str, n_parameters: int | None = None,
         task_kinds: tuple[str, ...] = ALL_KINDS, license: str = "Apache-2.0 (this code)",
         training_data: str = TRAINING_DATA, kind: str = "encoder+head",
         authors: str = "MEHR-Bench contributors") -> ModelSpec:
    """A ModelSpec with the benchmark's defaults (kind "encoder+head", every task kind).

    Args:
        name: registry name (a safe identifier; the entry point's name).
        description: one or two sentences.
        factory: factory(budget=, seed=) -> model with fit(TaskData) and predict(TaskData, split).
        modalities: modalities consumed.
        requires: modalities a task must offer.
        reference: the paper(s) the model follows (title).
        n_parameters: fixed parameter count (None when it depends on the task's inputs).
        task_kinds: supported task kinds.
        license: license of the code and weights.
        training_data: what it is trained on.
        kind: "baseline", "encoder+head" or "foundation".
        authors: who wrote the model.

    Returns:
        The frozen spec (pydantic validates it: unknown kinds, modalities or unsafe names raise).
    """
    return ModelSpec(name=name, kind=kind, description=description, modalities=modalities,
                     requires=requires, task_kinds=task_kinds, n_parameters=n_parameters,
                     training_data=training_data, license=license, reference=reference,
                     authors=authors, factory=factory)
