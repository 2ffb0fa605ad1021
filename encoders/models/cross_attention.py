"""cross_attention: bidirectional cross-attention between EHR tokens and image tokens (Fusion is not one-size-fits-all, arXiv 2606.15038)."""

from encoders.fusion.estimator import FusionModel
from encoders.models._common import SIDE, spec


def make(budget=None, seed: int = 0) -> FusionModel:
    """Factory: FusionModel with the cross_attention head."""
    return FusionModel(head="cross_attention", budget=budget, seed=seed, name="cross_attention")


SPEC = spec(
    "cross_attention",
    "Bidirectional cross-attention: EHR tokens (structured feature tokens + 2-hour time-series bins) and "
    "image tokens (recent studies of each side modality, learned missing tokens) attend to each other.",
    make, modalities=("structured", *SIDE),
    reference="Fusion is not one-size-fits-all (arXiv 2606.15038) (cross-attention CT + EHR fusion); Lu et al. 2019 (ViLBERT co-attentional layers)")
