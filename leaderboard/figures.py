"""The figures of the task and model pages, drawn from result files with `leaderboard.plots`.

    task_curves(task, cells, models)     ROC / PR / calibration, Kaplan-Meier, regression bins, td-AUC
    explanation_figures(model, expl, c)  feature importance bars and modality attribution
    shap_summary(expl)                   the global feature importance of an "explanations" block
    ablation_figures(model, abl, ...)    the missing-modality sweep
    scaling_plots(models, cells, tasks)  main metric against parameters per model series
    oncology_scaling(models, cells, tasks)  macro-average oncology AUROC against parameters (MEHRT paper)

Imports point one way inside the package: records <- rules <- scaling <- figures <- views <- render <- build.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from benchmark.kinds import BINARY, KINDS
from leaderboard import plots
from leaderboard.records import (BOUNDED_01, Cell, ModelInfo, ResultFile, TaskInfo, is_num, metric_label,
                                 read_predictions)
from leaderboard.scaling import joint_bootstrap, macro_points, oncology_tasks

SHAP_TOP = 15


def _binary_curves(task: TaskInfo, c: Cell, df, sid, color, acc: dict, out: dict) -> None:
    """ROC, PR and calibration series of one model (binary)."""
    if not {"boolean_value", "predicted_boolean_probability"} <= set(df.columns):
        return
    y = df["boolean_value"].cast(int).to_numpy()
    p = df["predicted_boolean_probability"].cast(float).to_numpy()
    why = plots.enough_both_classes(y, sid)
    if why:
        out["notes"].append(f"{c.model}: curves withheld ({why})")
        return
    acc["prevalence"] = float(y.mean())
    acc["roc"].append(plots.Series(c.model, plots.roc_points(y, p), color=color))
    acc["pr"].append(plots.Series(c.model, plots.pr_points(y, p), color=color))
    bins, dropped = plots.calibration_bins(y, p, sid)
    if bins:
        acc["cal"].append(plots.Series(c.model, bins, color=color, markers=True))
    if dropped:
        out["notes"].append(f"{c.model}: {dropped} calibration bin(s) with fewer than "
                            f"{plots.MIN_COUNT} subjects left out")


def _km_curves(task: TaskInfo, c: Cell, df, sid, color, acc: dict, out: dict) -> None:
    """Kaplan-Meier curves by predicted-risk tertile of one model (survival; a small plot each)."""
    if not {"float_value", "boolean_value", "predicted_risk"} <= set(df.columns):
        return
    t = df["float_value"].cast(float).to_numpy()
    ev = df["boolean_value"].cast(int).to_numpy()
    risk = df["predicted_risk"].cast(float).to_numpy()
    why = plots.enough_both_classes(ev, sid)
    if why:
        out["notes"].append(f"{c.model}: Kaplan-Meier curves withheld ({why})")
        return
    grid = plots.km_time_grid(t, task.horizon_days)
    km = plots.km_by_risk_tertile(t, ev, risk, sid, grid)
    if km:
        series = [plots.Series(name, pts, color=i + 2 if i else 0, dashed=i == 1)
                  for i, (name, pts) in enumerate(km)]
        out["small"].append(plots.line_plot(
            series, title=f"{c.model}: Kaplan-Meier by predicted-risk tertile",
            x_label="days since prediction time", y_label="survival",
            x_range=(0.0, float(grid[-1])), y_range=(0.0, 1.0), step=True, width=340))


def _regression_curves(task: TaskInfo, c: Cell, df, sid, color, acc: dict, out: dict) -> None:
    """Binned predicted-vs-observed series of one model (regression)."""
    if not {"float_value", "predicted_float_value"} <= set(df.columns):
        return
    y = df["float_value"].cast(float).to_numpy()
    p = df["predicted_float_value"].cast(float).to_numpy()
    pts = plots.binned_regression(y, p, sid)
    if pts:
        acc["reg"].append(plots.Series(c.model, pts, color=color, markers=True))


# kind name -> the per-model curves its task page draws (presentation, so the table lives here;
# a kind without an entry, multilabel, gets none)
_CURVES = {"binary": _binary_curves, "survival": _km_curves, "regression": _regression_curves}


def task_curves(task: TaskInfo, cells: list[Cell], models: dict[str, ModelInfo]) -> dict[str, Any]:
    """Aggregate plots of a task page from the predictions of each model's lowest ok seed."""
    out: dict[str, Any] = {"plots": [], "small": [], "notes": []}
    acc: dict[str, Any] = {"roc": [], "pr": [], "cal": [], "reg": [], "prevalence": None}
    draw = _CURVES.get(task.kind)
    for c in cells:
        if c.status != "ok" or not c.records:
            continue
        color = models[c.model].color
        df = read_predictions(c.records[0].pred)
        if df is None:
            out["notes"].append(f"{c.model}: no predictions file, no curves")
            continue
        sid = df["subject_id"].to_numpy() if "subject_id" in df.columns else np.arange(df.height)
        try:
            if draw is not None:
                draw(task, c, df, sid, color, acc, out)
        except Exception as e:  # noqa: BLE001 - a malformed predictions file must not stop the site
            out["notes"].append(f"{c.model}: curves could not be computed ({type(e).__name__})")
    roc, pr, cal, reg, prevalence = (acc[k] for k in ("roc", "pr", "cal", "reg", "prevalence"))
    kind = KINDS.get(task.kind) if isinstance(task.kind, str) else None
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
    if kind is not None and kind.time_to_event:  # td-AUC at the evaluation times
        td = []
        t_max = 0.0
        for c in cells:
            if c.status != "ok":
                continue
            pts, lo, hi = [], [], []
            for n, m in sorted(c.metrics.items()):
                if n.startswith("td_auc@") and is_num(m.get("value")):
                    try:
                        t = float(n.split("@", 1)[1])
                    except ValueError:
                        continue
                    # plotted at whole days, like the table (see metric_label)
                    pts.append((float(round(t)), m["value"]))
                    lo.append(m["ci_low"] if is_num(m.get("ci_low")) else m["value"])
                    hi.append(m["ci_high"] if is_num(m.get("ci_high")) else m["value"])
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
            items = [(str(k), float(v), "") for k, v in obj.items() if is_num(v)]
    elif isinstance(obj, list):
        for e in obj:
            name, v, desc = None, None, ""
            if isinstance(e, dict):
                name = e.get("feature", e.get("name"))
                v = next((e[k] for k in _VALUE_KEYS if is_num(e.get(k))), None)
                desc = str(e.get("description") or "")
            elif isinstance(e, (list, tuple)) and len(e) == 2:
                name, v = e
            if name is not None and is_num(v):
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
                for m in expl["modalities"] if isinstance(m, dict) and is_num(m.get("drop"))]
        if rows:
            figs.append(plots.bar_plot(rows, title=f"{model}: {expl.get('method') or 'modality attribution'}",
                                       x_label="drop without the modality (positive = it helps)", color=color,
                                       label_width=120, width=460))
    if isinstance(expl, dict) and expl.get("method") is None and expl.get("reason"):
        notes.append(f"{model}: no explanation ({expl['reason']})")
    sub = expl.get("structured_model") if isinstance(expl, dict) else None
    # fusion models: SHAP grouped by modality (encoders/fusion/explain.py)
    by_mod = expl.get("modality_shap") if isinstance(expl, dict) else None
    for block, prefix in ((expl, ""), (sub, "structured model, "), (by_mod, "")):
        got = _importance_items(block)
        if got:
            method, items = got
            output = block.get("output") if isinstance(block, dict) else None
            title = (f"{model}: SHAP by modality" if block is by_mod
                     else f"{model}: top features ({prefix}{method})")
            figs.append(plots.bar_plot(items, title=title,
                                       x_label=f"importance ({output})" if output else "mean |value|",
                                       color=color))
        elif isinstance(block, dict) and block is sub and block.get("reason"):
            notes.append(f"{model}: structured model not explained ({block['reason']})")
        elif isinstance(block, dict) and block is by_mod and block.get("reason"):
            notes.append(f"{model}: no SHAP by modality ({block['reason']})")
    return figs, notes


