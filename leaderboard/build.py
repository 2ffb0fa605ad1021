"""Build the static HTML leaderboard from result files: `build(results_dir, out_dir) -> out_dir`.

The site is a pure function of the result files (plus the task and model registries for
descriptions): the same results give byte-identical files (sorted iteration, fixed number
formatting, no timestamps, no absolute paths). Pages:

    index.html                 one table per task family: models x tasks, main metric with 95% CI,
                               rank, a star on the best and on every model statistically tied
                               with it, macro average and mean rank per family; the leak probe
                               as a pass / fail audit outside the rankings; filters by model kind
                               and modality, sortable columns; scaling plots
    tasks/<task>.html          all metrics with CIs; ROC, PR and calibration plots (binary),
                               per-label AUROC (multilabel), Kaplan-Meier by risk tertile and
                               td-AUC (survival), binned predicted vs observed (regression);
                               fairness tables; SHAP summaries
    models/<model>.html        the model card (registry spec, else what the results say), results
                               and compute used, scaling plot when several sizes exist

Several seeds of a cell are averaged: value = mean over seeds, CI = mean of the per-seed bootstrap
intervals, and the seed standard deviation is shown. Only the newest version of each task is
ranked; results of older task versions are counted and listed, not mixed in.

Datasets: every page names the dataset (name + data fingerprint) its numbers come from. Results of
several datasets (fingerprints) in one folder are never mixed: index.html becomes a dataset selector
and each dataset gets its own leaderboard under datasets/<name>-<fingerprint>/.

Honesty: a cell is ranked only with at least MIN_CI_SUBJECTS test subjects in the rarer outcome
class and a main-metric CI; ties with the best are decided by a paired subject bootstrap
(`benchmark.stats.paired_bootstrap`) on the two models' held-out predictions of the same seed.

Small cells: no displayed number, alone or combined, gives a count of 1..9. Counts below 10 are
shown as "<10" (also inside notes such as "CI not reported: 7 positive subjects"); sensitivity,
specificity, PPV, NPV and F1 are withheld when, with n test, they solve to an event count or a
TP / FP / FN / TN cell below 10; fairness group rates are withheld when rates x counts would.

Privacy: pages hold aggregates only. Curves are read on fixed grids or in bins of at least 10
subjects (see `leaderboard.plots`), times of td-AUC are shown rounded to whole days, thresholds to
two decimals, and no subject id, time stamp or single-patient value is written.

The output folder is replaced atomically: the site is built into a temporary sibling folder and
swapped in (renameat2 RENAME_EXCHANGE where the OS offers it, else two renames). An existing
output folder is only replaced if it is empty or was written by this function (it holds the
marker file `.mehr-bench-leaderboard`); comparison pages (`compare-*.html`) in it are kept.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from benchmark.fairness import has_small_cell
from benchmark.metrics.bootstrap import MIN_CI_SUBJECTS
from leaderboard import plots

HERE = Path(__file__).resolve().parent
MARKER = ".mehr-bench-leaderboard"
KEEP_PATTERNS = ("compare-*.html", "compare-*.json")
LOWER_IS_BETTER = frozenset({"brier", "ece", "ibs", "mae", "rmse"})
BOUNDED_01 = frozenset({"auroc", "auprc", "auroc_macro", "auprc_macro", "c_index_harrell", "c_index_uno",
                        "td_auc", "brier", "ece", "sensitivity", "specificity", "ppv", "npv", "f1"})
METRIC_LABELS = {
    "auroc": "AUROC", "auprc": "AUPRC", "brier": "Brier", "ece": "ECE", "auroc_macro": "macro AUROC",
    "auprc_macro": "macro AUPRC", "c_index_harrell": "Harrell's C", "c_index_uno": "Uno's C",
    "td_auc": "td-AUC (mean)", "ibs": "IBS", "mae": "MAE", "rmse": "RMSE", "r2": "R\u00b2",
    "sensitivity": "sensitivity", "specificity": "specificity", "ppv": "PPV", "npv": "NPV", "f1": "F1",
}
KINDS = ("baseline", "encoder+head", "foundation")
SIZE_RE = re.compile(r"^(?P<base>.+?)[-_](?P<size>tiny|mini|small|base|medium|large|huge|xl|xxl|"
                     r"\d+(?:\.\d+)?[kmbt]?)$", re.IGNORECASE)
SHAP_TOP = 15
# Privacy: no displayed number, alone or combined with others, may give a count of 1..MIN_COUNT-1
# (events, non-events, confusion-matrix cells, subgroup cells).
MIN_COUNT = plots.MIN_COUNT
# Operating-point metrics: with n test and the event count they solve for TP / FP / FN / TN.
THRESHOLD_METRICS = ("sensitivity", "specificity", "ppv", "npv", "f1")
# Honesty: a cell is ranked only with this many test subjects in the rarer outcome class.
MIN_RANK_SUBJECTS = MIN_CI_SUBJECTS
# Ties with the best: paired subject bootstrap of the main metric on the shared held-out rows.
TIE_ALPHA = 0.05
TIE_N_BOOT = 1000
TIE_SEED = 0
# main metric -> the benchmark.stats.paired_bootstrap metric that computes the same quantity
PAIRED_METRIC = {"auroc": "auroc", "auprc": "auprc", "c_index_harrell": "c_index", "auroc_macro": "auroc_macro",
                 "mae": "mae"}
# Task families that are audits (pass / fail), never ranked or averaged: the planted leak probe.
AUDIT_FAMILIES = frozenset({"leak"})


# =========================================================================== helpers
def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def fmt(v: Any, nd: int = 3) -> str:
    """Number for display: 3 decimals (1 above 100), '—' for missing.

    Args:
        v: a number or None.
        nd: decimals for |v| < 100.

    Returns:
        The text.
    """
    if not _num(v):
        return "\u2014"
    return f"{v:.{nd}f}" if abs(v) < 100 else f"{v:.1f}"


def fmt_ci(m: Mapping | None) -> str:
    """'[low, high]' of a metric dict, or '' without an interval.

    Args:
        m: a metric dict with ci_low / ci_high.

    Returns:
        The text.
    """
    if not m or not _num(m.get("ci_low")) or not _num(m.get("ci_high")):
        return ""
    return f"[{fmt(m['ci_low'])}, {fmt(m['ci_high'])}]"


def fmt_count(n: Any) -> str:
    """A count for display: '<10' for 1..9 (small-cell rule), '—' for missing.

    Args:
        n: a count or None.

    Returns:
        The text.
    """
    if not _num(n):
        return "\u2014"
    return f"<{MIN_COUNT}" if 0 < n < MIN_COUNT else str(int(n))


def count_sort_key(n: Any) -> str:
    """The data-v (sort key) of a count: the count itself, or '' when it must not be shown."""
    return str(int(n)) if _num(n) and not 0 < n < MIN_COUNT else ""


_PEOPLE = r"(?:subjects?|events?|positives?|negatives?|samples?|rows?|cases?|controls?|patients?|deaths?)"
_SMALL_COUNT_RE = re.compile(r"(?<![\w.<>=\u2265\u2264+-])(?<![<>]= )(?<![\u2265\u2264] )([1-9])(?=\s+(?:[A-Za-z/-]+\s+){0,2}" + _PEOPLE + r"\b)")
_SMALL_N_RE = re.compile(r"\b(n(?:_test|_events)?\s*=\s*)([1-9])(?![\d.])")


def safe_text(text: Any) -> str:
    """A note or reason from a result file with every small count (1..9 subjects, events, ...)
    replaced by '<10', e.g. 'CI not reported: 7 positive subjects (needs >= 10)' ->
    'CI not reported: <10 positive subjects (needs >= 10)'.

    Args:
        text: the note (None -> '').

    Returns:
        The text, safe to show.
    """
    if text is None:
        return ""
    out = _SMALL_COUNT_RE.sub(f"<{MIN_COUNT}", str(text))
    return _SMALL_N_RE.sub(lambda m: m.group(1) + f"<{MIN_COUNT}", out)


def fmt_params(n: Any) -> str:
    """Parameter count as 1.2M / 350k / '—'.

    Args:
        n: count or None.

    Returns:
        The text.
    """
    return plots.tick_label(float(n)) if _num(n) and n > 0 else "\u2014"


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


# the order `benchmark.metrics.evaluate` reports metrics in, for metrics a task does not declare
_KNOWN_ORDER = ("auroc", "auprc", "brier", "ece", "sensitivity", "specificity", "ppv", "npv", "f1",
                "auroc_macro", "auprc_macro", "c_index_harrell", "c_index_uno", "td_auc", "ibs", "mae", "rmse", "r2")


def _metric_order(names: set[str], main: str, declared: tuple[str, ...]) -> list[str]:
    def key(n: str):
        if n == main:
            return (0, 0.0, n)
        if n in declared:
            return (1, float(declared.index(n)), n)
        if n in _KNOWN_ORDER:
            return (1, 100.0 + _KNOWN_ORDER.index(n), n)
        if n.startswith("td_auc@"):
            try:
                return (2, float(n.split("@", 1)[1]), n)
            except ValueError:
                return (2, 0.0, n)
        if "/" in n and n.split("/", 1)[1].isdigit():
            return (4, float(n.split("/", 1)[1]), n)
        return (3, 0.0, n)
    return sorted((n for n in names if not n.startswith("_")), key=key)


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
    recs.sort(key=lambda r: (r["model"], r["task"], _int(r.get("seed")), str(r["_json"])))
    return recs, problems


def _int(x: Any, default: int = 0) -> int:
    return int(x) if _num(x) else default


def _registry_tasks() -> dict[str, Any]:
    try:
        from benchmark.task_registry import load_tasks
        return dict(load_tasks())
    except Exception:  # noqa: BLE001 - the site falls back to what the results say
        return {}


def _registry_spec(name: str) -> dict | None:
    try:
        from benchmark.registry import get_model
        return get_model(name).public_dict()
    except Exception:  # noqa: BLE001 - unregistered / unimportable: fall back to the results
        return None


# =========================================================================== view models
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


def _task_info(name: str, spec: Any, recs: list[dict]) -> TaskInfo:
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
                        horizon_days=horizon if _num(horizon) else None, registered=True)
    r0 = recs[0] if recs else {}
    return TaskInfo(name=name, slug=slug(name), family=family, short=short, kind=str(r0.get("task_kind", "")),
                    main_metric=str(r0.get("main_metric", "")), version=r0.get("task_version"),
                    description="", modalities=[], fairness=[], references=[], metrics=(), label_names=[],
                    horizon_days=None, registered=False)


def _model_info(name: str, spec: dict | None, recs: list[dict]) -> ModelInfo:
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
                  if isinstance(r.get("compute"), dict) and _num(r["compute"].get("n_parameters"))), None)
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


def aggregate_metric(entries: list[Any]) -> dict:
    """Combine one metric over seeds: mean value, mean CI bounds, seed SD.

    Args:
        entries: the metric dicts of each seed (value, ci_low, ci_high, method, refused).

    Returns:
        dict with value, ci_low, ci_high, method, refused, n_seeds, sd.
    """
    good = [e for e in entries if isinstance(e, dict) and _num(e.get("value"))]
    if not good:
        why = next((str(e.get("refused")) for e in entries if isinstance(e, dict) and e.get("refused")), "")
        return {"value": None, "ci_low": None, "ci_high": None, "method": "", "refused": safe_text(why or "no value"),
                "n_seeds": 0, "sd": None, "ci_note": None}
    # a seed whose sample could not support an interval says why ("CI not reported: ..."); the note
    # replaces the CI on the page, with small counts shown as "<10"
    note = next((str(e["ci_note"]) for e in good if e.get("ci_note")), None)
    if len(good) == 1:
        e = good[0]
        lo = e.get("ci_low") if _num(e.get("ci_low")) else None
        hi = e.get("ci_high") if _num(e.get("ci_high")) else None
        return {"value": float(e["value"]), "ci_low": lo, "ci_high": hi,
                "method": safe_text(e.get("method") or ""), "refused": None, "n_seeds": 1, "sd": None,
                "ci_note": safe_text(note) if lo is None or hi is None else None}
    vals = [float(e["value"]) for e in good]
    lows = [e.get("ci_low") for e in good]
    highs = [e.get("ci_high") for e in good]
    both = all(_num(x) for x in lows + highs)
    if not both and note is None:
        note = "CI not reported for every seed"
    return {"value": statistics.fmean(vals), "ci_low": statistics.fmean(lows) if both else None,
            "ci_high": statistics.fmean(highs) if both else None,
            "method": f"mean over {len(good)} seeds (CI: mean of the per-seed intervals); per seed: "
                      + safe_text(good[0].get("method") or ""),
            "refused": None, "n_seeds": len(good), "sd": statistics.stdev(vals),
            "ci_note": None if both else safe_text(note)}


def _cell(model: str, task: TaskInfo, recs: list[dict]) -> Cell:
    recs = sorted(recs, key=lambda r: _int(r.get("seed")))
    ok = [r for r in recs if r.get("status") == "ok" and isinstance(r.get("metrics"), dict)]
    seeds = [_int(r.get("seed")) for r in recs]
    metrics: dict[str, dict] = {}
    if ok:
        names = sorted({n for r in ok for n in r["metrics"]})
        metrics = {n: aggregate_metric([r["metrics"].get(n) for r in ok]) for n in names}
    main = metrics.get(task.main_metric) or {"value": None, "refused": "main metric missing"}
    if ok and _num(main.get("value")):
        status, reason = "ok", ""
    elif any(r.get("status") == "refused" for r in recs):
        status = "refused"
        m = next((r.get("metrics", {}).get(task.main_metric) for r in recs if r.get("status") == "refused"), None)
        reason = str((m or {}).get("refused") or "the main metric is undefined on this data")
    elif ok:
        status, reason = "refused", str(main.get("refused") or "the main metric is undefined")
    else:
        status, reason = "failed", "the run failed (see the result file)"
    comp = [r.get("compute") for r in recs if isinstance(r.get("compute"), dict)]
    compute = {
        "wall_s": statistics.fmean([c["wall_s"] for c in comp if _num(c.get("wall_s"))])
        if any(_num(c.get("wall_s")) for c in comp) else None,
        "peak_rss_mb": max([c["peak_rss_mb"] for c in comp if _num(c.get("peak_rss_mb"))], default=None),
        "device": ", ".join(sorted({str(c.get("device")) for c in comp if c.get("device")})) or None,
        "n_parameters": next((c["n_parameters"] for c in comp if _num(c.get("n_parameters"))), None),
        "tokens_per_s": statistics.fmean([c["tokens_per_s"] for c in comp if _num(c.get("tokens_per_s"))])
        if any(_num(c.get("tokens_per_s")) for c in comp) else None,
    }
    r0 = ok[0] if ok else (recs[0] if recs else {})
    if task.kind == "binary" and ok:
        _withhold_threshold_metrics(metrics, ok)
    cell = Cell(model=model, task=task.name, status=status, seeds=seeds, n_ok=len(ok), metrics=metrics,
                main=main, records=ok, compute=compute, n_test=r0.get("n_test"), n_events=r0.get("n_events"),
                reason=safe_text(reason))
    if status == "ok":
        cell.unranked = _unranked_reason(cell, task)
        if cell.unranked and not cell.unranked.startswith("main metric without a CI"):
            # too few subjects in a class for any interval (the MIN_CI_SUBJECTS rule of
            # benchmark.metrics): an older result file's CI is not shown either
            for m in metrics.values():
                if _num(m.get("value")) and (m.get("ci_low") is not None or m.get("ci_high") is not None):
                    m.update(ci_low=None, ci_high=None, ci_note=f"CI not reported: {cell.unranked.split(' (')[0]}")
    return cell


# =========================================================================== small cells
def confusion_from_record(rec: Mapping) -> tuple[int, int, int, int] | None:
    """The confusion matrix (TP, FP, FN, TN) that a result's displayed numbers imply: what a reader
    can solve from n test, the event count, sensitivity and specificity (PPV, NPV and F1 add nothing
    once these are known).

    Args:
        rec: a result record (n_test, n_events, metrics with sensitivity / specificity values).

    Returns:
        (TP, FP, FN, TN), or None when the record does not give them.
    """
    m = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    n, e = rec.get("n_test"), rec.get("n_events")
    sens = (m.get("sensitivity") or {}).get("value") if isinstance(m.get("sensitivity"), dict) else None
    spec = (m.get("specificity") or {}).get("value") if isinstance(m.get("specificity"), dict) else None
    if not all(_num(x) for x in (n, e, sens, spec)):
        return None
    pos, neg = int(e), int(n) - int(e)
    tp, tn = int(round(sens * pos)), int(round(spec * neg))
    return tp, neg - tn, pos - tp, tn


def _withhold_threshold_metrics(metrics: dict[str, dict], ok: list[dict]) -> None:
    """Replace the operating-point metrics of a binary cell by a 'withheld' entry when, for any seed,
    they (with n test) would reveal a count of 1..MIN_COUNT-1: events, non-events or a confusion
    cell. Also when the record does not let us check (no event count): we cannot prove it safe."""
    present = [n for n in THRESHOLD_METRICS if _num((metrics.get(n) or {}).get("value"))]
    if not present:
        return
    why = ""
    for r in ok:
        cells = confusion_from_record(r)
        if cells is None:
            why = "withheld: the result file does not give the counts needed to check for small cells"
            break
        pos, neg = cells[0] + cells[2], cells[1] + cells[3]
        if has_small_cell((*cells, pos, neg), MIN_COUNT):
            why = (f"withheld: with n test these values would reveal a count below {MIN_COUNT} "
                   "(events, non-events or a TP / FP / FN / TN cell)")
            break
    if why:
        for n in present:
            metrics[n] = {"value": None, "ci_low": None, "ci_high": None, "method": "", "refused": None,
                          "withheld": why, "n_seeds": 0, "sd": None, "ci_note": None}


# =========================================================================== ranking honesty
def _class_counts(cell: Cell, kind: str) -> tuple[int, ...] | None:
    """Test subjects with / without the outcome (binary, survival: event) or all test subjects
    (regression), from the predictions of the lowest ok seed; else from the record's counts (rows)."""
    df = _read_predictions(cell.records[0]["_pred"]) if cell.records else None
    if df is not None and "subject_id" in df.columns:
        try:
            sid = df["subject_id"].to_numpy()
            if kind in ("binary", "survival") and "boolean_value" in df.columns:
                y = df["boolean_value"].cast(bool).to_numpy()
                return int(len(np.unique(sid[y]))), int(len(np.unique(sid[~y])))
            if kind == "regression":
                return (int(len(np.unique(sid))),)
        except Exception:  # noqa: BLE001 - a malformed file falls back to the record's counts
            pass
    if kind in ("binary", "survival") and _num(cell.n_events) and _num(cell.n_test):
        return int(cell.n_events), int(cell.n_test) - int(cell.n_events)
    if kind == "regression" and _num(cell.n_test):
        return (int(cell.n_test),)
    return None


