"""contrastive: 2-step contrastive fusion (Fusion is not one-size-fits-all, arXiv 2606.15038): InfoNCE pre-alignment of EHR and image, then a head."""

from encoders.fusion.estimator import FusionModel
from encoders.models._common import SIDE, spec


def make(budget=None, seed: int = 0) -> FusionModel:
    """Factory: FusionModel with the contrastive head (aligned encoders fine-tuned in step 2)."""
    return FusionModel(head="contrastive", budget=budget, seed=seed, name="contrastive")


SPEC = spec(
    "contrastive",
    "Two-step contrastive fusion: EHR and side-modality encoders aligned with symmetric InfoNCE on the "
    "training split, then a head on both embeddings, fine-tuned with the task loss.",
    make, modalities=("structured", *SIDE),
    reference="Fusion is not one-size-fits-all (arXiv 2606.15038) (2-step contrastive CT + EHR fusion); Radford et al. 2021 (CLIP); "
              "Zhang et al. 2022 (ConVIRT)")
