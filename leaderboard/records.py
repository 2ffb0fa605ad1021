"""Result files in, typed groups out: no HTML, no ranking rules.

    load_records(results_dir)        every seed*.json (sorted) plus the problems of unusable files
    dataset_of(record) -> Dataset    which dataset (name + fingerprint) a record belongs to
    TaskInfo, ModelInfo, Cell        a task, a model, and one (model, task) cell of the leaderboard
    task_info / model_info           TaskInfo / ModelInfo from the registries, else from the results
    read_predictions(path)           a held-out predictions parquet (cached), or None
    metric_label, higher_is_better   the metric vocabulary of the result files

Imports point one way inside the package: records <- rules <- figures <- views <- render <- build.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from benchmark.kinds import LOWER_IS_BETTER  # noqa: F401  (the one vocabulary; re-exported)

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
def load_records(results_dir: Path, exclude: Path | None = None) -> tuple[list[dict], list[str]]:
    """Read every `seed*.json` under results_dir (sorted), skipping hidden folders and `exclude`.

    Args:
        results_dir: the results folder.
        exclude: a folder inside it to skip (the site itself).

    Returns:
        (records, problems): records get `_json` and `_pred` (predictions parquet path) keys;
        problems lists files that could not be used, by path relative to results_dir.
    """
    results_dir = Path(results_dir)
    recs, problems = [], []
    ex = exclude.resolve() if exclude is not None else None
    for p in sorted(results_dir.rglob("seed*.json")):
        rel = p.relative_to(results_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if ex is not None and p.resolve().is_relative_to(ex):
            continue
        try:
            r = json.loads(p.read_text())
        except (OSError, ValueError):
            problems.append(f"{rel.as_posix()}: not readable JSON")
            continue
        if not isinstance(r, dict) or not isinstance(r.get("model"), str) or not isinstance(r.get("task"), str):
            problems.append(f"{rel.as_posix()}: no model / task fields")
            continue
        r["_json"] = p
        r["_pred"] = p.with_name(p.name[: -len(".json")] + ".predictions.parquet")
        recs.append(r)
    recs.sort(key=lambda r: (r["model"], r["task"], to_int(r.get("seed")), str(r["_json"])))
    return recs, problems


def to_int(x: Any, default: int = 0) -> int:
    """x as an int when it is a finite number, else `default` (seeds, task versions)."""
    return int(x) if is_num(x) else default


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


def _cohort_name(cohort: Any) -> str:
    """The dataset name of a cohort folder: metadata/dataset.json's dataset_name, else the folder
    name (never the full path: paths are not written to the site)."""
    if not isinstance(cohort, str) or not cohort:
        return ""
    try:
        meta = json.loads((Path(cohort) / "metadata" / "dataset.json").read_text(encoding="utf-8"))
        if isinstance(meta, dict) and isinstance(meta.get("dataset_name"), str) and meta["dataset_name"].strip():
            return meta["dataset_name"].strip()
    except (OSError, ValueError):
        pass
    return Path(cohort).name


def dataset_of(rec: Mapping) -> Dataset:
    """Which dataset a result record belongs to: record["dataset"] ({name, fingerprint} or a name)
    if present, else provenance.data_fingerprint with the cohort's dataset.json name.

    Args:
        rec: a result record.

    Returns:
        Dataset (key = fingerprint; records without a fingerprint are grouped by name).
    """
    ds = rec.get("dataset")
    prov = rec.get("provenance") if isinstance(rec.get("provenance"), dict) else {}
    name, fp = "", ""
    if isinstance(ds, dict):
        name = str(ds.get("name") or ds.get("dataset_name") or "")
        fp = str(ds.get("fingerprint") or ds.get("data_fingerprint") or "")
    elif isinstance(ds, str):
        name = ds
    fp = fp or str(prov.get("data_fingerprint") or "")
    name = name or _cohort_name(prov.get("cohort")) or "unnamed dataset"
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
    records: list[dict]              # ok records, by seed
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


def task_info(name: str, spec: Any, recs: list[dict]) -> TaskInfo:
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
    r0 = recs[0] if recs else {}
    return TaskInfo(name=name, slug=slug(name), family=family, short=short, kind=str(r0.get("task_kind", "")),
                    main_metric=str(r0.get("main_metric", "")), version=r0.get("task_version"),
                    description="", modalities=[], fairness=[], references=[], metrics=(), label_names=[],
                    horizon_days=None, registered=False)


def model_info(name: str, spec: dict | None, recs: list[dict]) -> ModelInfo:
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
    info = next((r.get("model_info") for r in recs if isinstance(r.get("model_info"), dict)), {}) or {}
    n_par = next((r.get("compute", {}).get("n_parameters") for r in recs
                  if isinstance(r.get("compute"), dict) and is_num(r["compute"].get("n_parameters"))), None)
    kinds = sorted({str(r.get("task_kind")) for r in recs if r.get("task_kind")})
    return ModelInfo(name=name, slug=slug(name), registered=False, kind=str(info.get("kind", "")),
                     description=str(info.get("description", "")),
                     modalities=[str(m) for m in info.get("modalities", ()) or ()], task_kinds=kinds,
                     n_parameters=n_par, training_data=str(info.get("training_data", "")),
                     license=str(info.get("license", "")), reference=str(info.get("reference", "")),
                     authors=str(info.get("authors", "")), series=_series(name))


def _series(name: str) -> str:
    m = SIZE_RE.match(name)
    return m.group("base") if m else name
