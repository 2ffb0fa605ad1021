"""Page models: what each page of the site shows, as plain data for the templates.

    collect(results_dir) -> [Site]      one Site per dataset (datasets are never mixed): tasks,
                                        models, ranked cells, family tables, audits, scaling plots
    task_page(site, task, top) -> dict  what tasks/<task>.html shows
    model_page(site, model, top) -> dict what models/<model>.html shows (incl. perplexity_table)

Imports point one way inside the package: records <- rules <- figures <- views <- render <- build.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from markupsafe import Markup

from benchmark.kinds import KINDS
from leaderboard import plots
from leaderboard.figures import (ablation_figures, explanation_figures, few_shot_curves, oncology_scaling, scaling_plots,
                                 task_curves)
from leaderboard.records import (
    BOUNDED_01,
    Cell,
    Dataset,
    ModelInfo,
    ResultFile,
    TaskInfo,
    dataset_of,
    higher_is_better,
    is_num,
    load_records,
    metric_label,
    model_info,
    registry_spec,
    registry_tasks,
    task_info,
)
from leaderboard.rules import (
    MIN_COUNT,
    RATES,
    audit_verdict,
    legacy_rates_problem,
    make_cell,
    rank_column,
    safe_text,
)

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
    scaling_macro: dict | None = None  # figures.oncology_scaling: the MEHRT paper's scaling figure
    few_shot: dict[str, list[ResultFile]] = field(default_factory=dict)  # task -> few-shot cells (never ranked)


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
    recs, problems = load_records(results_dir, exclude, few_shot=None)
    registry = dict(tasks) if tasks is not None else registry_tasks()
    groups: dict[str, list[ResultFile]] = {}
    datasets: dict[str, Dataset] = {}
    for r in recs:
        d = dataset_of(r.rec)
        datasets.setdefault(d.key, d)
        groups.setdefault(d.key, []).append(r)
    if not groups:
        return [_collect_one([], problems, registry, model_specs, None)]
    order = sorted(groups, key=lambda k: (datasets[k].name, datasets[k].fingerprint, k))
    return [_collect_one(groups[k], problems, registry, model_specs, datasets[k]) for k in order]


def _collect_one(recs: list[ResultFile], problems: list[str], registry: Mapping[str, Any],
                 model_specs: Mapping[str, Any] | None, dataset: Dataset | None) -> Site:
    """The view model of the records of one dataset (few-shot cells apart: they only draw curves)."""
    few: dict[str, list[ResultFile]] = {}
    for r in recs:
        if r.rec.few_shot is not None:
            few.setdefault(r.rec.task, []).append(r)
    recs = [r for r in recs if r.rec.few_shot is None]
    by_task: dict[str, list[ResultFile]] = {}
    for r in recs:
        by_task.setdefault(r.rec.task, []).append(r)
    task_infos: dict[str, TaskInfo] = {}
    current: list[ResultFile] = []
    for tname in sorted(set(by_task) | set(few)):  # a task with few-shot cells only still gets its page
        trs = by_task.get(tname) or few[tname]
        info = task_info(tname, registry.get(tname), trs)
        # only the newest task version in the results is ranked; older ones are counted
        versions = sorted({r.rec.task_version for r in trs})
        newest = versions[-1]
        info.older_versions = {v: sum(r.rec.task_version == v for r in trs) for v in versions[:-1]}
        info.registry_version = info.version if info.registered else None
        info.version = newest
        if not info.registered:
            r0 = next(r.rec for r in trs if r.rec.task_version == newest)
            info.kind, info.main_metric = r0.task_kind, r0.main_metric
        task_infos[tname] = info
        current += [r for r in by_task.get(tname, []) if r.rec.task_version == newest]
    by_model: dict[str, list[ResultFile]] = {}
    for r in current:
        by_model.setdefault(r.rec.model, []).append(r)
    specs = dict(model_specs) if model_specs is not None else {}
    models: dict[str, ModelInfo] = {}
    for i, name in enumerate(sorted(by_model)):
        spec = specs.get(name) if model_specs is not None else registry_spec(name)
        if spec is not None and not isinstance(spec, dict):
            spec = spec.public_dict() if hasattr(spec, "public_dict") else dict(spec)
        models[name] = model_info(name, spec, by_model[name])
        models[name].color = i % plots.N_COLORS
    cells: dict[tuple[str, str], Cell] = {}
    for name in sorted(by_model):
        per_task: dict[str, list[ResultFile]] = {}
        for r in by_model[name]:
            per_task.setdefault(r.rec.task, []).append(r)
        for tname in sorted(per_task):
            cells[(name, tname)] = make_cell(name, task_infos[tname], per_task[tname])
    for tname, t in task_infos.items():
        if not t.audit:
            rank_column([c for (m, tn), c in cells.items() if tn == tname], t)
    audits = _audits(task_infos, cells)
    families = _families(task_infos, models, cells)
    modalities = sorted({m for mi in models.values() for m in mi.modalities})
    kinds = sorted({mi.kind for mi in models.values() if mi.kind})
    not_ranked = [cells[k] for k in sorted(cells) if not task_infos[k[1]].audit
                  and (cells[k].status != "ok" or cells[k].unranked)]
    return Site(tasks=task_infos, models=models, cells=cells, families=families, problems=problems,
                n_files=len(recs), scaling=scaling_plots(models, cells, task_infos), modalities=modalities,
                kinds=kinds, task_n_models={t: sum(1 for (_, tn) in cells if tn == t) for t in task_infos},
                not_ranked=not_ranked, audits=audits, dataset=dataset,
                scaling_macro=oncology_scaling(models, cells, task_infos), few_shot=few)


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


# =========================================================================== pages
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
        checked = is_num(a.get("small_cells_checked")) and a["small_cells_checked"] >= MIN_COUNT
        withheld = safe_text(a.get("rates_withheld")) if checked else legacy_rates_problem(raw)
        groups = []
        for g in raw:
            if g.get("suppressed"):
                # suppressed groups carry no numbers, whatever the file holds
                groups.append({"group": str(g.get("group", "")), "suppressed": True,
                               "reason": safe_text(g.get("reason", "too few subjects"))})
            else:
                view = {k: g.get(k) for k in ("group", "value", "ci_low", "ci_high", "n_subjects", "n_events",
                                              *RATES)}
                if withheld:
                    view.update(dict.fromkeys(RATES))
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
            "threshold": f"{thr:.2f}" if is_num(thr) else None, "min_count": block.get("min_count"),
            "notes": [safe_text(n) for n in block.get("notes") or []], "method": safe_text(block.get("method") or "")}


def task_page(site: Site, t: TaskInfo, top: str | None) -> dict[str, Any]:
    """What tasks/<task>.html shows: cells by rank, metrics in order, curves, fairness, explanations.

    Args:
        site: the dataset's site.
        t: the task.
        top: link prefix from the site root to the dataset selector (None: one dataset).

    Returns:
        The template context of task.html.j2.
    """
    cells = sorted((c for (m, tn), c in site.cells.items() if tn == t.name),
                   key=lambda c: (c.rank if c.rank is not None else math.inf, c.model))
    names = {n for c in cells for n in c.metrics}
    order = _metric_order(names, t.main_metric, t.metrics)
    curves = task_curves(t, cells, site.models)
    fairness, shap, shap_notes, ablations = [], [], [], []
    for c in cells:
        if c.status != "ok":
            continue
        first = c.records[0].rec
        fv = _fairness_view(first.fairness)
        if fv and (fv["attributes"] or fv["notes"]):
            fairness.append((site.models[c.model], fv))
        figs, notes = explanation_figures(c.model, first.explanations, site.models[c.model].color)
        shap.extend(figs)
        shap_notes.extend(notes)
        ablations.extend(ablation_figures(c.model, first.ablations, t.main_metric,
                                          site.models[c.model].color))
    per_label = []
    if isinstance(t.kind, str) and t.kind in KINDS and KINDS[t.kind].multi_output:
        idx = sorted({int(n.split("/", 1)[1]) for n in names
                      if n.startswith("auroc/") and n.split("/", 1)[1].isdigit()})
        for j in idx:
            name = t.label_names[j] if j < len(t.label_names) else f"label {j}"
            per_label.append((name, [c.metrics.get(f"auroc/{j}") for c in cells]))
    thresholds = {}
    for c in cells:
        th = [r.rec.metrics["_threshold"].value for r in c.records if "_threshold" in (r.rec.metrics or {})]
        th = [x for x in th if is_num(x)]
        if th:
            thresholds[c.model] = f"{statistics.fmean(th):.2f}"
    return dict(
        root="../", site=site, task=t, cells=cells, metric_names=order, curves=curves, fairness=fairness,
        shap=shap, shap_notes=shap_notes, ablations=ablations, per_label=per_label, thresholds=thresholds,
        models=site.models, dataset=site.dataset, top=_up(top, 1), external=external_view(cells, t.main_metric),
        few_shot=few_shot_curves(t, site.few_shot.get(t.name, []), site.models))


def _metric_view(m: Any) -> dict | None:
    """A record Metric as the metric_cell macro reads it (no seed SD: one seed's value)."""
    if m is None:
        return None
    return {"value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high, "method": m.method or "",
            "refused": m.refused, "ci_note": m.ci_note, "sd": None}


def external_view(cells: list[Cell], main: str) -> dict | None:
    """Internal and external results side by side (run --external-data): per model, the main metric
    of its lowest ok seed on the internal held-out split and on each external dataset (a column group
    per dataset, by name); a model not scored there says why (not applicable, failed, not run).

    Returns:
        {"datasets": [name], "rows": [{"model", "internal", "external": [{"metric", "n"} | {"text"}]}]},
        or None when no record of the task has an external result.
    """
    recs = [(c, c.records[0].rec) for c in cells if c.status == "ok" and c.records]
    sets: dict[str, str] = {}
    for _, r in recs:
        for e in r.external or []:
            sets.setdefault(e.dataset.fingerprint, e.dataset.name)
    if not sets:
        return None
    names = list(sets.values())
    label = {fp: n if names.count(n) == 1 else f"{n} [{fp[:8]}]" for fp, n in sets.items()}
    rows = []
    for c, r in recs:
        ext = []
        for fp in sets:
            e = r.external_for(fp)
            if e is None:
                ext.append({"text": "not run"})
            elif e.not_applicable or e.error:
                ext.append({"text": "not applicable" if e.not_applicable else "failed",
                            "why": safe_text(e.not_applicable or e.error)})
            else:
                ext.append({"metric": _metric_view(e.main(main)), "n": e.n_test})
        rows.append({"model": c.model, "internal": _metric_view(r.main()), "n": r.n_test, "external": ext})
    return {"datasets": [label[fp] for fp in sets], "rows": rows}


def model_page(site: Site, m: ModelInfo, top: str | None) -> dict[str, Any]:
    """What models/<model>.html shows: the model card, its cells, scaling plots and size siblings.

    Args:
        site: the dataset's site.
        m: the model.
        top: link prefix from the site root to the dataset selector (None: one dataset).

    Returns:
        The template context of model.html.j2.
    """
    cells = [site.cells[(m.name, t)] for t in sorted(site.tasks) if (m.name, t) in site.cells]
    siblings = sorted(n for n, o in site.models.items() if o.series == m.series and n != m.name)
    own = any(_pretraining(r) for c in cells for r in c.records)
    return dict(
        root="../", site=site, model=m, cells=cells, tasks=site.tasks, scaling=site.scaling.get(m.series, []),
        siblings=[site.models[n] for n in siblings], dataset=site.dataset, top=_up(top, 1),
        perplexity=perplexity_table(site) if own else None)


# Pretraining stages in the order of the MEHRT paper's perplexity table (EHRT, S2, S3, S3-Joint).
PERPLEXITY_STAGES = (("1", "Stage 1 (EHRT)"), ("2", "Stage 2"), ("3", "Stage 3"), ("3joint", "Stage 3-Joint"))


def _pretraining(r: ResultFile) -> dict:
    """A record's per-stage pretraining block (MEHRT-family models' model_info "pretraining"), or {}."""
    block = (r.rec.model_info.model_extra or {}).get("pretraining") if r.rec.model_info is not None else None
    return block if isinstance(block, dict) else {}


def perplexity_table(site: Site) -> dict | None:
    """Held-out perplexity by pretraining stage and size, from every record of the site that has one.

    Every model pretrained by one curriculum (ehrt, mehrt, mehrt-joint, mehrt-<size>) reports each
    stage it went through; a stage checkpoint is shared by those models, so a (size, Stage-1 steps)
    row collects Stage 1 from any of them, Stages 2 / 3 from `mehrt`, 3-Joint from `mehrt-joint`.
    The `target tokens` column is the perplexity's denominator: one number when every stage of the
    row was scored on the same structured tokens (comparable), else "differs".

    Args:
        site: the dataset's site.

    Returns:
        {"stages": [(key, label)], "rows": [{size, steps, n_parameters, values: {stage: ppl},
        best: stage, tokens, models}]}, or None when no record reports pretraining.
    """
    rows: dict[tuple, dict] = {}
    for (model, _), cell in sorted(site.cells.items()):
        for r in cell.records:
            for stage, st in _pretraining(r).items():
                if not isinstance(st, dict) or not is_num(st.get("held_out_perplexity")):
                    continue
                size = str(st.get("size") or (r.rec.model_info.model_extra or {}).get("size") or "?")
                steps1 = _pretraining(r).get("1", {}).get("steps")
                row = rows.setdefault((size, steps1), {"size": size, "steps": steps1, "n_parameters": None,
                                                      "values": {}, "tokens": {}, "models": set()})
                row["values"].setdefault(stage, float(st["held_out_perplexity"]))
                row["tokens"].setdefault(stage, st.get("perplexity_tokens"))
                row["models"].add(model)
                if stage == "1" and is_num(st.get("n_parameters")):
                    row["n_parameters"] = st["n_parameters"]
    if not rows:
        return None
    out = []
    for key in sorted(rows, key=lambda k: (rows[k]["n_parameters"] or math.inf, str(k[0]), k[1] or 0)):
        row = rows[key]
        counts = {t for t in row["tokens"].values()}
        row["tokens"] = next(iter(counts)) if len(counts) == 1 and None not in counts else "differs"
        row["best"] = min(row["values"], key=row["values"].get)
        row["models"] = sorted(row["models"])
        out.append(row)
    known = {s for r in out for s in r["values"]}
    return {"stages": [(k, label) for k, label in PERPLEXITY_STAGES if k in known], "rows": out}


def _up(top: str | None, levels: int) -> str | None:
    """The link prefix to the dataset selector from a page `levels` folders further down."""
    return None if top is None else "../" * levels + top
