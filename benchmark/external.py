"""External validation: `run --external-data DIR` scores each cell's fitted model on another dataset.

The paper "Fusion is not one-size-fits-all" reports every model on an internal cohort (where it was
fitted) and an external one (another hospital). Here, after a cell's internal fit and held-out
prediction, the SAME fitted model scores the external set, and the result lands in the record's
`external` list (benchmark.records.ExternalResult) with predictions next to the seed file as
`seed<k>.external-<fingerprint[:12]>.predictions.parquet` (binary; other kinds end in
`.predictions.<kind>.parquet`: benchmark.results.predictions_name).

Two kinds of external set:
  - a MEDS cohort: its labels are extracted from it alone (the task's own rules), every one of its
    samples is scored (a merged cohort, benchmark.external_cohort, makes every model family predict
    on it without model changes), with the same metrics, CIs and refusal rules as the internal test
    split. The binary decision threshold is the internal one (chosen on the internal tuning split).
  - an image folder with a CheXpert-style `labels.csv` (benchmark.external_images): only models with
    `predict_images` (benchmark.model_api.ImagePredictor) are scored; the others get "not applicable".

Nothing of the external set reaches a fit: the model is fitted before it is opened, on the internal
TaskData only. Fairness reports and modality ablations are internal only.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from benchmark.data.cohort import Cohort
from benchmark.errors import UserError
from benchmark.external_images import ImageFolder, image_applicability, open_image_folder, score_images
from benchmark.labels import TaskNotApplicable, extract_labels
from benchmark.model_api import ImagePredictor, Prediction, TaskData
from benchmark.records import DatasetRef, dataset_name
from benchmark.taskspec import TaskSpec

FLAG = "--external-data"
FIX = ("pass a MEDS cohort folder (data/, metadata/subject_splits.parquet; e.g. `python -m benchmark prepare "
       "synthetic --out DIR --site b`) or an image folder with a CheXpert-style labels.csv (a Path column, then "
       "one column per finding; `python -m benchmark prepare cxr-folder`)")


@dataclass
class ExternalSet:
    """An opened external dataset: a MEDS cohort or an image folder (one of the two is set)."""

    root: Path
    ref: DatasetRef
    cohort: Cohort | None = None
    images: ImageFolder | None = None
    _labels: dict[str, pl.DataFrame | str] = field(default_factory=dict)

    def labels(self, task: TaskSpec) -> pl.DataFrame | str:
        """The task's labels on the external cohort (from it alone), or why it has none (cached per task)."""
        if task.name not in self._labels:
            try:
                lab = extract_labels(task, self.cohort, announce=False).labels
                self._labels[task.name] = lab if lab.height else "the external cohort has no sample of this task"
            except TaskNotApplicable as e:
                self._labels[task.name] = f"the external dataset does not map {', '.join(e.missing)}"
        return self._labels[task.name]


def open_external(path: str | Path, internal: Cohort | None = None, dataset: str | None = None) -> ExternalSet:
    """Open and check an external dataset before any cell runs.

    Args:
        path: the --external-data folder.
        internal: the internal cohort (an external set that IS it is refused).
        dataset: a dataset profile for an external MEDS cohort (None: recognised from its dataset.json).

    Returns:
        The ExternalSet.

    Raises:
        UserError: not a folder, neither a cohort nor an image folder, a cohort failing the integrity
            checks, a bad labels.csv, or the internal cohort itself; each names the folder and the fix.
    """
    from benchmark.data.integrity import require_integrity

    root = Path(path)
    if not root.is_dir():
        raise UserError("external dataset folder not found", file=root, field=FLAG, fix=FIX)
    if (root / "labels.csv").is_file():
        folder = open_image_folder(root)
        return ExternalSet(root=root, ref=DatasetRef(name=root.resolve().name, fingerprint=folder.fingerprint),
                           images=folder)
    if not (root / "data").is_dir() or not (root / "metadata" / "subject_splits.parquet").is_file():
        raise UserError("neither a MEDS cohort (data/ and metadata/subject_splits.parquet) nor an image folder "
                        "(labels.csv)", file=root, field=FLAG, fix=FIX)
    cohort = Cohort(root, dataset=dataset)
    require_integrity(cohort)
    fp = cohort.fingerprint()
    if internal is not None and fp == internal.fingerprint():
        raise UserError("the external dataset is the cohort the models are fitted on", file=root, field=FLAG,
                        fix="pass another cohort (another site) to --external-data, or leave the flag out")
    return ExternalSet(root=root, ref=DatasetRef(name=dataset_name(root) or "unnamed dataset", fingerprint=fp),
                       cohort=cohort)


