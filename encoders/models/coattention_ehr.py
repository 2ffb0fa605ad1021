"""coattention_ehr: alternating co-attention guided by the EHR (Fusion is not one-size-fits-all, arXiv 2606.15038)."""

from encoders.fusion.estimator import FusionModel
from encoders.models._common import SIDE, spec


def make(budget=None, seed: int = 0) -> FusionModel:
    """Factory: FusionModel with the co-attention head, EHR-guided."""
    return FusionModel(head="coattention", budget=budget, seed=seed, head_params={"guide": "ehr"},
                       name="coattention_ehr")


SPEC = spec(
    "coattention_ehr",
    "EHR-guided co-attention: the EHR summary selects image tokens, the attended image then selects "
    "EHR tokens; a head on both summaries.",
    make, modalities=("structured", *SIDE),
    reference="Fusion is not one-size-fits-all (arXiv 2606.15038) (co-attention guided by EHR); Lu et al. 2016, Hierarchical question-image "
              "co-attention (alternating co-attention)")
