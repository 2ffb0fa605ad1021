"""`probe_<source>`: the concat_lr head on one input source alone, the single-modality references a
fusion model must beat ("best single modality"). One spec per source, declared in a loop; each is
registered by name in pyproject.toml's `mehr_bench.models` entry points."""

from __future__ import annotations

from benchmark.api import ModelSpec, spec
from encoders.models._common import SIDE

SOURCES = ("structured", *SIDE)


def single_source(source: str) -> ModelSpec:
    """The spec of `probe_<source>`.

    Args:
        source: "structured" (bag-of-events EHR vector + time-series summary) or a side modality
            (pooled precomputed embedding, learned missing token).

    Returns:
        The frozen spec; its factory builds a FusionModel with the concat_lr head on that source only.
    """
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
                reference="single-modality linear probe: linear probing as in Wornow et al. 2023, EHRSHOT: An EHR Benchmark "
                          "for Few-Shot Evaluation of Foundation Models; the unimodal baselines of Fusion is not "
                          "one-size-fits-all (arXiv 2606.15038)")


SPECS = tuple(single_source(s) for s in SOURCES)
