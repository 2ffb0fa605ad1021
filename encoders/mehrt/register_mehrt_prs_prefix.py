"""Registry entry `mehrt-prs-prefix`: MEHRT with the PRS as a soft-token prefix.

The other PRS pathway of "Integrating Genomics into Multimodal EHR Foundation Models" (Amar et al.,
2025): the same 10 projected soft tokens (2-layer GELU MLP, scaled sigmoid to (-1, 1)) are
prepended to the timeline, every position attends to them through ordinary self-attention, and
they are never scored by the loss. No cross-attention sublayers. torch is imported only when the
factory runs.
"""

from __future__ import annotations

import functools

from encoders.mehrt.register_mehrt import SPEC as MEHRT_SPEC
from encoders.mehrt.register_mehrt import _factory

SPEC = MEHRT_SPEC.model_copy(update={
    "name": "mehrt-prs-prefix",
    "description": ("MEHRT with the PRS as 10 soft tokens (2-layer GELU MLP, scaled sigmoid) prepended to the timeline "
                    "(the Genomics paper's soft-token prefix; no cross-attention); otherwise as `mehrt`"),
    "factory": functools.partial(_factory, prs_mode="prefix"),
})