def applicability(ext: ExternalSet, task: TaskSpec) -> str | None:
    """Why a task cannot be scored on an external set at all, or None (checked before any cell).

    Raises:
        UserError: an image folder whose labels.csv columns do not match a CXR multilabel task's outcomes.
    """
    if ext.images is not None:
        return image_applicability(ext.images, task)
    lab = ext.labels(task)
    return lab if isinstance(lab, str) else None


def predictions_name(seed: int, fingerprint: str, kind: str = "binary") -> str:
    """File name of a cell's external predictions (next to seed<k>.json; benchmark.results.predictions_name)."""
    from benchmark.results import predictions_name as name

    return name(kind, seed, fingerprint)


def score_external(model, data: TaskData, val: Prediction | None, ext: ExternalSet, *, n_boot: int, seed: int,
                   make_data: Callable[[TaskSpec, Cohort, int, pl.DataFrame], TaskData],
                   score: Callable) -> tuple[dict, pl.DataFrame | None]:
    """Score a fitted model on the external set.

    Args:
        model: the model, fitted on `data`.
        data: the internal TaskData it was fitted on.
        val: its internal tuning prediction (sets the binary threshold), or None.
        ext: the external set.
        n_boot, seed: bootstrap replicates and seed (as for the internal metrics).
        make_data: builds a TaskData (task, cohort, seed, labels) as the runner does.
        score: benchmark.scoring.score_cell.

    Returns:
        (the ExternalResult fields as a dict, the predictions frame to write or None). A crash is
        caught: the entry then carries `error` (the internal result is never lost to it).
    """
    entry: dict = {"dataset": ext.ref.model_dump()}
    try:
        why = applicability(ext, data.task)
        if why is None and ext.images is not None and not isinstance(model, ImagePredictor):
            why = (f"the model has no predict_images (benchmark.model_api.ImagePredictor): it reads a cohort, "
                   f"not bare image files")
        if why is not None:
            return entry | {"not_applicable": why}, None
        if ext.images is not None:
            fields, frame = score_images(model, data.task, ext.images, n_boot=n_boot, seed=seed)
            return entry | fields, frame
        return _score_cohort(model, data, val, ext, entry, n_boot=n_boot, seed=seed, make_data=make_data,
                             score=score)
    except Exception as e:  # noqa: BLE001 - the internal cell stands; the entry records the crash
        tb = traceback.format_exc(limit=4).strip().splitlines()[-1]
        return entry | {"error": f"{type(e).__name__}: {e} ({tb})"}, None


def external_task_data(data: TaskData, ext: ExternalSet, make_data) -> tuple[TaskData, int]:
    """The merged TaskData: the internal train + tuning samples, and every external sample as held_out.

    Returns:
        (TaskData on the merged cohort, the id offset of the external subjects).
    """
    from benchmark.external_cohort import merged_cohort

    merged, offset = merged_cohort(data.cohort, ext.cohort)
    ext_labels = ext.labels(data.task)
    internal = data.labels.filter(pl.col("split").is_in(["train", "tuning"])).drop("split")
    moved = ext_labels.with_columns((pl.col("subject_id").cast(pl.Int64) + offset).alias("subject_id"))
    labels = pl.concat([internal, moved.select(internal.columns)], how="vertical_relaxed")
    return make_data(data.task, merged, data.seed, labels), offset


def _score_cohort(model, data: TaskData, val, ext: ExternalSet, entry: dict, *, n_boot, seed, make_data, score):
    """A MEDS external cohort: predict its samples through the merged TaskData and score them."""
    mdata, offset = external_task_data(data, ext, make_data)
    for s in ("train", "tuning"):  # the fit's rows are the merged cohort's train / tuning rows, in order
        if not mdata.frame(s).select("subject_id", "prediction_time").equals(
                data.frame(s).select("subject_id", "prediction_time")):
            raise RuntimeError(f"the merged cohort's {s} rows differ from the internal ones")
    pred = model.predict(mdata, "held_out")
    metrics = score(mdata, pred, val, n_boot, seed)
    metrics.pop("_threshold", None)  # the internal threshold, already in the internal metrics
    y = mdata.y("held_out")
    samples = mdata.samples("held_out").with_columns(pl.col("subject_id") - offset)
    frame = data.task.kind_obj.predictions_frame(samples, y, np.asarray(pred.score), data.task.label_names())
    return entry | {"n_test": int(len(y)), "n_events": data.task.kind_obj.n_events(y), "metrics": metrics}, frame