def _unranked_reason(cell: Cell, task: TaskInfo) -> str:
    """Why an ok cell must not be ranked ('' if it may): fewer than MIN_RANK_SUBJECTS test subjects
    in the rarer outcome class, or a main metric whose sample could not support a CI. The reason
    never states a small count."""
    counts = _class_counts(cell, task.kind)
    if counts is not None and min(counts) < MIN_RANK_SUBJECTS:
        if task.kind == "regression":
            return f"fewer than {MIN_RANK_SUBJECTS} test subjects"
        word = "an event" if task.kind == "survival" else "the outcome"
        side = "with" if counts[0] <= counts[1] else "without"
        return (f"fewer than {MIN_RANK_SUBJECTS} test subjects {side} {word} (a rank needs at least "
                f"{MIN_RANK_SUBJECTS} in the rarer class)")
    if cell.main.get("ci_note"):
        return f"main metric without a CI ({cell.main['ci_note']})"
    return ""


def _rank(cells: list[Cell], task: TaskInfo) -> None:
    """Rank a column's eligible cells (1 = best point estimate), then mark every cell statistically
    tied with the best (paired test on the same held-out predictions, see `tie_with_best`)."""
    metric = task.main_metric
    vals = [c for c in cells if c.status == "ok" and _num(c.main.get("value")) and not c.unranked]
    hib = higher_is_better(metric)
    for c in vals:
        v = c.main["value"]
        better = sum(1 for o in vals if (o.main["value"] > v if hib else o.main["value"] < v))
        c.rank = better + 1
        c.best = c.rank == 1
        c.n_ranked = len(vals)
    best = sorted((c for c in vals if c.best), key=lambda c: c.model)
    if not best:
        return
    for c in vals:
        if c.best:
            c.tie_note = "best point estimate" + (" (shared)" if len(best) > 1 else "")
            continue
        c.tied, c.tie_note = tie_with_best(best[0], c, task)


