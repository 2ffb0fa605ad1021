"""The record of one grid cell: its provenance, counts and compute block, validated into a
ResultRecord (moved here from benchmark.runner, which re-exports these names)."""

from __future__ import annotations

import resource
from typing import TYPE_CHECKING

from pydantic import ValidationError

from benchmark import __version__
from benchmark.data.cohort import Cohort
from benchmark.model_api import Budget, TaskData
from benchmark.records import DatasetRef, Hardware, ModelInfo, Provenance, ResultRecord, compute_block, dataset_name
from benchmark.records import SCHEMA_VERSION
from benchmark.results import git_sha, hardware, lockfile_hash
from benchmark.taskspec import TaskSpec

if TYPE_CHECKING:
    from benchmark.runner import Cell


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _provenance(task: TaskSpec, cohort: Cohort, labels_hash: str | None = None) -> Provenance:
    """Code, task definition, data (and labels made elsewhere) and machine of a cell."""
    return Provenance(package_version=__version__, git_sha=git_sha(), task_hash=task.content_hash(),
                      data_fingerprint=cohort.fingerprint(), lockfile_hash=lockfile_hash(),
                      hardware=Hardware(**hardware()), cohort=str(cohort.root),
                      **({"labels_hash": labels_hash} if labels_hash else {}))  # unset: files as before


def _dataset(cohort: Cohort) -> DatasetRef:
    """Which data a cell ran on: the cohort's dataset name and content fingerprint."""
    return DatasetRef(name=dataset_name(cohort.root) or "unnamed dataset", fingerprint=cohort.fingerprint())


def _counts(data: TaskData) -> dict[str, int | None]:
    """n_train, n_tuning, n_test and n_events (held-out) of a cell's data."""
    return {"n_train": int(data.frame("train").height), "n_tuning": int(data.frame("tuning").height),
            "n_test": int(data.frame("held_out").height), "n_events": data.task.kind_obj.n_events(data.y("held_out"))}


def _record(cell: Cell, cohort: Cohort, budget: Budget, *, counts: dict, info: dict, reached: dict, wall_s: float,
            peak_rss_mb: float, spec_n_parameters: int | None) -> ResultRecord:
    """Build a cell's ResultRecord (validated). Model output the record cannot hold (say, explanations
    that are not a mapping) makes the cell "failed" with the validation message, not a lost cell.

    Args:
        cell: the cell.
        cohort: the cohort.
        budget: the budget it ran under.
        counts: n_train, n_tuning, n_test, n_events (None where unknown).
        info: spec fields plus the model's Prediction.info (the model_info block).
        reached: the optional fields the cell reached (status, metrics, refused, error, fairness...).
        wall_s, peak_rss_mb, spec_n_parameters: for the compute block.

    Returns:
        The record.
    """
    spec, task = cell.spec, cell.task

    def build(info: dict, reached: dict) -> ResultRecord:
        return ResultRecord(
            schema_version=SCHEMA_VERSION, model=spec.name, task=task.name, task_version=task.version,
            task_kind=task.kind, seed=cell.seed, budget=budget.name, main_metric=task.main_metric,
            dataset=_dataset(cohort), **counts, provenance=_provenance(task, cohort, cell.labels_hash),
            model_info=ModelInfo(**info),
            compute=compute_block(info, wall_s=wall_s, peak_rss_mb=peak_rss_mb, spec_n_parameters=spec_n_parameters),
            **reached)

    try:
        return build(info, reached)
    except ValidationError as e:
        base = {k: info[k] for k in ("kind", "modalities", "reference")}
        return build(base, {"status": "failed", "error": f"the model's output does not fit a result record: {e}"})


def _failed_record(cell: Cell, cohort: Cohort, budget: Budget, error: str, wall_s: float) -> ResultRecord:
    """The record of a cell that raised outside run_cell's own guard (its work folder, its lock...);
    counts are unknown (None). It is not written: the cell stays unfinished on disk."""
    s = cell.spec
    info = {"kind": s.kind, "modalities": list(s.modalities), "reference": s.reference}
    return _record(cell, cohort, budget, counts=dict.fromkeys(("n_train", "n_tuning", "n_test", "n_events")),
                   info=info, reached={"status": "failed", "error": error}, wall_s=round(wall_s, 3),
                   peak_rss_mb=round(_peak_rss_mb(), 1), spec_n_parameters=s.n_parameters)
