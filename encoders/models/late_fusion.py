"""late_fusion: one head per modality, outputs averaged over the modalities a sample has."""

from encoders.fusion.estimator import FusionModel
from encoders.models._common import SIDE, spec


def make(budget=None, seed: int = 0) -> FusionModel:
    """Factory: FusionModel with the late_fusion head."""
    return FusionModel(head="late_fusion", budget=budget, seed=seed, name="late_fusion")


SPEC = spec(
    "late_fusion",
    "Late fusion: an MLP head on the EHR inputs and one per side modality; outputs averaged over the "
    "modalities present, with per-modality auxiliary losses.",
    make, modalities=("structured", *SIDE),
    reference="Benchmarking Foundation Models with Multimodal Public Electronic Health Records (arXiv 2507.14824) (late fusion of per-modality predictors); Baltrusaitis et al. 2019, "
              "Multimodal machine learning: a survey and taxonomy")
