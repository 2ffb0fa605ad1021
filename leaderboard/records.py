"""Result files in, typed groups out: no HTML, no ranking rules.

    load_records(results_dir)        every result file as a ResultFile (typed record + path), read by
                                     benchmark.results.read_record_files, plus the unusable files
    dataset_of(record) -> Dataset    which dataset (name + fingerprint) a record belongs to
    TaskInfo, ModelInfo, Cell        a task, a model, and one (model, task) cell of the leaderboard
    task_info / model_info           TaskInfo / ModelInfo from the registries, else from the results
    read_predictions(path)           a held-out predictions parquet (cached), or None
    metric_label, higher_is_better   the metric vocabulary of the result files

Imports point one way inside the package: records <- rules <- figures <- views <- render <- build.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.kinds import LOWER_IS_BETTER  # noqa: F401  (the one vocabulary; re-exported)
from benchmark.records import ResultRecord
from benchmark.results import predictions_path, read_record_files

BOUNDED_01 = frozenset({"auroc", "auprc", "auroc_macro", "auprc_macro", "c_index_harrell", "c_index_uno",
                        "td_auc", "brier", "ece", "sensitivity", "specificity", "ppv", "npv", "f1"})
METRIC_LABELS = {
    "auroc": "AUROC", "auprc": "AUPRC", "brier": "Brier", "ece": "ECE", "auroc_macro": "macro AUROC",
    "auprc_macro": "macro AUPRC", "c_index_harrell": "Harrell's C", "c_index_uno": "Uno's C",
    "td_auc": "td-AUC (mean)", "ibs": "IBS", "mae": "MAE", "rmse": "RMSE", "r2": "R\u00b2",
    "sensitivity": "sensitivity", "specificity": "specificity", "ppv": "PPV", "npv": "NPV", "f1": "F1",
}
SIZE_RE = re.compile(r"^(?P<base>.+?)[-_](?P<size>tiny|mini|small|base|medium|large|huge|xl|xxl|"
                     r"\d+(?:\.\d+)?[kmbt]?)$", re.IGNORECASE)
# Task families that are audits (pass / fail), never ranked or averaged: the planted leak probe.
AUDIT_FAMILIES = frozenset({"leak"})


# =========================================================================== helpers
def is_num(x: Any) -> bool:
    """Whether x is a finite int or float (not a bool): the guard on every number a result file gives."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def slug(name: str) -> str:
    """A safe file name for a model or task name ('/' -> '--'; other odd characters replaced and a
    short hash added so distinct names never collide).

    Args:
        name: model or task name.

    Returns:
        The slug (no path separators, never starting with a dot).
    """
    base = name.replace("/", "--")
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", base)
    if s != base or s.startswith(".") or not s:
        s = "x" + s.lstrip(".") + "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return s


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of the metric is better.

    Args:
        metric: metric name (e.g. auroc, td_auc@365, mae).

    Returns:
        False for brier, ece, ibs, mae, rmse; True otherwise.
    """
    return metric.split("@")[0] not in LOWER_IS_BETTER


def metric_label(name: str, label_names: list[str] | None = None) -> str:
    """Display name of a metric: 'auroc/3' -> 'AUROC · <label 3>', 'td_auc@412.7' -> 'td-AUC @ 413 d'.

    Times are rounded to whole days: the runner picks td-AUC times at event-time quantiles, which
    can coincide with one patient's time to event.

    Args:
        name: the metric key in the result file.
        label_names: multilabel label names by index.

    Returns:
        The display text.
    """
    if name.startswith("td_auc@"):
        try:
            return f"td-AUC @ {round(float(name.split('@', 1)[1]))} d"
        except ValueError:
            return name
    if "/" in name:
        head, tail = name.split("/", 1)
        if tail.isdigit() and label_names and int(tail) < len(label_names):
            tail = label_names[int(tail)]
        return f"{METRIC_LABELS.get(head, head)} \u00b7 {tail}"
    return METRIC_LABELS.get(name, name)


# =========================================================================== loading
@dataclass(frozen=True)
class ResultFile:
    """One result file: its typed record and where it lies (the predictions parquet sits next to it)."""

    rec: ResultRecord
    path: Path

    @property
    def pred(self) -> Path:
        """The held-out predictions parquet of this cell (benchmark.results.predictions_path: named by kind)."""
        return predictions_path(self.path, self.rec.task_kind)


def load_records(results_dir: Path, exclude: Path | None = None,
                 few_shot: bool | None = False) -> tuple[list[ResultFile], list[str]]:
    """Every result file under results_dir, read by the benchmark's one reader
    (`benchmark.results.read_record_files`: hidden folders and `exclude` skipped).

    Args:
        results_dir: the results folder.
        exclude: a folder inside it to skip (the site itself).
        few_shot: False (default): full-data cells only (few-shot cells, fitted on a drawn subset, are
            never ranked or compared with them); True: few-shot cells only; None: both.

    Returns:
        (files sorted by model, task, seed, path; problems): each problem names an unusable file by
        its path relative to results_dir (absolute paths are never written to the site) and says why.
    """
    found, problems = read_record_files(results_dir, exclude)
    prefix = str(Path(results_dir)).rstrip("/") + "/"
    found = [(p, rec) for p, rec in found if few_shot is None or (rec.few_shot is not None) == few_shot]
    return ([ResultFile(rec=rec, path=p) for p, rec in found],
            [t[len(prefix):] if t.startswith(prefix) else t for t in problems])


def registry_tasks() -> dict[str, Any]:
    """Task name -> TaskSpec from the task registry ({} when it cannot be read)."""
    try:
        from benchmark.task_registry import load_tasks
        return dict(load_tasks())
    except Exception:  # noqa: BLE001 - the site falls back to what the results say
        return {}


def registry_spec(name: str) -> dict | None:
    """The registered model spec's public dict, or None for a model the registry does not know."""
    try:
        from benchmark.registry import get_model
        return get_model(name).public_dict()
    except Exception:  # noqa: BLE001 - unregistered / unimportable: fall back to the results
        return None