def _pred_arrays(kind: str, df, suffix: str = "") -> tuple[Any, np.ndarray]:
    """(labels, scores) of a joined predictions frame in the form `benchmark.stats.paired_bootstrap`
    takes; the second model's score columns carry `suffix`."""
    if kind == "binary":
        return df["boolean_value"].cast(int).to_numpy(), df["predicted_boolean_probability" + suffix].to_numpy()
    if kind == "survival":
        y = np.column_stack([df["float_value"].cast(float).to_numpy(), df["boolean_value"].cast(float).to_numpy()])
        return y, df["predicted_risk" + suffix].to_numpy()
    if kind == "multilabel":
        labels = sorted(c.split("/", 1)[1] for c in df.columns if c.startswith("boolean_value/"))
        y = np.column_stack([df[f"boolean_value/{lab}"].cast(int).to_numpy() for lab in labels])
        sc = np.column_stack([df[f"predicted_boolean_probability/{lab}{suffix}"].to_numpy() for lab in labels])
        return y, sc
    return df["float_value"].cast(float).to_numpy(), df["predicted_float_value" + suffix].to_numpy()


def _joined_predictions(a: Cell, b: Cell, kind: str):
    """Held-out predictions of two cells on their shared rows (lowest common ok seed), joined on
    (subject_id, prediction_time): (labels, score_a, score_b, subject_ids), or why not."""
    sa = {_int(r.get("seed")): r for r in a.records}
    sb = {_int(r.get("seed")): r for r in b.records}
    common = sorted(set(sa) & set(sb))
    if not common:
        return "no common seed"
    fa, fb = _read_predictions(sa[common[0]]["_pred"]), _read_predictions(sb[common[0]]["_pred"])
    if fa is None or fb is None:
        return "a predictions file is missing"
    try:
        key = ["subject_id", "prediction_time"]
        label_cols = [c for c in fb.columns if c in ("boolean_value", "float_value") or c.startswith("boolean_value/")]
        fb = fb.select([*key, *label_cols, *[c for c in fb.columns if c.startswith("predicted_")]])
        j = fa.join(fb, on=key, how="inner", suffix="__b")
        if j.height == 0:
            return "the two prediction files share no (subject, time) row"
        if any(not j[c].equals(j[c + "__b"]) for c in label_cols):
            return "labels differ between the two prediction files"
        y, s1 = _pred_arrays(kind, j)
        _, s2 = _pred_arrays(kind, j, "__b")
        return y, s1, s2, j["subject_id"].to_numpy()
    except Exception as e:  # noqa: BLE001 - one malformed file: fall back to the CI rule
        return f"predictions could not be joined ({type(e).__name__})"


