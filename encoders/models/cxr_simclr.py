"""cxr_simclr: MedCAM's CNN pretrained image-only with SimCLR, then fine-tuned (image-only contrastive baseline)."""

from encoders.medcam.model import ImageOnlyClassifier
from encoders.models._common import spec


def make(budget=None, seed: int = 0) -> ImageOnlyClassifier:
    """Factory: SimCLR for medcam's total pretraining epochs -> the same fine-tuning."""
    return ImageOnlyClassifier("simclr", budget=budget, seed=seed, name="cxr_simclr")


SPEC = spec(
    "cxr_simclr",
    "The MedCAM ResNet-style CXR encoder pretrained with SimCLR (NT-Xent; random crop, flip, intensity "
    "jitter) on the training images for the same pretraining epochs as medcam's SimCLR + alignment, then "
    "fine-tuned like medcam; images only.",
    make, modalities=("cxr",), requires=("cxr",), task_kinds=("binary", "multilabel"),
    training_data="the task's training images (fold 0 of the cell's folds held out for early stopping)",
    reference="Chen et al. 2020, A simple framework for contrastive learning of visual representations (SimCLR); "
              "baseline of Modular Multimodal Alignment Using Time-Series EHR Data for Enhancing Medical Image "
              "Classification (MedCAM)")
