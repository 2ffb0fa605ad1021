"""Registry entries `mehrt-zeroshot-path` and `mehrt-zeroshot-freq`: the multimodal MEHRT (the `mehrt`
Stage-3 checkpoint; image studies as placeholder inputs, the PRS through cross-attention) answering
binary tasks from N = 10 generated trajectories per sample, as `ehrt-zeroshot-*` does for EHRT
(encoders/mehrt/register_ehrt_zeroshot.py). Generated paths never contain image placeholders.
"""

from __future__ import annotations

from encoders.mehrt.register_ehrt_zeroshot import zeroshot_spec
from encoders.mehrt.register_mehrt import SPEC as MEHRT_SPEC

SPECS = tuple(zeroshot_spec(MEHRT_SPEC, e, multimodal=True) for e in ("path", "freq"))