def _ci_overlap(best: Cell, other: Cell) -> tuple[bool, str]:
    """Fallback tie rule without a paired test: the two 95% CIs overlap (or one is missing)."""
    b, o = best.main, other.main
    if not all(_num(x) for x in (b.get("ci_low"), b.get("ci_high"), o.get("ci_low"), o.get("ci_high"))):
        return True, "counted as tied: no CI to compare"
    overlap = o["ci_low"] <= b["ci_high"] and b["ci_low"] <= o["ci_high"]
    return overlap, "95% CIs " + ("overlap" if overlap else "do not overlap")


def tie_with_best(best: Cell, other: Cell, task: TaskInfo) -> tuple[bool, str]:
    """Whether `other` is statistically tied with the column's best cell.

    Paired subject bootstrap of the main metric (`benchmark.stats.paired_bootstrap`, TIE_N_BOOT
    resamples, seed TIE_SEED) on the two models' held-out predictions of the same seed, joined on
    (subject_id, prediction_time): tied when the 95% CI of the difference covers 0 or p >= TIE_ALPHA,
    and when the sample is too small for the test to report a CI / p. Main metrics without a paired
    kernel (Uno's C, ...) and cells without predictions fall back to overlapping 95% CIs, which
    errs towards "tied".

    Args:
        best: the best cell (rank 1).
        other: another ranked cell of the same task.
        task: the task.

    Returns:
        (tied, how it was decided, in words).
    """
    from benchmark.metrics.binary import DegenerateInputError
    from benchmark.stats import paired_bootstrap

    metric = PAIRED_METRIC.get(task.main_metric)
    why = f"no paired test for {metric_label(task.main_metric)}"
    if metric is not None:
        joined = _joined_predictions(best, other, task.kind)
        if isinstance(joined, str):
            why = joined
        else:
            y, s_best, s_other, sid = joined
            try:
                res = paired_bootstrap(y, s_best, s_other, sid, metric=metric, n_boot=TIE_N_BOOT, seed=TIE_SEED)
            except (DegenerateInputError, ValueError) as e:
                why = f"paired test not possible ({safe_text(e)})"
            else:
                lo, hi, p = res.ci_low, res.ci_high, res.p_value
                if not (_num(lo) and _num(hi)) and not _num(p):
                    note = safe_text(getattr(res, "note", None) or getattr(res, "ci_note", None) or "too few events")
                    return True, f"counted as tied: the paired test is not reported ({note})"
                covers = _num(lo) and _num(hi) and lo <= 0 <= hi
                tied = covers or (_num(p) and p >= TIE_ALPHA)
                ci = f"[{lo:+.3f}, {hi:+.3f}]" if _num(lo) and _num(hi) else "not reported"
                pt = ("<0.001" if p < 0.001 else f"{p:.3f}") if _num(p) else "not reported"
                return bool(tied), (f"paired bootstrap vs {best.model}: difference {res.delta:+.3f}, 95% CI {ci}, "
                                    f"p = {pt}")
    tied, how = _ci_overlap(best, other)
    return tied, f"{how} ({why})"


# =========================================================================== per-task content
_PRED_CACHE: dict[tuple[str, int, int], Any] = {}


def _read_predictions(path: Path):
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


def _curves(task: TaskInfo, cells: list[Cell], models: dict[str, ModelInfo]) -> dict[str, Any]:
    """Aggregate plots of a task page from the predictions of each model's lowest ok seed."""
    out: dict[str, Any] = {"plots": [], "small": [], "notes": []}
    roc, pr, cal, reg = [], [], [], []
    prevalence = None
    for c in cells:
        if c.status != "ok" or not c.records:
            continue
        color = models[c.model].color
        df = _read_predictions(c.records[0]["_pred"])
        if df is None:
            out["notes"].append(f"{c.model}: no predictions file, no curves")
            continue
        sid = df["subject_id"].to_numpy() if "subject_id" in df.columns else np.arange(df.height)
        kind = task.kind
        try:
            if kind == "binary" and {"boolean_value", "predicted_boolean_probability"} <= set(df.columns):
                y = df["boolean_value"].cast(int).to_numpy()
                p = df["predicted_boolean_probability"].cast(float).to_numpy()
                why = plots.enough_both_classes(y, sid)
                if why:
                    out["notes"].append(f"{c.model}: curves withheld ({why})")
                    continue
                prevalence = float(y.mean())
                roc.append(plots.Series(c.model, plots.roc_points(y, p), color=color))
                pr.append(plots.Series(c.model, plots.pr_points(y, p), color=color))
                bins, dropped = plots.calibration_bins(y, p, sid)
                if bins:
                    cal.append(plots.Series(c.model, bins, color=color, markers=True))
                if dropped:
                    out["notes"].append(f"{c.model}: {dropped} calibration bin(s) with fewer than "
                                        f"{plots.MIN_COUNT} subjects left out")
            elif kind == "survival" and {"float_value", "boolean_value", "predicted_risk"} <= set(df.columns):
                t = df["float_value"].cast(float).to_numpy()
                ev = df["boolean_value"].cast(int).to_numpy()
                risk = df["predicted_risk"].cast(float).to_numpy()
                why = plots.enough_both_classes(ev, sid)
                if why:
                    out["notes"].append(f"{c.model}: Kaplan-Meier curves withheld ({why})")
                    continue
                grid = plots.km_time_grid(t, task.horizon_days)
                km = plots.km_by_risk_tertile(t, ev, risk, sid, grid)
                if km:
                    series = [plots.Series(name, pts, color=i + 2 if i else 0, dashed=i == 1)
                              for i, (name, pts) in enumerate(km)]
                    out["small"].append(plots.line_plot(
                        series, title=f"{c.model}: Kaplan-Meier by predicted-risk tertile",
                        x_label="days since prediction time", y_label="survival",
                        x_range=(0.0, float(grid[-1])), y_range=(0.0, 1.0), step=True, width=340))
            elif kind == "regression" and {"float_value", "predicted_float_value"} <= set(df.columns):
                y = df["float_value"].cast(float).to_numpy()
                p = df["predicted_float_value"].cast(float).to_numpy()
                pts = plots.binned_regression(y, p, sid)
                if pts:
                    reg.append(plots.Series(c.model, pts, color=color, markers=True))
        except Exception as e:  # noqa: BLE001 - a malformed predictions file must not stop the site
            out["notes"].append(f"{c.model}: curves could not be computed ({type(e).__name__})")
    if roc:
        out["plots"].append(plots.line_plot(roc, title="ROC curve (held-out)", x_label="false-positive rate",
                                            y_label="true-positive rate", diagonal=True))
        out["plots"].append(plots.line_plot(pr, title="Precision-recall (interpolated)", x_label="recall",
                                            y_label="precision", ref_y=prevalence))
    if cal:
        out["plots"].append(plots.line_plot(cal, title="Calibration (10 probability bins)",
                                            x_label="mean predicted probability", y_label="observed rate",
                                            diagonal=True))
    if reg:
        lo = min(min(x, y) for s in reg for x, y in s.points)
        hi = max(max(x, y) for s in reg for x, y in s.points)
        pad = (hi - lo) * 0.08 or 1.0
        rng = (plots.nice_number(lo - pad, up=False) if lo - pad > 0 else lo - pad, plots.nice_number(hi + pad))
        out["plots"].append(plots.line_plot(reg, title="Predicted vs observed (10 equal-count bins)",
                                            x_label="mean prediction", y_label="mean observed",
                                            x_range=rng, y_range=rng, diagonal=True))
    if task.kind == "survival":
        td = []
        t_max = 0.0
        for c in cells:
            if c.status != "ok":
                continue
            pts, lo, hi = [], [], []
            for n, m in sorted(c.metrics.items()):
                if n.startswith("td_auc@") and _num(m.get("value")):
                    try:
                        t = float(n.split("@", 1)[1])
                    except ValueError:
                        continue
                    # plotted at whole days, like the table (see metric_label)
                    pts.append((float(round(t)), m["value"]))
                    lo.append(m["ci_low"] if _num(m.get("ci_low")) else m["value"])
                    hi.append(m["ci_high"] if _num(m.get("ci_high")) else m["value"])
            if pts:
                order = np.argsort([p[0] for p in pts], kind="stable")
                pts = [pts[i] for i in order]
                lo = [lo[i] for i in order]
                hi = [hi[i] for i in order]
                t_max = max(t_max, pts[-1][0])
                td.append(plots.Series(c.model, pts, lo=lo, hi=hi, color=models[c.model].color, markers=True))
        if td:
            y_lo = min(0.5, min(v for s in td for v in s.lo))
            out["plots"].append(plots.line_plot(td, title="Time-dependent AUC (95% CI)", x_label="days",
                                                y_label="cumulative/dynamic AUC",
                                                x_range=(0.0, plots.nice_number(t_max * 1.1)),
                                                y_range=(math.floor(y_lo * 10) / 10, 1.0), ref_y=0.5))
    return out