def ablation_figures(model: str, abl: Any, metric: str, color: int) -> list[Markup]:
    """The missing-modality sweep of a result's "ablations" block: the main metric (with its CI)
    against the fraction of test subjects whose modality is masked, one line per modality."""
    if not isinstance(abl, dict) or not isinstance(abl.get("missing_sweep"), dict):
        return []
    series, ys = [], []
    for i, (m, curve) in enumerate(sorted(abl["missing_sweep"].items())):
        pts = [p for p in curve if isinstance(p, dict) and is_num(p.get("fraction")) and is_num(p.get("value"))]
        if len(pts) < 2:
            continue
        lo = [p["ci_low"] if is_num(p.get("ci_low")) else p["value"] for p in pts]
        hi = [p["ci_high"] if is_num(p.get("ci_high")) else p["value"] for p in pts]
        ys += lo + hi
        series.append(plots.Series(str(m), [(float(p["fraction"]), float(p["value"])) for p in pts], lo=lo, hi=hi,
                                   color=(color + i) % 8, markers=True))
    if not series:
        return []
    pad = 0.02 * max(max(ys) - min(ys), 1e-3)
    return [plots.line_plot(series, title=f"{model}: missing-modality sweep", x_label="fraction of test subjects "
                            "with the modality masked", y_label=metric_label(metric),
                            y_range=(min(ys) - pad, max(ys) + pad), band=True)]


