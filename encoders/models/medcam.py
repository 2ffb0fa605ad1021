"""medcam: a CXR CNN adapted by alignment to the ICU time series (global + local top-k InfoNCE),
then fine-tuned image-only with a linear classifier (MedCAM paper; encoders/medcam)."""

from encoders.medcam.model import ImageOnlyClassifier
from encoders.models._common import spec


def make(budget=None, seed: int = 0) -> ImageOnlyClassifier:
    """Factory: SimCLR (or $MEHR_BENCH_WEIGHTS_MEDCAM_CXR) -> MedCAM alignment (k = 10) -> fine-tuning."""
    return ImageOnlyClassifier("medcam", budget=budget, seed=seed, name="medcam", k=10)


SPEC = spec(
    "medcam",
    "MedCAM: a ResNet-style CXR encoder (SimCLR-pretrained on the training images, or a local weights "
    "file) aligned to an LSTM over the 2-hour-binned ICU time series with the global and local top-k "
    "(k = 10) contrastive losses, then fine-tuned image-only (linear classifier, BCE, lr grid, early "
    "stopping on validation macro AUROC). No EHR at prediction time.",
    make, modalities=("structured", "cxr"), requires=("cxr",), task_kinds=("binary", "multilabel"),
    training_data="the task's training rows (fold 0 of the cell's folds held out for early stopping); "
                  "alignment on those rows that have an ICU time series",
    reference="Modular Multimodal Alignment Using Time-Series EHR Data for Enhancing Medical Image Classification "
              "(MedCAM)")