_VALUE_KEYS = ("mean_abs_shap", "importance", "abs_coefficient", "value", "mean_abs")


def shap_summary(expl: Any, top: int = SHAP_TOP) -> tuple[str, list[tuple[str, float]]] | None:
    """Global feature importance from a result's "explanations" block.

    Accepted shapes (the first that fits): {"method": ..., "top_features"|"global"|"mean_abs_shap"|
    "importance"|"feature_importance"|"shap": X} or X itself, where X is {feature: value},
    {"feature_names": [...], "mean_abs"|"mean_abs_shap"|"values": [...]} (a per-row matrix of at
    least 10 rows is reduced to mean |value| per feature), or [{"feature"|"name": f,
    "mean_abs_shap"|"importance"|"abs_coefficient"|"value"|"mean_abs": v}] / [[f, v]]. The
    baselines write {"method", "n_rows", "output", "top_features": [{"feature", "description",
    "mean_abs_shap" | "importance" | "abs_coefficient"}]}.

    Args:
        expl: the block.
        top: number of features kept (largest |value| first).

    Returns:
        (method, [(feature, value)]) or None when nothing usable is there.
    """
    got = _importance_items(expl, top)
    return (got[0], [(n, v) for n, v, _ in got[1]]) if got else None


def _importance_items(expl: Any, top: int = SHAP_TOP) -> tuple[str, list[tuple[str, float, str]]] | None:
    if not expl:
        return None
    method = "SHAP"
    obj = expl
    if isinstance(obj, dict):
        method = str(obj.get("method") or obj.get("explainer") or "SHAP")
        for key in ("top_features", "global", "mean_abs_shap", "importance", "feature_importance", "shap"):
            if key in obj and isinstance(obj[key], (dict, list)):
                obj = obj[key]
                break
        else:
            if "modalities" in obj or "reason" in obj or "structured_model" in obj:
                return None
    items: list[tuple[str, float, str]] = []
    if isinstance(obj, dict):
        names = obj.get("feature_names") or obj.get("features")
        vals = next((obj[k] for k in ("mean_abs", "mean_abs_shap", "values") if k in obj), None)
        if isinstance(names, list) and isinstance(vals, list):
            try:
                arr = np.asarray(vals, dtype=float)
            except (TypeError, ValueError):
                arr = np.asarray([])
            if arr.ndim == 2 and arr.shape[1] == len(names) and arr.shape[0] >= plots.MIN_COUNT:
                arr = np.abs(arr).mean(axis=0)
            if arr.ndim == 1 and len(arr) == len(names):
                items = [(str(n), float(v), "") for n, v in zip(names, arr) if math.isfinite(v)]
        else:
            items = [(str(k), float(v), "") for k, v in obj.items() if _num(v)]
    elif isinstance(obj, list):
        for e in obj:
            name, v, desc = None, None, ""
            if isinstance(e, dict):
                name = e.get("feature", e.get("name"))
                v = next((e[k] for k in _VALUE_KEYS if _num(e.get(k))), None)
                desc = str(e.get("description") or "")
            elif isinstance(e, (list, tuple)) and len(e) == 2:
                name, v = e
            if name is not None and _num(v):
                items.append((str(name), float(v), desc))
    items = sorted(((n, abs(v), d) for n, v, d in items), key=lambda t: (-t[1], t[0]))[:top]
    return (method, items) if items else None


def explanation_figures(model: str, expl: Any, color: int) -> tuple[list[Markup], list[str]]:
    """Plots of a result's "explanations" block: feature importance bars, and for late-fusion
    models the leave-one-modality-out drop per modality plus the structured model's features.

    Args:
        model: model name (plot titles).
        expl: the block.
        color: palette index.

    Returns:
        (figures, notes).
    """
    figs: list[Markup] = []
    notes: list[str] = []
    if not isinstance(expl, (dict, list)) or not expl:
        return figs, notes
    if isinstance(expl, dict) and isinstance(expl.get("modalities"), list):
        rows = [(str(m.get("modality")), float(m["drop"]), f"rows with it: {m.get('n_rows_with', '?')}")
                for m in expl["modalities"] if isinstance(m, dict) and _num(m.get("drop"))]
        if rows:
            figs.append(plots.bar_plot(rows, title=f"{model}: {expl.get('method') or 'modality attribution'}",
                                       x_label="drop without the modality (positive = it helps)", color=color,
                                       label_width=120, width=460))
    if isinstance(expl, dict) and expl.get("method") is None and expl.get("reason"):
        notes.append(f"{model}: no explanation ({expl['reason']})")
    sub = expl.get("structured_model") if isinstance(expl, dict) else None
    for block, prefix in ((expl, ""), (sub, "structured model, ")):
        got = _importance_items(block)
        if got:
            method, items = got
            output = block.get("output") if isinstance(block, dict) else None
            figs.append(plots.bar_plot(items, title=f"{model}: top features ({prefix}{method})",
                                       x_label=f"importance ({output})" if output else "mean |value|",
                                       color=color))
        elif isinstance(block, dict) and block is sub and block.get("reason"):
            notes.append(f"{model}: structured model not explained ({block['reason']})")
    return figs, notes


_RATES = ("selection_rate", "tpr", "fpr")


def _legacy_rates_problem(groups: list[dict]) -> str:
    """For a fairness attribute written before fairness.py checked small cells: why its group rates
    must not be shown ('' when every group's rates x counts give cells of 0 or >= MIN_COUNT)."""
    for g in groups:
        if g.get("suppressed") or not any(_num(g.get(k)) for k in _RATES):
            continue
        n, e, tpr, fpr = g.get("n_samples"), g.get("n_events"), g.get("tpr"), g.get("fpr")
        if not all(_num(x) for x in (n, e, tpr, fpr)):
            return ("group rates withheld: this result file predates the small-cell check and lacks the counts "
                    "to check it (rerun the cell)")
        neg = int(n) - int(e)
        tp, fp = int(round(tpr * e)), int(round(fpr * neg))
        if has_small_cell((tp, fp, int(e) - tp, neg - fp), MIN_COUNT):
            return f"group rates withheld: rates x counts would give a confusion-matrix cell below {MIN_COUNT}"
    return ""


