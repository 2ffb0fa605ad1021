"""concat_lr: per-modality embeddings concatenated with the EHR vector + logistic regression (Benchmarking FMs with Multimodal Public EHR, arXiv 2507.14824).

The paper's fusion family, extended: the whole bag-of-events vector instead of demographics only,
the 48 h time-series summary, every side modality the task offers (PRS included) and an elastic net
on the bag-of-events block. The paper's ICU recipe itself is `concat_lr_icu` (encoders/README.md).
"""

from encoders.fusion.estimator import FusionModel
from encoders.models._common import SIDE, spec


def make(budget=None, seed: int = 0) -> FusionModel:
    """Factory: FusionModel with the concat_lr head (Cox for survival, linear for regression)."""
    return FusionModel(head="concat_lr", budget=budget, seed=seed, name="concat_lr")


SPEC = spec(
    "concat_lr",
    "Early fusion: bag-of-events EHR vector, time-series summary and each side modality's pooled embedding "
    "(learned missing token + presence flag) concatenated into one linear model (logistic / Cox / linear).",
    make, modalities=("structured", *SIDE),
    reference="Benchmarking Foundation Models with Multimodal Public Electronic Health Records (arXiv 2507.14824): concatenated modality embeddings + logistic regression (early-fusion baseline)")
