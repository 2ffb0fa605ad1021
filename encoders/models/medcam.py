"""medcam: CXR embedding aligned to the EHR time series (global + local top-k InfoNCE), then fine-tuned (MedCAM paper)."""

from encoders.fusion.estimator import FusionModel
from encoders.fusion.inputs import InputConfig
from encoders.models._common import spec


def make(budget=None, seed: int = 0) -> FusionModel:
    """Factory: FusionModel with the MedCAM head on CXR + time series + structured EHR (k = 3)."""
    return FusionModel(head="medcam", budget=budget, seed=seed, head_params={"k": 3},
                       inputs=InputConfig(modalities=("cxr",)), name="medcam")


SPEC = spec(
    "medcam",
    "MedCAM: CXR study embeddings mapped to local tokens and aligned to the EHR time-series encoder with a "
    "global and a local top-k (k = 3) contrastive loss, then fine-tuned with the task loss (BCE).",
    make, modalities=("structured", "cxr"), requires=("cxr",),
    reference="Modular Multimodal Alignment Using Time-Series EHR Data for Enhancing Medical Image Classification "
              "(MedCAM): CXR encoder aligned to EHR time series (global + local top-k contrastive); "
              "Yao et al. 2022 (FILIP token-wise alignment)")
