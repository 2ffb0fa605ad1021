"""coattention_img: alternating co-attention guided by the image (Fusion is not one-size-fits-all, arXiv 2606.15038)."""

from encoders.fusion.estimator import FusionModel
from encoders.models._common import SIDE, spec


def make(budget=None, seed: int = 0) -> FusionModel:
    """Factory: FusionModel with the co-attention head, image-guided."""
    return FusionModel(head="coattention", budget=budget, seed=seed, head_params={"guide": "image"},
                       name="coattention_img")


SPEC = spec(
    "coattention_img",
    "Image-guided co-attention: the image summary selects EHR tokens, the attended EHR then selects "
    "image tokens; a head on both summaries.",
    make, modalities=("structured", *SIDE),
    reference="Fusion is not one-size-fits-all (arXiv 2606.15038) (co-attention guided by image); Lu et al. 2016, Hierarchical question-image "
              "co-attention (alternating co-attention)")