_PRED_CACHE: dict[tuple[str, int, int], Any] = {}


def read_predictions(path: Path):
    """A predictions parquet (cached by path, size and mtime within the process), or None."""
    import polars as pl
    try:
        st = Path(path).stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in _PRED_CACHE:
            if len(_PRED_CACHE) > 256:
                _PRED_CACHE.clear()
            _PRED_CACHE[key] = pl.read_parquet(path)
        return _PRED_CACHE[key]
    except Exception:  # noqa: BLE001 - missing or unreadable: the page says so
        return None


@dataclass(frozen=True)
class Dataset:
    """The dataset a group of result files was computed on."""

    key: str            # the fingerprint, or "name:<name>" for result files without one
    name: str
    fingerprint: str    # "" when the result files carry none
    slug: str

    @property
    def short(self) -> str:
        """The fingerprint as shown (16 hex digits; the full one is in the page's title text)."""
        return self.fingerprint[:16] if self.fingerprint else "not recorded"


def dataset_of(rec: ResultRecord) -> Dataset:
    """Which dataset a result record belongs to (its `dataset`: name + fingerprint; the reader
    derives it for version-1 files).

    Args:
        rec: a result record.

    Returns:
        Dataset (key = fingerprint; records without a fingerprint are grouped by name).
    """
    name, fp = rec.dataset.name or "unnamed dataset", rec.dataset.fingerprint
    key = fp or f"name:{name}"
    tag = hashlib.sha256(key.encode()).hexdigest()[:8]
    return Dataset(key=key, name=name, fingerprint=fp, slug=slug(f"{name}-{fp[:12] or tag}"))


# =========================================================================== tasks, models, cells
@dataclass
class TaskInfo:
    name: str
    slug: str
    family: str
    short: str
    kind: str
    main_metric: str
    version: int | None
    description: str
    modalities: list[str]
    fairness: list[str]
    references: list[str]
    metrics: tuple[str, ...]
    label_names: list[str]
    horizon_days: float | None
    registered: bool
    older_versions: dict[int, int] = field(default_factory=dict)  # version -> number of result files
    registry_version: int | None = None

    @property
    def audit(self) -> bool:
        """An audit task (the leak probe): pass / fail, never ranked or averaged."""
        return self.family in AUDIT_FAMILIES


@dataclass
class ModelInfo:
    name: str
    slug: str
    registered: bool
    kind: str
    description: str
    modalities: list[str]
    task_kinds: list[str]
    n_parameters: Any
    training_data: str
    license: str
    reference: str
    authors: str
    series: str
    color: int = 0


