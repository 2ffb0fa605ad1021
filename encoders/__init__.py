"""Per-modality encoders, fusion and survival heads, and the MEHRT reference model."""

from benchmark.registry import require

# Every model here trains with torch, most importing it lazily (listing models stays fast): without
# the `torch` extra their spec modules fail to import here, so the registry lists them as
# unavailable ("install mehr-bench[torch]") and `run` refuses them up front.
require("torch")
