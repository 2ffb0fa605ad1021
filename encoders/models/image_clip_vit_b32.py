"""image_clip_vit_b32: frozen image encoder on the CXR image files + a linear head (local weights only)."""

from benchmark.registry import require
from encoders.fusion.estimator import FusionModel
from encoders.fusion.inputs import InputConfig
from encoders.image import IMAGE_ENCODERS
from encoders.models._common import spec

# without the `images` extra the model is listed as unavailable (benchmark.registry.require)
require("open_clip")


INFO = IMAGE_ENCODERS["image_clip_vit_b32"]


def make(budget=None, seed: int = 0) -> FusionModel:
    """Factory: linear head on mean-pooled image_clip_vit_b32 features of the visible CXR studies.

    Weights come from $MEHR_BENCH_WEIGHTS_IMAGE_CLIP_VIT_B32; without them fit() refuses
    (UserError) unless $MEHR_BENCH_ALLOW_RANDOM_WEIGHTS=1 (tests only).
    """
    return FusionModel(head="concat_lr", budget=budget, seed=seed, name="image_clip_vit_b32",
                       inputs=InputConfig(structured=False, timeline=False, modalities=("cxr",),
                                          sources={"cxr": "image_clip_vit_b32"}))


SPEC = spec(
    "image_clip_vit_b32",
    f"Frozen {INFO.name.removeprefix('image_')} features ({INFO.dim}-d) of the CXR images visible at the "
    "prediction time, mean-pooled, with a linear head. Needs a local weights file; refuses random weights.",
    make, modalities=("cxr",), requires=("cxr",), n_parameters=INFO.n_parameters,
    license="Apache-2.0 (code); weights: the license of the file you provide",
    reference=INFO.reference)