@dataclass
class Cell:
    model: str
    task: str
    status: str                      # ok | refused | failed
    seeds: list[int]
    n_ok: int
    metrics: dict[str, dict]         # aggregated over ok seeds
    main: dict                       # aggregated main metric
    records: list[ResultFile]        # ok records, by seed
    compute: dict
    n_test: Any
    n_events: Any
    reason: str = ""
    rank: int | None = None
    best: bool = False
    n_ranked: int = 0
    unranked: str = ""               # why an ok cell is not ranked (too few events, no CI)
    tied: bool = False               # statistically tied with the best of its column
    tie_note: str = ""               # the test against the best, in words
    verdict: str = ""                # audit tasks: pass | fail | inconclusive


def task_info(name: str, spec: Any, recs: list[ResultFile]) -> TaskInfo:
    """A task as the site describes it.

    Args:
        name: task name (family/short).
        spec: its TaskSpec (or dict) from the registry, or None.
        recs: its result records (the fallback when the registry does not know it).

    Returns:
        TaskInfo.
    """
    family, short = (name.split("/", 1) if "/" in name else ("other", name))
    if spec is not None:
        d = spec.model_dump(mode="json") if hasattr(spec, "model_dump") else dict(spec)
        label = d.get("label") or {}
        outcomes = label.get("outcomes") if isinstance(label, dict) else None
        try:
            horizon = spec.horizon_days() if hasattr(spec, "horizon_days") else d.get("horizon_days")
        except Exception:  # noqa: BLE001
            horizon = None
        return TaskInfo(name=name, slug=slug(name), family=family, short=short, kind=str(d.get("kind", "")),
                        main_metric=str(d.get("main_metric", "")), version=d.get("version"),
                        description=str(d.get("description", "")), modalities=list(d.get("modalities", ())),
                        fairness=list(d.get("fairness", ())), references=[str(x) for x in d.get("references", ())],
                        metrics=tuple(d.get("metrics", ())),
                        label_names=list(outcomes) if outcomes else list(d.get("label_names", ()) or ()),
                        horizon_days=horizon if is_num(horizon) else None, registered=True)
    r0 = recs[0].rec if recs else None
    return TaskInfo(name=name, slug=slug(name), family=family, short=short, kind=r0.task_kind if r0 else "",
                    main_metric=r0.main_metric if r0 else "", version=r0.task_version if r0 else None,
                    description="", modalities=[], fairness=[], references=[], metrics=(), label_names=[],
                    horizon_days=None, registered=False)


def model_info(name: str, spec: dict | None, recs: list[ResultFile]) -> ModelInfo:
    """A model as the site describes it: its registry spec, else what its result records say.

    Args:
        name: model name.
        spec: the spec's public dict, or None.
        recs: its result records.

    Returns:
        ModelInfo.
    """
    if spec:
        return ModelInfo(name=name, slug=slug(name), registered=True, kind=str(spec.get("kind", "")),
                         description=str(spec.get("description", "")),
                         modalities=[str(m) for m in spec.get("modalities", ())],
                         task_kinds=[str(k) for k in spec.get("task_kinds", ())],
                         n_parameters=spec.get("n_parameters"), training_data=str(spec.get("training_data", "")),
                         license=str(spec.get("license", "")), reference=str(spec.get("reference", "")),
                         authors=str(spec.get("authors", "")), series=_series(name))
    info = recs[0].rec.model_info if recs else None
    extra = (info.model_extra or {}) if info is not None else {}
    n_par = next((r.rec.compute.n_parameters for r in recs if r.rec.compute.n_parameters is not None), None)
    return ModelInfo(name=name, slug=slug(name), registered=False, kind=info.kind if info is not None else "",
                     description=str(extra.get("description", "")),
                     modalities=list(info.modalities) if info is not None else [],
                     task_kinds=sorted({r.rec.task_kind for r in recs if r.rec.task_kind}),
                     n_parameters=n_par, training_data=str(extra.get("training_data", "")),
                     license=str(extra.get("license", "")), reference=info.reference if info is not None else "",
                     authors=str(extra.get("authors", "")), series=_series(name))


def _series(name: str) -> str:
    m = SIZE_RE.match(name)
    return m.group("base") if m else name
