"""Registry entry `mehrt-prs-cross`: MEHRT with the PRS read by cross-attention (GPT-PRS-CROSS).

"Integrating Genomics into Multimodal EHR Foundation Models" (Amar et al., 2025) projects the PRS
vector into 10 soft tokens (2-layer GELU MLP, scaled sigmoid to (-1, 1)) that every decoder block
reads through a cross-attention sublayer (encoders/mehrt/model.py). This is also plain `mehrt`'s
pathway today; this entry pins it, so results stay comparable if `mehrt`'s default ever changes.
Both share one pretraining cache entry (same plan, same config hash). torch is imported only when
the factory runs.
"""

from __future__ import annotations

import functools

from encoders.mehrt.register_mehrt import SPEC as MEHRT_SPEC
from encoders.mehrt.register_mehrt import _factory

SPEC = MEHRT_SPEC.model_copy(update={
    "name": "mehrt-prs-cross",
    "description": ("MEHRT with the PRS as 10 soft tokens (2-layer GELU MLP, scaled sigmoid) read by a cross-attention "
                    "sublayer in every decoder block (the Genomics paper's GPT-PRS-CROSS); otherwise as `mehrt`"),
    "factory": functools.partial(_factory, prs_mode="cross_attention"),
})
