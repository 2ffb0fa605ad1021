"""Per-modality encoders, fusion and survival heads, and the MEHRT reference model."""
