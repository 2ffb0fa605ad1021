"""Registry entry `ehrt`: the structured-only EHRT (Stage-1 weights of the MEHRT curriculum).

Same tokenizer, architecture, pretraining data and probes as `mehrt`, without image placeholders
or PRS: the pair isolates what the images and PRS add. torch is imported only when the factory runs.
"""

from __future__ import annotations

from encoders.mehrt.register_mehrt import SPEC as MEHRT_SPEC


def _factory(budget, seed: int = 0):
    """Build the pipeline (see encoders/mehrt/pipeline.py)."""
    from encoders.mehrt.pipeline import MEHRTPipeline
    return MEHRTPipeline(budget=budget, seed=seed, multimodal=False)


SPEC = MEHRT_SPEC.model_copy(update={
    "name": "ehrt",
    "description": ("Structured-only EHR transformer (Stage 1 of the MEHRT curriculum: next-token pretraining on "
                    "tokenized MEDS timelines of the training split); frozen representations + linear probes"),
    "modalities": ("structured",),
    "reference": "the MEHRT paper (OpenReview ywFxZhMnuB): multimodal EHR foundation model (EHRT, Stage 1); ETHOS tokenization (Renc et al. 2024)",
    "factory": _factory,
})
