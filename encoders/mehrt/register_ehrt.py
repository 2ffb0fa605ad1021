"""Registry entry `ehrt`: the structured-only EHRT (Stage-1 weights of the MEHRT curriculum).

Same tokenizer, architecture, pretraining data and probes as `mehrt`, without image placeholders
or PRS: the pair isolates what the images and PRS add. torch is imported only when the factory runs.
"""

from __future__ import annotations

from benchmark.registry import ModelSpec


def _factory(budget, seed: int = 0):
    """Build the pipeline (see encoders/mehrt/pipeline.py)."""
    from encoders.mehrt.pipeline import MEHRTPipeline
    return MEHRTPipeline(budget=budget, seed=seed, multimodal=False)


SPEC = ModelSpec(
    name="ehrt",
    kind="foundation",
    description=("Structured-only EHR transformer (Stage 1 of the MEHRT curriculum: next-token pretraining on "
                 "tokenized MEDS timelines of the training split); frozen representations + linear probes"),
    modalities=("structured",),
    requires=(),
    task_kinds=("binary", "multilabel", "survival", "regression"),
    n_parameters=None,  # depends on the cohort's vocabulary and the budget's size: see results' compute block
    training_data="the evaluated cohort's training split (self-supervised next-token pretraining; "
                  "tuning and held-out subjects never used)",
    license="Apache-2.0",
    reference="seed 000: multimodal EHR foundation model (EHRT, Stage 1); ETHOS tokenization (Renc et al. 2024)",
    authors="MEHR-Bench",
    factory=_factory,
)
