"""Registry entry `mehrt-joint`: MEHRT encoding with the Stage 3-Joint weights.

Stage 3-Joint starts from the Stage-1 EHRT and trains all parameters of the multimodal model at
once on the training subjects with at least one image study (no frozen-backbone Stage 2). In the
MEHRT paper (OpenReview ywFxZhMnuB) it is the MEHRT of the headline comparison with supervised
baselines (Fig. 2a), and joint vs gradual (Stage 2 -> 3, our `mehrt`) adaptation scale alike.
Registering both lets the two be compared on every task (`benchmark compare --a mehrt-joint --b
mehrt`). Same tokenizer, size, Stage 1, probes and representation candidates as `mehrt` and
`ehrt`. torch is imported only when the factory runs.
"""

from __future__ import annotations

from encoders.mehrt.register_mehrt import SPEC as MEHRT_SPEC


def _factory(budget, seed: int = 0):
    """Build the pipeline (see encoders/mehrt/pipeline.py) encoding with the Stage 3-Joint weights."""
    from encoders.mehrt.pipeline import MEHRTPipeline
    return MEHRTPipeline(budget=budget, seed=seed, multimodal=True, stage="3joint")


SPEC = MEHRT_SPEC.model_copy(update={
    "name": "mehrt-joint",
    "description": ("Reference multimodal EHR transformer pretrained with joint adaptation: Stage 1 (EHRT) then "
                    "Stage 3-Joint (all parameters on the training subjects with image studies, no Stage 2); "
                    "frozen representations (echo / last token / mean, chosen by CV) + linear probes"),
    "reference": "the MEHRT paper (OpenReview ywFxZhMnuB): multimodal EHR foundation model (Stage 3-Joint, "
                 "Fig. 1b and 2a); ETHOS tokenization (Renc et al. 2024); echo embeddings (Springer et al. 2024)",
    "factory": _factory,
})