def _fairness_view(block: Any) -> dict | None:
    """The fairness block as the task page shows it: suppressed groups without numbers, reasons with
    small counts redacted, and the group rates (selection rate, TPR, FPR) and parity differences
    only when they cannot be multiplied back into a small confusion-matrix cell."""
    if not isinstance(block, dict) or not isinstance(block.get("attributes"), dict):
        return None
    attrs = []
    for name in sorted(block["attributes"]):
        a = block["attributes"][name]
        if not isinstance(a, dict):
            continue
        raw = [g for g in a.get("groups") or [] if isinstance(g, dict)]
        checked = _num(a.get("small_cells_checked")) and a["small_cells_checked"] >= MIN_COUNT
        withheld = safe_text(a.get("rates_withheld")) if checked else _legacy_rates_problem(raw)
        groups = []
        for g in raw:
            if g.get("suppressed"):
                # suppressed groups carry no numbers, whatever the file holds
                groups.append({"group": str(g.get("group", "")), "suppressed": True,
                               "reason": safe_text(g.get("reason", "too few subjects"))})
            else:
                view = {k: g.get(k) for k in ("group", "value", "ci_low", "ci_high", "n_subjects", "n_events",
                                              *_RATES)}
                if withheld:
                    view.update(dict.fromkeys(_RATES))
                groups.append(view | {"suppressed": False, "group": str(g.get("group", "")),
                                      "refused": safe_text(g.get("refused")) or None})
        worst = a.get("worst_group") if isinstance(a.get("worst_group"), dict) else None
        attrs.append({"name": name, "groups": groups, "worst": worst, "gap": a.get("gap"),
                      "dp": None if withheld else a.get("demographic_parity_difference"),
                      "eo": None if withheld else a.get("equalized_odds_difference"),
                      "note": withheld or safe_text(a.get("parity_note")) or None,
                      "counts_withheld": bool(a.get("counts_withheld"))})
    thr = block.get("threshold")
    return {"metric": metric_label(str(block.get("metric", ""))), "attributes": attrs,
            "threshold": f"{thr:.2f}" if _num(thr) else None, "min_count": block.get("min_count"),
            "notes": [safe_text(n) for n in block.get("notes") or []], "method": safe_text(block.get("method") or "")}


# =========================================================================== scaling
def _scaling(models: dict[str, ModelInfo], cells: dict[tuple[str, str], Cell], tasks: dict[str, TaskInfo]
             ) -> dict[str, list[Markup]]:
    """Scaling plots per model series (names differing by a size suffix, distinct n_parameters)."""
    by_series: dict[str, list[str]] = {}
    for m in models.values():
        by_series.setdefault(m.series, []).append(m.name)
    out: dict[str, list[Markup]] = {}
    for series in sorted(by_series):
        names = sorted(by_series[series])
        if len(names) < 2:
            continue
        per_metric: dict[str, list[plots.Series]] = {}
        for ti, tname in enumerate(sorted(tasks)):
            t = tasks[tname]
            pts = []
            for n in names:
                c = cells.get((n, tname))
                if c is None or c.status != "ok":
                    continue
                npar = c.compute.get("n_parameters") if _num(c.compute.get("n_parameters")) else models[n].n_parameters
                if _num(npar) and npar > 0:
                    pts.append((float(npar), c.main["value"], c.main.get("ci_low"), c.main.get("ci_high")))
            pts.sort()
            if len({p[0] for p in pts}) < 2:
                continue
            per_metric.setdefault(t.main_metric, []).append(plots.Series(
                tname, [(p[0], p[1]) for p in pts], lo=[p[2] if _num(p[2]) else p[1] for p in pts],
                hi=[p[3] if _num(p[3]) else p[1] for p in pts], color=ti, markers=True))
        figs = []
        for metric in sorted(per_metric):
            ss = per_metric[metric]
            xs = [x for s in ss for x, _ in s.points]
            ys = [v for s in ss for v in (s.lo or []) + (s.hi or [])]
            x_range = (10 ** math.floor(math.log10(min(xs))), 10 ** math.ceil(math.log10(max(xs))))
            if x_range[0] == x_range[1]:
                x_range = (x_range[0] / 10, x_range[1] * 10)
            y0, y1 = min(ys), max(ys)
            pad = (y1 - y0) * 0.1 or 0.05
            y_range = (math.floor((y0 - pad) * 20) / 20, math.ceil((y1 + pad) * 20) / 20)
            if metric in BOUNDED_01:
                y_range = (max(0.0, y_range[0]), min(1.0, y_range[1]))
            figs.append(plots.line_plot(ss, title=f"{series}: {metric_label(metric)} vs parameters",
                                        x_label="parameters (log scale)", y_label=metric_label(metric),
                                        x_range=x_range, y_range=y_range, log_x=True, width=420))
        if figs:
            out[series] = figs
    return out


