"""The models of the CT + EHR fusion paper's heads (`encoders.fusion.paper_heads`): one spec per EHR
source, every one reading one EHR vector and one image modality (ct, else cxr, else wsi), survival
tasks trained with TorchSurv's Weibull NLL.

Name suffix = EHR source (`InputConfig.ehr_source`): "" the bag-of-events vector, "_fm" an EHR
foundation-model embedding at the prediction time, "_curated" the task's curated binarized risk factors.
"""

from __future__ import annotations

from functools import partial

from encoders.fusion.estimator import FusionModel
from encoders.fusion.inputs import InputConfig
from encoders.fusion.paper_heads import IMAGE_PRIORITY
from encoders.models._common import spec

REFERENCE = ("Fusion is not one-size-fits-all: Cross-Modal Representation Alignment for Time-to-Event Modeling "
             "(arXiv 2606.15038)")
# suffix -> (InputConfig.ehr_source, words for the description)
EHR_SOURCES = {"": ("bag", "the bag-of-events EHR vector"),
               "_fm": ("fm", "an EHR foundation-model embedding at the prediction time"),
               "_curated": ("curated", "the task's curated binarized risk factors")}


def make(budget=None, seed: int = 0, *, head: str, name: str, source: str, image: bool, ehr: bool,
         head_params: dict | None = None) -> FusionModel:
    """Factory of one paper model (bound with functools.partial per registered name)."""
    inputs = InputConfig(structured=ehr, timeline=False, modalities=IMAGE_PRIORITY if image else (),
                         ehr_source=source)
    return FusionModel(head=head, budget=budget, seed=seed, inputs=inputs, head_params=head_params,
                       survival="weibull", name=name, image_priority=IMAGE_PRIORITY if image else None)


def paper_specs(base: str, head: str, what: str, *, image: bool = True, ehr: bool = True,
                head_params: dict | None = None, suffixes: tuple[str, ...] = tuple(EHR_SOURCES)) -> tuple:
    """The specs of one paper head, one per EHR source.

    Args:
        base: the model name without the source suffix.
        head: the key of `heads.HEADS`.
        what: one sentence: what the head computes.
        image, ehr: which inputs it reads.
        head_params: fixed head hyperparameters (e.g. guide="ehr").
        suffixes: the EHR sources to register (keys of EHR_SOURCES).

    Returns:
        Tuple of ModelSpec.
    """
    mods = (("structured",) if ehr else ()) + (IMAGE_PRIORITY if image else ())
    out = []
    for suffix in suffixes:
        source, words = EHR_SOURCES[suffix]
        name = base + suffix
        ehr_words = f" EHR = {words}." if ehr else ""
        img_words = " Image = the task's CT (else CXR, else WSI) embedding." if image else ""
        out.append(spec(name, f"{what}{ehr_words}{img_words} Survival: Weibull NLL (TorchSurv).",
                        partial(make, head=head, name=name, source=source, image=image, ehr=ehr,
                                head_params=head_params),
                        modalities=mods, reference=REFERENCE))
    return tuple(out)
