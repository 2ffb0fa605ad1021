"""Registry entries `ehrt-<size>`: the structured-only EHRT at fixed size configs, the EHRT line of
the leaderboard's scaling view (the MEHRT paper, OpenReview ywFxZhMnuB, plots EHRT and MEHRT
macro-average AUROC against parameters). Same sizes as `mehrt-<size>` (register_mehrt.FIXED_SIZES),
so each size has its EHRT / MEHRT pair; the budget still sets pretraining steps and the probe
search. torch is imported only when the factory runs.
"""

from __future__ import annotations

import functools

from encoders.mehrt.register_ehrt import SPEC as EHRT_SPEC
from encoders.mehrt.register_mehrt import FIXED_SIZES, _overrides


def _factory(budget, seed: int = 0, size: str | None = None, steps: int | None = None, compile: bool = False):
    """Build the structured-only pipeline (see encoders/mehrt/pipeline.py) at a fixed size."""
    from encoders.mehrt.pipeline import MEHRTPipeline
    return MEHRTPipeline(budget=budget, seed=seed, multimodal=False, size=size, steps=steps, compile=compile)


def sized_spec(size: str, steps: int | None = None, compile: bool = False):
    """`ehrt-<size>`: EHRT at a fixed size config whatever the budget.

    Args:
        size: a key of encoders/mehrt/sizes.py SIZES.
        steps: Stage-1 steps instead of the budget's (`scale`'s token rule; None keeps `run`'s).
        compile: torch.compile the pretraining on CUDA (`scale --compile`).

    Returns:
        The spec.
    """
    how = f"; pretrained {steps} steps (scale's token rule)" if steps is not None else ""
    return EHRT_SPEC.model_copy(update={
        "name": f"ehrt-{size.lower()}",
        "description": f"EHRT at the fixed '{size}' size config (encoders/mehrt/sizes.py SIZES){how}; otherwise as `ehrt`",
        "factory": functools.partial(_factory, size=size, **_overrides(steps, compile))})


SPECS = tuple(sized_spec(size) for size in FIXED_SIZES)