# =========================================================================== scaling
def scaling_plots(models: dict[str, ModelInfo], cells: dict[tuple[str, str], Cell], tasks: dict[str, TaskInfo]
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
                npar = c.compute.get("n_parameters") if is_num(c.compute.get("n_parameters")) else models[n].n_parameters
                if is_num(npar) and npar > 0:
                    pts.append((float(npar), c.main["value"], c.main.get("ci_low"), c.main.get("ci_high")))
            pts.sort()
            if len({p[0] for p in pts}) < 2:
                continue
            per_metric.setdefault(t.main_metric, []).append(plots.Series(
                tname, [(p[0], p[1]) for p in pts], lo=[p[2] if is_num(p[2]) else p[1] for p in pts],
                hi=[p[3] if is_num(p[3]) else p[1] for p in pts], color=ti, markers=True))
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


def oncology_scaling(models: dict[str, ModelInfo], cells: dict[tuple[str, str], Cell], tasks: dict[str, TaskInfo]
                     ) -> dict | None:
    """The MEHRT paper's scaling figure: macro-average AUROC over the oncology tasks against parameters
    (log x), one line per model series (EHRT, MEHRT, ...), 95% CI bars (see `leaderboard.scaling`).

    Returns:
        {"figure": Markup or None, "points": [MacroPoint], "notes": [str], "tasks": [task names]}, or
        None when no sized model has oncology results.
    """
    points, notes = macro_points(models, cells, tasks)
    if not points and not notes:
        return None
    series: list[plots.Series] = []
    for i, name in enumerate(sorted({p.series for p in points})):
        pts = [p for p in points if p.series == name]
        series.append(plots.Series(name, [(p.n_parameters, p.value) for p in pts],
                                   lo=[p.ci_low if p.ci_low is not None else p.value for p in pts],
                                   hi=[p.ci_high if p.ci_high is not None else p.value for p in pts],
                                   color=i, markers=True))
    figure = None
    if points:
        xs = [p.n_parameters for p in points]
        ys = [v for p in points for v in (p.value, p.ci_low, p.ci_high) if v is not None]
        x_range = (10 ** math.floor(math.log10(min(xs))), 10 ** math.ceil(math.log10(max(xs))))
        if x_range[0] == x_range[1]:
            x_range = (x_range[0] / 10, x_range[1] * 10)
        pad = (max(ys) - min(ys)) * 0.1 or 0.05
        y_range = (max(0.0, math.floor((min(ys) - pad) * 20) / 20), min(1.0, math.ceil((max(ys) + pad) * 20) / 20))
        figure = plots.line_plot(series, title="Oncology: macro-average AUROC vs parameters",
                                 x_label="parameters (log scale)", y_label="macro-average AUROC",
                                 x_range=x_range, y_range=y_range, log_x=True, width=480)
    return {"figure": figure, "points": points, "notes": notes, "tasks": oncology_tasks(tasks)}


# =========================================================================== few-shot curves
def _point_key(fs) -> tuple[str, float, str]:
    """(scheme, x order, label) of a record's few_shot block: "all" / 1.0 sort last."""
    if fs.scheme == "k_shots":
        return fs.scheme, math.inf if fs.k is None else float(fs.k), "all" if fs.k is None else str(fs.k)
    return fs.scheme, float(fs.fraction), f"{fs.fraction:g}"


def few_shot_curves(task: TaskInfo, files: list[ResultFile], models: dict[str, ModelInfo],
                    n_boot: int = 1000) -> dict | None:
    """The task's few-shot / label-fraction view (benchmark.few_shot): main metric against the number
    of training samples (log x), one line per model, a 95% CI band, and the table behind it.

    A point is the mean over its draws (and seeds) of the held-out main metric. Its CI: for a binary
    task's AUROC, a subject bootstrap of the held-out set drawn jointly for all draws (the held-out
    set is the same at every point; leaderboard.scaling.joint_bootstrap, logit-scale Wald); for
    other metrics, the mean of the draws' own bootstrap bounds. Refused and failed draws are left
    out and counted in the notes.

    Args:
        task: the task.
        files: its few-shot result files (newest task version is used).
        models: the site's models (colours), may lack a model that has only few-shot results.
        n_boot: bootstrap replicates of the joint CI.

    Returns:
        {"figure": Markup or None, "rows": [dict], "notes": [str]}, or None without few-shot files.
    """
    files = [f for f in files if f.rec.few_shot is not None and f.rec.task_version == task.version]
    if not files:
        return None
    metric = task.main_metric
    groups: dict[tuple, list[ResultFile]] = {}
    for f in files:
        groups.setdefault((f.rec.model, *_point_key(f.rec.few_shot)), []).append(f)
    rows, notes = [], []
    for (model, scheme, x_order, label), fs in sorted(groups.items()):
        ok = [f for f in fs if f.rec.status == "ok" and f.rec.main() is not None and is_num(f.rec.main().value)]
        off = [f.rec.refused or f.rec.error or f.rec.status for f in fs if f not in ok]
        if off:
            notes.append(f"{model} at {'k' if scheme == 'k_shots' else 'fraction'}={label}: {len(off)} of "
                         f"{len(fs)} draw(s) without a value ({off[0]})")
        if not ok:
            continue
        vals = [f.rec.main().value for f in ok]
        value, low, high, method = float(np.mean(vals)), None, None, ""
        frames = [read_predictions(f.pred) for f in ok] if metric == "auroc" and KINDS.get(task.kind) is BINARY else []
        if frames and all(fr is not None for fr in frames):
            try:
                value, low, high, _, note = joint_bootstrap({"draws": frames}, n_boot)
                method = f"joint subject bootstrap over {len(ok)} draw(s), {n_boot} resamples"
                if note:
                    method += f" ({note})"
            except Exception as e:  # noqa: BLE001 - a malformed predictions file: the point without a CI
                method = f"CI not computed ({type(e).__name__})"
        else:
            lows = [f.rec.main().ci_low for f in ok]
            highs = [f.rec.main().ci_high for f in ok]
            if all(is_num(v) for v in lows + highs):
                low, high = float(np.mean(lows)), float(np.mean(highs))
                method = "mean of the draws' bootstrap bounds"
            else:
                method = "no CI: a draw's sample cannot support one"
        rows.append(dict(model=model, scheme=scheme, point=label, x_order=x_order, n_draws=len(ok), n_cells=len(fs),
                         n_train=float(np.mean([f.rec.n_train for f in ok if f.rec.n_train is not None] or [0])),
                         value=value, ci_low=low, ci_high=high, sd=float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
                         method=method))
    figure = None
    plotted = [r for r in rows if r["n_train"] > 0]
    if plotted:
        names = sorted({r["model"] for r in plotted})
        series = []
        for i, name in enumerate(names):
            pts = sorted((r for r in plotted if r["model"] == name), key=lambda r: r["n_train"])
            color = models[name].color if name in models else i % plots.N_COLORS
            series.append(plots.Series(name, [(r["n_train"], r["value"]) for r in pts],
                                       lo=[r["ci_low"] if is_num(r["ci_low"]) else r["value"] for r in pts],
                                       hi=[r["ci_high"] if is_num(r["ci_high"]) else r["value"] for r in pts],
                                       color=color, markers=True))
        xs = [r["n_train"] for r in plotted]
        ys = [v for r in plotted for v in (r["value"], r["ci_low"], r["ci_high"]) if is_num(v)]
        x_range = (10 ** math.floor(math.log10(min(xs))), 10 ** math.ceil(math.log10(max(xs))))
        if x_range[0] == x_range[1]:
            x_range = (x_range[0] / 10, x_range[1] * 10)
        pad = (max(ys) - min(ys)) * 0.1 or 0.05
        y_range = (math.floor((min(ys) - pad) * 20) / 20, math.ceil((max(ys) + pad) * 20) / 20)
        if metric in BOUNDED_01:
            y_range = (max(0.0, y_range[0]), min(1.0, y_range[1]))
        figure = plots.line_plot(series, title=f"{task.name}: few-shot {metric_label(metric)}",
                                 x_label="training samples (log scale; k shots per class, or fraction)",
                                 y_label=f"held-out {metric_label(metric)}", x_range=x_range, y_range=y_range,
                                 log_x=True, band=True, width=520)
    return {"figure": figure, "rows": rows, "notes": notes}


def standalone_svg(figure: Markup) -> str:
    """A leaderboard figure as a self-contained SVG file (the site stylesheet's light palette and plot
    rules inlined), e.g. for a README image.

    Args:
        figure: an SVG from leaderboard.plots.

    Returns:
        The SVG text.
    """
    css = (Path(__file__).parent / "static" / "style.css").read_text(encoding="utf-8")
    root = css[css.index(":root"):]
    light = root[root.index("{") + 1: root.index("}")].replace("color-scheme: light dark;", "")  # light only
    rules = [ln for ln in css.splitlines() if ln.startswith(("svg.plot", ".c0", ".c4"))]
    svg = str(figure)
    cut = svg.index(">", svg.index("<svg")) + 1
    return svg[:cut] + "<style>svg.plot {" + light + "}\n" + "\n".join(rules) + "</style>" + svg[cut:]