# =========================================================================== rendering
def _read_static(name: str) -> str:
    return (HERE / "static" / name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def environment() -> Environment:
    """The Jinja2 environment of the site (autoescape on, strict undefined, no extensions).

    Returns:
        Environment loading leaderboard/templates.
    """
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.filters.update(fmt=fmt, fmt_ci=fmt_ci, fmt_params=fmt_params, metric_label=metric_label,
                       fmt_count=fmt_count, count_key=count_sort_key, redact=safe_text)
    css, hook, js = _read_static("style.css"), _read_static("hook.js"), _read_static("site.js")
    csp = ("default-src 'none'; img-src data:; style-src " + _csp_hash(css) + "; script-src "
           + _csp_hash(hook) + " " + _csp_hash(js) + "; base-uri 'none'; form-action 'none'")
    env.globals.update(css=Markup(css), hook_js=Markup(hook), site_js=Markup(js), csp=Markup(csp),
                       tie_n_boot=TIE_N_BOOT, tie_alpha=TIE_ALPHA, min_rank=MIN_RANK_SUBJECTS, min_count=MIN_COUNT,
                       dataset=None, top=None)
    return env


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


@dataclass
class Site:
    """Everything the templates need for one dataset's leaderboard (built by `collect`)."""

    tasks: dict[str, TaskInfo]
    models: dict[str, ModelInfo]
    cells: dict[tuple[str, str], Cell]
    families: list[dict]
    problems: list[str]
    n_files: int
    scaling: dict[str, list[Markup]]
    modalities: list[str]
    kinds: list[str]
    task_n_models: dict[str, int]
    not_ranked: list[Cell]
    audits: list[dict] = field(default_factory=list)
    dataset: Dataset | None = None


def collect(results_dir: Path, *, exclude: Path | None = None, model_specs: Mapping[str, Any] | None = None,
            tasks: Mapping[str, Any] | None = None) -> list[Site]:
    """Read the result files and build one site view model per dataset (never mixing datasets).

    Args:
        results_dir: the results folder.
        exclude: a folder to skip while reading (the output site).
        model_specs: name -> spec dict (public_dict()) to use instead of the registry (tests).
        tasks: name -> TaskSpec (or dict) to use instead of the task registry (tests).

    Returns:
        Sites sorted by dataset name and fingerprint (one empty site when there are no results).
    """
    recs, problems = load_records(results_dir, exclude)
    registry = dict(tasks) if tasks is not None else _registry_tasks()
    groups: dict[str, list[dict]] = {}
    datasets: dict[str, Dataset] = {}
    for r in recs:
        d = dataset_of(r)
        datasets.setdefault(d.key, d)
        groups.setdefault(d.key, []).append(r)
    if not groups:
        return [_collect_one([], problems, registry, model_specs, None)]
    order = sorted(groups, key=lambda k: (datasets[k].name, datasets[k].fingerprint, k))
    return [_collect_one(groups[k], problems, registry, model_specs, datasets[k]) for k in order]


def _collect_one(recs: list[dict], problems: list[str], registry: Mapping[str, Any],
                 model_specs: Mapping[str, Any] | None, dataset: Dataset | None) -> Site:
    """The view model of the records of one dataset."""
    by_task: dict[str, list[dict]] = {}
    for r in recs:
        by_task.setdefault(r["task"], []).append(r)
    task_infos: dict[str, TaskInfo] = {}
    current: list[dict] = []
    for tname in sorted(by_task):
        trs = by_task[tname]
        info = _task_info(tname, registry.get(tname), trs)
        # only the newest task version in the results is ranked; older ones are counted
        versions = sorted({_int(r.get("task_version"), 0) for r in trs})
        newest = versions[-1]
        info.older_versions = {v: sum(_int(r.get("task_version"), 0) == v for r in trs) for v in versions[:-1]}
        info.registry_version = info.version if info.registered else None
        info.version = newest
        if not info.registered:
            r0 = next(r for r in trs if _int(r.get("task_version"), 0) == newest)
            info.kind, info.main_metric = str(r0.get("task_kind", "")), str(r0.get("main_metric", ""))
        task_infos[tname] = info
        current += [r for r in trs if _int(r.get("task_version"), 0) == newest]
    by_model: dict[str, list[dict]] = {}
    for r in current:
        by_model.setdefault(r["model"], []).append(r)
    specs = dict(model_specs) if model_specs is not None else {}
    models: dict[str, ModelInfo] = {}
    for i, name in enumerate(sorted(by_model)):
        spec = specs.get(name) if model_specs is not None else _registry_spec(name)
        if spec is not None and not isinstance(spec, dict):
            spec = spec.public_dict() if hasattr(spec, "public_dict") else dict(spec)
        models[name] = _model_info(name, spec, by_model[name])
        models[name].color = i % plots.N_COLORS
    cells: dict[tuple[str, str], Cell] = {}
    for name in sorted(by_model):
        per_task: dict[str, list[dict]] = {}
        for r in by_model[name]:
            per_task.setdefault(r["task"], []).append(r)
        for tname in sorted(per_task):
            cells[(name, tname)] = _cell(name, task_infos[tname], per_task[tname])
    for tname, t in task_infos.items():
        if not t.audit:
            _rank([c for (m, tn), c in cells.items() if tn == tname], t)
    audits = _audits(task_infos, cells)
    families = _families(task_infos, models, cells)
    modalities = sorted({m for mi in models.values() for m in mi.modalities})
    kinds = sorted({mi.kind for mi in models.values() if mi.kind})
    not_ranked = [cells[k] for k in sorted(cells) if not task_infos[k[1]].audit
                  and (cells[k].status != "ok" or cells[k].unranked)]
    return Site(tasks=task_infos, models=models, cells=cells, families=families, problems=problems,
                n_files=len(recs), scaling=_scaling(models, cells, task_infos), modalities=modalities,
                kinds=kinds, task_n_models={t: sum(1 for (_, tn) in cells if tn == t) for t in task_infos},
                not_ranked=not_ranked, audits=audits, dataset=dataset)


def audit_verdict(cell: Cell) -> tuple[str, str]:
    """Pass / fail of a leak-probe cell: the probe's label is only predictable from data after the
    prediction time, so an honest model scores AUROC ~0.5.

    Args:
        cell: a cell of an audit task (main metric AUROC).

    Returns:
        (verdict, why): "fail" when the 95% CI lies above 0.5 (significantly better than chance),
        "pass" when it contains 0.5 (or lies below); without a CI the Mann-Whitney U test of
        AUROC > 0.5 decides ("inconclusive" when a class is too small); else the cell's status
        (failed / refused).
    """
    if cell.status != "ok":
        return cell.status, cell.reason
    lo, hi = cell.main.get("ci_low"), cell.main.get("ci_high")
    if not (_num(lo) and _num(hi)):
        return _rank_test_verdict(cell)
    if lo > 0.5:
        return "fail", "the 95% CI lies above 0.5: the model reads data from after the prediction time"
    return "pass", "the 95% CI " + ("contains 0.5" if hi >= 0.5 else "lies below 0.5") + ": no sign of a leak"


def _rank_test_verdict(cell: Cell) -> tuple[str, str]:
    """Leak-probe verdict without a bootstrap CI (e.g. AUROC 1 in every resample, which a bootstrap
    cannot bound): the one-sided Mann-Whitney U test of AUROC > 0.5 on the held-out predictions
    (AUROC = U / (n1 n0); rows as units), when both classes have MIN_RANK_SUBJECTS subjects."""
    from scipy.stats import mannwhitneyu

    note = cell.main.get("ci_note") or "no CI"
    df = _read_predictions(cell.records[0]["_pred"]) if cell.records else None
    if df is None or not {"boolean_value", "predicted_boolean_probability", "subject_id"} <= set(df.columns):
        return "inconclusive", f"{note}; no predictions to test"
    y = df["boolean_value"].cast(bool).to_numpy()
    p = df["predicted_boolean_probability"].cast(float).to_numpy()
    sid = df["subject_id"].to_numpy()
    if min(len(np.unique(sid[y])), len(np.unique(sid[~y]))) < MIN_RANK_SUBJECTS:
        return "inconclusive", f"{note}; too few subjects in a class to test"
    pv = float(mannwhitneyu(p[y], p[~y], alternative="greater").pvalue)
    pt = "<0.001" if pv < 0.001 else f"{pv:.3f}"
    if pv < TIE_ALPHA:
        return "fail", f"{note}; Mann-Whitney U test of AUROC > 0.5: p = {pt}: the model reads data from the future"
    return "pass", f"{note}; Mann-Whitney U test of AUROC > 0.5: p = {pt}: no sign of a leak"


def _audits(tasks: dict[str, TaskInfo], cells: dict[tuple[str, str], Cell]) -> list[dict]:
    """The audit tasks with one verdict per model (sets each cell's `verdict`)."""
    out = []
    for name in sorted(t for t in tasks if tasks[t].audit):
        rows = []
        for (m, tn), c in sorted(cells.items()):
            if tn == name:
                c.verdict, why = audit_verdict(c)
                rows.append({"cell": c, "verdict": c.verdict, "why": why})
        out.append({"task": tasks[name], "rows": rows,
                    "n_fail": sum(r["verdict"] == "fail" for r in rows)})
    return out


def _families(tasks: dict[str, TaskInfo], models: dict[str, ModelInfo], cells: dict[tuple[str, str], Cell]
              ) -> list[dict]:
    fams: dict[str, list[TaskInfo]] = {}
    for t in tasks.values():
        if not t.audit:  # audits are shown apart (see `_audits`), outside rankings and averages
            fams.setdefault(t.family, []).append(t)
    out = []
    for fam in sorted(fams):
        ts = sorted(fams[fam], key=lambda t: t.name)
        avg_tasks = [t for t in ts if t.main_metric in BOUNDED_01 and higher_is_better(t.main_metric)]
        rows = []
        for mname in sorted(models):
            row_cells = [cells.get((mname, t.name)) for t in ts]
            if not any(row_cells):
                continue
            # an unranked cell (too few events, no CI) does not enter the average either
            vals = [cells[(mname, t.name)].main["value"] for t in avg_tasks
                    if (mname, t.name) in cells and cells[(mname, t.name)].rank is not None]
            macro = statistics.fmean(vals) if avg_tasks and len(vals) == len(avg_tasks) else None
            ranks = [c.rank for c in row_cells if c is not None and c.rank is not None]
            rows.append({"model": models[mname], "cells": row_cells, "macro": macro,
                         "n_missing": len(avg_tasks) - len(vals),
                         "mean_rank": statistics.fmean(ranks) if ranks else None, "n_ranks": len(ranks)})
        # best macro average gets the mark too
        macros = [r["macro"] for r in rows if r["macro"] is not None]
        best_macro = max(macros) if macros else None
        for r in rows:
            r["macro_best"] = r["macro"] is not None and r["macro"] == best_macro
        rows.sort(key=lambda r: (r["mean_rank"] if r["mean_rank"] is not None else math.inf, r["model"].name))
        out.append({"name": fam, "tasks": ts, "rows": rows, "avg_tasks": avg_tasks,
                    "avg_excluded": [t for t in ts if t not in avg_tasks]})
    return out


def ablation_figures(model: str, abl: Any, metric: str, color: int) -> list[Markup]:
    """The missing-modality sweep of a result's "ablations" block: the main metric (with its CI)
    against the fraction of test subjects whose modality is masked, one line per modality."""
    if not isinstance(abl, dict) or not isinstance(abl.get("missing_sweep"), dict):
        return []
    series, ys = [], []
    for i, (m, curve) in enumerate(sorted(abl["missing_sweep"].items())):
        pts = [p for p in curve if isinstance(p, dict) and _num(p.get("fraction")) and _num(p.get("value"))]
        if len(pts) < 2:
            continue
        lo = [p["ci_low"] if _num(p.get("ci_low")) else p["value"] for p in pts]
        hi = [p["ci_high"] if _num(p.get("ci_high")) else p["value"] for p in pts]
        ys += lo + hi
        series.append(plots.Series(str(m), [(float(p["fraction"]), float(p["value"])) for p in pts], lo=lo, hi=hi,
                                   color=(color + i) % 8, markers=True))
    if not series:
        return []
    pad = 0.02 * max(max(ys) - min(ys), 1e-3)
    return [plots.line_plot(series, title=f"{model}: missing-modality sweep", x_label="fraction of test subjects "
                            "with the modality masked", y_label=metric_label(metric),
                            y_range=(min(ys) - pad, max(ys) + pad), band=True)]


def _task_page(env: Environment, site: Site, t: TaskInfo, top: str | None) -> str:
    cells = sorted((c for (m, tn), c in site.cells.items() if tn == t.name),
                   key=lambda c: (c.rank if c.rank is not None else math.inf, c.model))
    names = {n for c in cells for n in c.metrics}
    order = _metric_order(names, t.main_metric, t.metrics)
    curves = _curves(t, cells, site.models)
    fairness, shap, shap_notes, ablations = [], [], [], []
    for c in cells:
        if c.status != "ok":
            continue
        fv = _fairness_view(c.records[0].get("fairness"))
        if fv and (fv["attributes"] or fv["notes"]):
            fairness.append((site.models[c.model], fv))
        figs, notes = explanation_figures(c.model, c.records[0].get("explanations"), site.models[c.model].color)
        shap.extend(figs)
        shap_notes.extend(notes)
        ablations.extend(ablation_figures(c.model, c.records[0].get("ablations"), t.main_metric,
                                          site.models[c.model].color))
    per_label = []
    if t.kind == "multilabel":
        idx = sorted({int(n.split("/", 1)[1]) for n in names
                      if n.startswith("auroc/") and n.split("/", 1)[1].isdigit()})
        for j in idx:
            name = t.label_names[j] if j < len(t.label_names) else f"label {j}"
            per_label.append((name, [c.metrics.get(f"auroc/{j}") for c in cells]))
    thresholds = {}
    for c in cells:
        th = [r.get("metrics", {}).get("_threshold", {}).get("value") for r in c.records]
        th = [x for x in th if _num(x)]
        if th:
            thresholds[c.model] = f"{statistics.fmean(th):.2f}"
    return env.get_template("task.html.j2").render(
        root="../", site=site, task=t, cells=cells, metric_names=order, curves=curves, fairness=fairness,
        shap=shap, shap_notes=shap_notes, ablations=ablations, per_label=per_label, thresholds=thresholds,
        models=site.models, dataset=site.dataset, top=_up(top, 1))


def _model_page(env: Environment, site: Site, m: ModelInfo, top: str | None) -> str:
    cells = [site.cells[(m.name, t)] for t in sorted(site.tasks) if (m.name, t) in site.cells]
    siblings = sorted(n for n, o in site.models.items() if o.series == m.series and n != m.name)
    return env.get_template("model.html.j2").render(
        root="../", site=site, model=m, cells=cells, tasks=site.tasks, scaling=site.scaling.get(m.series, []),
        siblings=[site.models[n] for n in siblings], dataset=site.dataset, top=_up(top, 1))


def _up(top: str | None, levels: int) -> str | None:
    """The link prefix to the dataset selector from a page `levels` folders further down."""
    return None if top is None else "../" * levels + top


def render_site(site: Site, out: Path, top: str | None = None) -> None:
    """Write one dataset's pages into an (empty) folder.

    Args:
        site: one of `collect`'s sites.
        out: the folder to write into.
        top: link prefix from out/ to the dataset selector page (None: there is only one dataset).
    """
    env = environment()
    (out / "tasks").mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(env.get_template("index.html.j2").render(
        root="", site=site, dataset=site.dataset, top=top), encoding="utf-8")
    for t in sorted(site.tasks):
        info = site.tasks[t]
        (out / "tasks" / f"{info.slug}.html").write_text(_task_page(env, site, info, top), encoding="utf-8")
    for name in sorted(site.models):
        mi = site.models[name]
        (out / "models" / f"{mi.slug}.html").write_text(_model_page(env, site, mi, top), encoding="utf-8")


def render_all(sites: list[Site], out: Path) -> None:
    """Write the whole site: one dataset's leaderboard at the top, or, when the results come from
    several datasets, a selector page linking one leaderboard per dataset (datasets/<slug>/),
    so that no table ever mixes datasets.

    Args:
        sites: from `collect`.
        out: the (empty) folder to write into.
    """
    if len(sites) == 1:
        render_site(sites[0], out)
    else:
        env = environment()
        (out / "index.html").write_text(env.get_template("datasets.html.j2").render(
            root="", sites=sites, problems=sites[0].problems, dataset=None, top=None), encoding="utf-8")
        for site in sites:
            render_site(site, out / "datasets" / site.dataset.slug, top="../../")
    (out / MARKER).write_text("written by leaderboard.build; this folder is replaced on every build\n")


# =========================================================================== atomic output
def _is_ours(out: Path) -> bool:
    """An output folder may be replaced if it holds the marker, or nothing but comparison pages."""
    if not out.is_dir():
        return False
    if (out / MARKER).exists():
        return True
    return all(p.is_file() and any(p.match(pat) for pat in KEEP_PATTERNS) for p in out.iterdir())


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0


def _swap_in(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    if _exchange(tmp, out):
        shutil.rmtree(tmp)  # tmp now holds the previous site
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old)


def build(results_dir: Path, out_dir: Path, *, model_specs: Mapping[str, Any] | None = None,
          tasks: Mapping[str, Any] | None = None) -> Path:
    """Build the static leaderboard of every result file under results_dir into out_dir.

    Args:
        results_dir: the results folder (`<results>/<model>/<task>/seed<k>.json` + predictions).
        out_dir: the site folder; replaced atomically (must be absent, empty or an earlier site).
        model_specs: name -> ModelSpec dict overriding the model registry (tests, offline use).
        tasks: name -> TaskSpec overriding the task registry.

    Returns:
        out_dir (open out_dir / "index.html").

    Raises:
        UserError: results_dir missing, or out_dir exists and is not a leaderboard folder.
    """
    from benchmark.errors import UserError

    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if not results_dir.is_dir():
        raise UserError("results folder not found", file=results_dir, field="--results",
                        fix="run `python -m benchmark run ...` first or pass the folder that holds the results")
    if out_dir.exists() and not _is_ours(out_dir):
        raise UserError("output folder exists and is not a leaderboard built by this tool", file=out_dir,
                        field="--out", fix="pass a new or empty folder (the output is replaced on every build)")
    sites = collect(results_dir, exclude=out_dir, model_specs=model_specs, tasks=tasks)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        render_all(sites, tmp)
        if out_dir.is_dir():
            for pattern in KEEP_PATTERNS:
                for f in sorted(out_dir.glob(pattern)):
                    if f.is_file():
                        shutil.copy2(f, tmp / f.name)
        _swap_in(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
