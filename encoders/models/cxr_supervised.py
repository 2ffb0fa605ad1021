"""cxr_supervised: MedCAM's CNN trained from scratch on the CXR task (the paper's supervised baseline)."""

from encoders.medcam.model import ImageOnlyClassifier
from encoders.models._common import spec


def make(budget=None, seed: int = 0) -> ImageOnlyClassifier:
    """Factory: random init -> fine-tuning (linear classifier + encoder, BCE, lr grid, early stopping)."""
    return ImageOnlyClassifier("none", budget=budget, seed=seed, name="cxr_supervised")


SPEC = spec(
    "cxr_supervised",
    "The MedCAM ResNet-style CXR encoder trained from random initialisation with a linear classifier "
    "(BCE, lr grid {1e-2, 1e-3, 1e-5}, early stopping on validation macro AUROC); images only.",
    make, modalities=("cxr",), requires=("cxr",), task_kinds=("binary", "multilabel"),
    training_data="the task's training rows (fold 0 of the cell's folds held out for early stopping)",
    reference="Modular Multimodal Alignment Using Time-Series EHR Data for Enhancing Medical Image Classification "
              "(MedCAM), supervised baseline; He et al. 2016, Deep residual learning for image recognition")
