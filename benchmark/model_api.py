"""What the runner hands a model, and what it expects back.

A model is built by its spec's factory as ``factory(budget=Budget, seed=int)`` and then:

    model.fit(data)                      # data: TaskData (train + tuning visible)
    model.predict(data, "held_out")      # -> Prediction
    model.predict(data, "tuning")        # used to choose thresholds on validation data

Scores: binary = P(y=1) [n]; multilabel = P(label) [n, L]; survival = risk [n] (higher = earlier
event), optionally survival curves; regression = value [n]. All model input goes through
`TaskData.visible_events()` / `visible_modality()` (the leakage guard).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import polars as pl

from benchmark.data.cohort import Cohort
from benchmark.data.leakage import demographic_rows, visible_events, visible_modality, with_input_window
from benchmark.taskspec import TaskSpec


class NotApplicable(Exception):
    """Raised by a model's `fit` when it cannot answer this task on this data (e.g. a zero-shot model
    whose outcome no token can express). The runner records the cell as "refused" with the message,
    not as "failed": the model worked as designed, the task is outside what it can answer."""


@dataclass(frozen=True)
class Budget:
    """How much search, training and resampling a run may spend, the same for every model family.

    The level name ("smoke": seconds per cell, "default": fits `make run`, "full") is what a family
    maps to its own knobs where the generic ones do not fit (MEHRT: size and pretraining steps, in
    encoders/mehrt/pipeline.py); the core knows no family.

    Args:
        name: the level name (the record's `budget`).
        n_trials: random-search trials per model.
        n_folds: CV folds for the search.
        max_iterations: iteration cap (boosting rounds, epochs, training steps of a head).
        n_boot: bootstrap replicates for the metrics' CIs.
    """

    name: str
    n_trials: int
    n_folds: int
    max_iterations: int
    n_boot: int


BUDGETS = {
    "smoke": Budget("smoke", n_trials=1, n_folds=3, max_iterations=60, n_boot=200),
    "default": Budget("default", n_trials=4, n_folds=5, max_iterations=300, n_boot=1000),
    "full": Budget("full", n_trials=30, n_folds=5, max_iterations=1500, n_boot=1000),
}


@dataclass
class Prediction:
    """A model's output on one split, aligned with TaskData.samples(split)."""

    score: np.ndarray
    surv_times: np.ndarray | None = None     # [k] days, survival models only
    surv_prob: np.ndarray | None = None      # [n, k] S(t) at surv_times
    # The keys the runner reads (explanations, device, n_parameters, tokens_per_s) are listed in
    # benchmark.records.PredictionInfo; any other key is copied verbatim into the record's model_info.
    info: dict[str, Any] = field(default_factory=dict)


class Model(Protocol):
    """fit and predict (module docstring). Optional: ``prepare(cohort) -> str | None``, the model's
    label-free, task-independent work (e.g. MEHRT/EHRT pretraining into the shared cache), which
    the runner calls once per (model, seed, budget) among the cells it will compute, before that
    model's cells, as a visible step (its returned line is printed: "pretrained stages 1-3 in 274 s",
    "pretraining cached"). It must be idempotent and may run in another process than the cells
    (`run --jobs`, Ray): everything it makes goes to the on-disk cache, under file locks. A prepare
    that raises fails that model's cells (with its error), not the others'."""

    def fit(self, data: "TaskData") -> "Model": ...
    def predict(self, data: "TaskData", split: str) -> Prediction: ...


@runtime_checkable
class ImagePredictor(Protocol):
    """Optional: a model that can score bare image files (an image-only model, e.g. a CXR classifier).

    `run --external-data DIR` with an image folder (a CheXpert-style `labels.csv` + images,
    benchmark.external) scores only models with this method; any other model gets a "not applicable"
    external entry, never a number. Called after `fit` on the task's own cohort.

    predict_images(paths) -> probabilities [n, n_labels]: row i for image paths[i], columns in the
    task's `outcomes` order (TaskData.task.label_names()).
    """

    def predict_images(self, paths: list[Path]) -> np.ndarray: ...


class Representer(Protocol):
    """Optional: a model that can hand out one frozen patient vector per sample (an EHR foundation
    model), e.g. for the fusion heads' EHR source "fm" (encoders.fusion.ehr_sources).

    ``represent(data, split)`` returns float32 [n, d], rows aligned with ``data.samples(split)``:
    each sample's vector at its prediction time, read only through the leakage guard
    (`TaskData.visible_events` / `visible_modality`, the task's input window applied), from a model
    pretrained without labels on the training split only. It may be called before or without
    `fit` and must not read any label.
    """

    def represent(self, data: "TaskData", split: str | tuple[str, ...]) -> np.ndarray: ...


@dataclass
class TaskData:
    """One task's labeled samples on one cohort, with splits, for one seed."""

    task: TaskSpec
    cohort: Cohort
    labels: pl.DataFrame  # LabelSchema columns + split, sorted by subject_id, prediction_time
    seed: int
    work_dir: Path        # per (task, data) cache folder for features/embeddings

    def frame(self, split: str | tuple[str, ...]) -> pl.DataFrame:
        """Label rows of one or several splits, in label order (subject_id, prediction_time)."""
        splits = (split,) if isinstance(split, str) else split
        return self.labels.filter(pl.col("split").is_in(list(splits)))

    def stacked(self, splits: tuple[str, ...]) -> pl.DataFrame:
        """Label rows of several splits stacked split after split (all train rows, then all tuning
        rows), each split in label order: the row order of BagOfEvents.stacked and of models that
        fit on per-split blocks. frame(splits) is the same rows in label order."""
        return pl.concat([self.labels.filter(pl.col("split") == s) for s in splits])

    def samples(self, split: str | tuple[str, ...]) -> pl.DataFrame:
        """(subject_id, prediction_time) of a split, in label order."""
        return self.frame(split).select("subject_id", "prediction_time")

    def y(self, split: str | tuple[str, ...], *, stacked: bool = False) -> np.ndarray:
        """Targets: binary int8 [n]; multilabel int8 [n, L]; survival float [n, 2] (time days, event); regression float [n].

        Rows follow frame(split) (label order), or stacked(split) when stacked=True."""
        f = self.stacked((split,) if isinstance(split, str) else split) if stacked else self.frame(split)
        return self.task.kind_obj.targets(f, len(self.task.label_names()))

    def guard_samples(self, split: str | tuple[str, ...]) -> pl.DataFrame:
        """samples(split) plus, for a task with an `input_window`, the input_start column the leakage
        guard reads (benchmark.data.leakage.with_input_window); what visible_* pass to the guard."""
        return with_input_window(self.samples(split), self.task.input_lookback_s())

    def visible_events(self, split: str | tuple[str, ...], columns=("subject_id", "time", "code", "numeric_value")):
        """The leakage guard over MEDS events for the split's samples (LazyFrame); the task's input
        window applies (the profile's demographic codes, e.g. MEDS_BIRTH, are exempt from its start)."""
        return visible_events(self.cohort.scan(columns), self.guard_samples(split),
                              window_exempt=demographic_rows(self.cohort) if "code" in columns else None)

    def visible_modality(self, name: str, split: str | tuple[str, ...]):
        """The leakage guard over a modality sidecar for the split's samples (LazyFrame); the task's
        input window applies (rows without a time, e.g. a static PRS, stay visible)."""
        return visible_modality(self.cohort.modality(name), self.guard_samples(split))
