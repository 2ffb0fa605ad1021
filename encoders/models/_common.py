"""Shared pieces of the encoder + head model specs."""

from __future__ import annotations

from typing import Callable

from benchmark.registry import ModelSpec

ALL_KINDS = ("binary", "multilabel", "survival", "regression")
SIDE = ("ct", "wsi", "cxr", "note", "prs")
TRAINING_DATA = "the task's training split (early stopping and model selection on its tuning split)"


def spec(name: str, description: str, factory: Callable, *, modalities: tuple[str, ...],
         requires: tuple[str, ...] = (), reference: str, n_parameters: int | None = None,
         task_kinds: tuple[str, ...] = ALL_KINDS, license: str = "Apache-2.0 (this code)",
         training_data: str = TRAINING_DATA) -> ModelSpec:
    """A ModelSpec of kind "encoder+head" with the benchmark's defaults.

    Args:
        name: registry name (= file name).
        description: one or two sentences.
        factory: factory(budget=, seed=) -> model.
        modalities: modalities consumed.
        requires: modalities a task must offer.
        reference: the paper(s) the head follows.
        n_parameters: fixed parameter count (None when it depends on the task's inputs).
        task_kinds: supported task kinds.
        license: license of the code and weights.
        training_data: what it is trained on.

    Returns:
        The frozen spec.
    """
    return ModelSpec(name=name, kind="encoder+head", description=description, modalities=modalities,
                     requires=requires, task_kinds=task_kinds, n_parameters=n_parameters,
                     training_data=training_data, license=license, reference=reference,
                     authors="MEHR-Bench contributors", factory=factory)


def single_source(source: str) -> ModelSpec:
    """`probe_<source>`: the concat_lr head on one input source alone, the reference a fusion model
    must beat ("best single modality"). source: "structured" (bag-of-events EHR vector + time-series
    summary) or a side modality (pooled precomputed embedding, learned missing token)."""
    from encoders.fusion.inputs import InputConfig

    structured = source == "structured"
    inputs = InputConfig(structured=structured, timeline=structured, modalities=() if structured else (source,))
    name = f"probe_{source}"

    def make(budget=None, seed: int = 0):
        from encoders.fusion.estimator import FusionModel
        return FusionModel(head="concat_lr", budget=budget, seed=seed, name=name, inputs=inputs)

    what = ("the bag-of-events EHR vector and the ICU time-series summary" if structured
            else f"the {source} embedding pooled over the studies visible at the prediction time")
    return spec(name, f"Single-source reference: the concat_lr linear head on {what} only (the 'best single "
                      f"modality' that fusion heads are compared with).",
                make, modalities=(source,), requires=() if structured else (source,),
                reference="single-modality linear probe (EHRSHOT-style linear probing; the CT + EHR fusion paper's unimodal baselines)")
