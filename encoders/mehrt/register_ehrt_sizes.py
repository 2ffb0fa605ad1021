"""Registry entries `ehrt-<size>`: the structured-only EHRT at fixed size configs, the EHRT line of
the leaderboard's scaling view (the MEHRT paper, OpenReview ywFxZhMnuB, plots EHRT and MEHRT
macro-average AUROC against parameters). Same sizes as `mehrt-<size>` (register_mehrt.FIXED_SIZES),
so each size has its EHRT / MEHRT pair; the budget still sets pretraining steps and the probe
search. torch is imported only when the factory runs.
"""

from __future__ import annotations

import functools

from encoders.mehrt.register_ehrt import SPEC as EHRT_SPEC
from encoders.mehrt.register_mehrt import FIXED_SIZES


def _factory(budget, seed: int = 0, size: str | None = None):
    """Build the structured-only pipeline (see encoders/mehrt/pipeline.py) at a fixed size."""
    from encoders.mehrt.pipeline import MEHRTPipeline
    return MEHRTPipeline(budget=budget, seed=seed, multimodal=False, size=size)


def sized_spec(size: str):
    """`ehrt-<size>`: EHRT at a fixed size config whatever the budget."""
    return EHRT_SPEC.model_copy(update={
        "name": f"ehrt-{size.lower()}",
        "description": f"EHRT at the fixed '{size}' size config (encoders/mehrt/sizes.py SIZES); otherwise as `ehrt`",
        "factory": functools.partial(_factory, size=size)})


SPECS = tuple(sized_spec(size) for size in FIXED_SIZES)
