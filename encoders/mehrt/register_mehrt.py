"""Registry entries `mehrt` (the multimodal MEHRT, Stage-3 weights, with linear probes) and
`mehrt-<size>` (the same at a fixed size config, for the scaling plot), declared in SPECS.

Consumes the structured timeline, CT / WSI / CXR study embeddings (placeholder tokens) and the PRS
vector (10 soft tokens read by cross-attention in every block: the Genomics paper's GPT-PRS-CROSS, the
variant it evaluates; `mehrt-prs-prefix` has the soft-token prefix instead, and `mehrt-prs-cross` pins
cross-attention should the default change). It needs no task modality (a subject without images is a structured-only
timeline), so it runs every task of every kind. torch is imported only when the factory runs.
"""

from __future__ import annotations

import functools

from benchmark.registry import ModelSpec, Resources
from benchmark.vocabulary import IMAGE_MODALITIES

# the timeline, the image studies (placeholder tokens) and the PRS (soft tokens); no notes
MEHRT_MODALITIES = ("structured", *IMAGE_MODALITIES, "prs")


def _factory(budget, seed: int = 0, size: str | None = None, prs_mode: str | None = None, steps: int | None = None,
             compile: bool = False):
    """Build the pipeline (see encoders/mehrt/pipeline.py); size overrides the budget's size, prs_mode
    the default PRS pathway (pipeline.DEFAULT_PRS_MODE, cross-attention), steps the budget's Stage-1
    steps (`scale`'s token rule), compile turns on torch.compile for pretraining on CUDA."""
    from encoders.mehrt.pipeline import MEHRTPipeline
    return MEHRTPipeline(budget=budget, seed=seed, multimodal=True, size=size, prs_mode=prs_mode, steps=steps,
                         compile=compile)


SPEC = ModelSpec(
    name="mehrt",
    kind="foundation",
    description=("Reference multimodal EHR transformer (Llama-style decoder over tokenized timelines with CT, "
                 "WSI and CXR study embeddings as placeholder tokens; the PRS as 10 soft tokens read by "
                 "cross-attention in every block), pretrained with the "
                 "Stage 1 -> 2 -> 3 curriculum on the cohort's training split; frozen representations "
                 "(echo / last token / mean, chosen by CV) + linear probes"),
    modalities=MEHRT_MODALITIES,
    requires=(),
    task_kinds=("binary", "multilabel", "survival", "regression"),
    n_parameters=None,  # depends on the cohort's vocabulary and the budget's size: see results' compute block
    training_data="the evaluated cohort's training split (self-supervised next-token pretraining; "
                  "tuning and held-out subjects never used)",
    license="Apache-2.0",
    reference="the MEHRT paper (OpenReview ywFxZhMnuB): multimodal EHR foundation model (curriculum Fig. 1b); ETHOS tokenization (Renc et al. 2024); "
              "echo embeddings (Springer et al. 2024); PRS projection and cross-attention: Integrating Genomics into "
              "Multimodal EHR Foundation Models (Amar et al. 2025)",
    authors="MEHR-Bench",
    factory=_factory,
    # a cell pretrains (prepare step) and encodes with torch: two cores, a GPU where the Ray cluster has one
    resources=Resources(cpus=2, gpus=1),
    # EHRT, MEHRT, their sizes, 3-Joint and zero-shot variants (copies of this spec) pretrain Stage 1
    # under one lock: a second prepare step started beside the first would only wait for it
    prepare_chain="mehrt-pretraining",
)


def _overrides(steps: int | None, compile: bool) -> dict:
    """The factory keywords `scale` sets (none for the registered entries, which stay {"size": ...})."""
    return {k: v for k, v in (("steps", steps), ("compile", compile)) if v}


def sized_spec(size: str, steps: int | None = None, compile: bool = False) -> ModelSpec:
    """`mehrt-<size>`: MEHRT at a fixed size config whatever the budget (the budget still sets the
    pretraining steps and probe search). Results of several sizes feed the leaderboard's scaling plot.

    Args:
        size: a key of encoders/mehrt/sizes.py SIZES.
        steps: Stage-1 pretraining steps instead of the budget's (the override `python -m benchmark
            scale` passes from its token rule; None, as registered, keeps `run --model mehrt-<size>`'s).
        compile: torch.compile the pretraining on CUDA (`scale --compile`).

    Returns:
        The spec.
    """
    how = f"; Stage 1 pretrained {steps} steps (scale's token rule)" if steps is not None else ""
    return SPEC.model_copy(update={
        "name": f"mehrt-{size.lower()}",
        "description": f"MEHRT at the fixed '{size}' size config (encoders/mehrt/sizes.py SIZES){how}; otherwise as `mehrt`",
        "factory": functools.partial(_factory, size=size, **_overrides(steps, compile))})


# Fixed sizes on the leaderboard's scaling plot (keys of encoders/mehrt/model.py SIZES).
FIXED_SIZES = ("tiny", "small", "9M")

SPECS = (SPEC, *(sized_spec(size) for size in FIXED_SIZES))
