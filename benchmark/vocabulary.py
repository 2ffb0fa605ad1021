"""Shared vocabularies, defined once: split names and modality names.

Every module that needs one of these tuples imports it from here (tests/test_architecture.py
greps for re-definitions). `import benchmark.vocabulary` has no dependencies.
"""

from __future__ import annotations

from typing import Literal

# MEDS split names (meds.train_split, meds.tuning_split, meds.held_out_split), in run order
SPLITS = ("train", "tuning", "held_out")
# the splits a cohort must have (a tuning split is optional: folds are cut from train then)
REQUIRED_SPLITS = ("train", "held_out")
# the splits a model may fit on
FIT_SPLITS = ("train", "tuning")

# sidecar modalities (<cohort>/modalities/<name>.parquet); prs is static, the others time-stamped
SIDE_MODALITIES = ("ct", "wsi", "cxr", "note", "prs")
# sidecars that carry images (embedding or path)
IMAGE_MODALITIES = ("ct", "wsi", "cxr")
# what a model may consume: the MEDS event stream ("structured") plus the sidecars
MODEL_MODALITIES = ("structured", *SIDE_MODALITIES)

SideModality = Literal["ct", "wsi", "cxr", "note", "prs"]
ModelModality = Literal["structured", "ct", "wsi", "cxr", "note", "prs"]
