"""precomputed: linear probe on precomputed study embeddings pooled up to the prediction time."""

from encoders.fusion.estimator import FusionModel
from encoders.fusion.inputs import InputConfig
from encoders.models._common import SIDE, spec


def make(budget=None, seed: int = 0) -> FusionModel:
    """Factory: concat_lr head on the side modalities' precomputed embeddings only (no EHR)."""
    return FusionModel(head="concat_lr", budget=budget, seed=seed, name="precomputed",
                       inputs=InputConfig(structured=False, timeline=False))


SPEC = spec(
    "precomputed",
    "Frozen precomputed study embeddings of every side modality the task offers (mean of the studies "
    "visible at the prediction time, learned missing token) with a linear head; no structured EHR.",
    make, modalities=SIDE,
    reference="the MEHRT paper (OpenReview ywFxZhMnuB) (precomputed foundation-model image embeddings, e.g. GigaPath / DINOv2); "
              "linear probing as in EHRSHOT (Wornow et al. 2023)")
