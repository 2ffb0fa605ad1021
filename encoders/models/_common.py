"""Shared pieces of the encoder + head model specs (the spec helper itself is public: benchmark.api)."""

from __future__ import annotations

from benchmark.api import ALL_KINDS, TRAINING_DATA, spec  # noqa: F401  (re-exported for the model files)

from benchmark.vocabulary import SIDE_MODALITIES

SIDE = SIDE_MODALITIES  # the sidecar modalities, under the short name the model files use
