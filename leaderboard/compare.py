"""`python -m benchmark compare --a A --b B`: paired comparison of two models across tasks.

For every task both models have results for (newest common task version, lowest common seed with
status ok), the two prediction files are joined on (subject_id, prediction_time) and compared
with a paired subject bootstrap (`benchmark.stats`, 2000 resamples): AUROC and AUPRC (binary, plus
the precision difference on a recall grid), macro AUROC (multilabel), Harrell's C-index (survival),
MAE (regression). Deltas are A - B; CI and p are not reported (only the delta, with a note) when a
task has fewer than MIN_CI_SUBJECTS subjects in its rarer outcome class. `--b x,y,z` compares A
with the best of several models per task, e.g. a fusion model against the best single-modality
probe: B is chosen on the same held-out rows, and the CI / p of each row are corrected for that
choice (`benchmark.stats.paired_bootstrap_best_of`). Discrimination deltas (AUROC, macro AUROC,
C-index: all concordance probabilities) are pooled across tasks by fixed-effect and
DerSimonian-Laird random-effects meta-analysis, AUPRC deltas separately; MAE is not pooled (its
scale differs by task). The tasks share held-out subjects, so the pooled SEs come from one subject
bootstrap shared by all tasks (`benchmark.stats.pooled_paired_bootstrap`); the pooled test of a
best-of comparison uses each task's chosen B and is not corrected for the choice (it leans
towards B). Each pooled result names the estimate to emphasise by the selection rule of Integrating
Genomics into Multimodal EHR Foundation Models (Amar et al., 2025): random effects when k <= 5
tasks, else fixed effect when I^2 <= 25% or p(Q) >= 0.10, else random effects
(`benchmark.stats.pooled.emphasis_rule`).

Binary tasks also get the paper's thresholded metrics at 0.5 (accuracy, precision, recall, F1,
specificity; predicted positive: probability >= 0.5), each as a paired subject-bootstrap
difference on the same resamples (`benchmark.stats.thresholded.paired_thresholded`). With several
candidates B these compare A with the B chosen on the task's main metric, uncorrected for that
choice (the note says so). They are not pooled.

Output: a rich table on stdout, and an HTML page (plus the same numbers as JSON) written to
`--out` (a folder, or a file ending in .html) or `<results>/leaderboard/compare-A-vs-B.html`.
The page holds aggregates only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.errors import UserError
from benchmark.kinds import KINDS, LOWER_IS_BETTER, kind_of
from benchmark.stats.thresholded import THRESHOLD
from leaderboard import plots
from leaderboard.records import AUDIT_FAMILIES, ResultFile, load_records, metric_label, slug
from leaderboard.render import environment, fmt

POOLED = {"discrimination": ("auroc", "auroc_macro", "c_index"), "auprc": ("auprc",)}
METRICS_BY_KIND = {name: k.paired_metrics for name, k in KINDS.items()}
_B = "B\u00a7"  # prefix of model B's columns after the join
TH_DISPLAY = {"accuracy": "accuracy", "precision": "precision", "recall": "recall (sensitivity)", "f1": "F1",
              "specificity": "specificity"}
DISPLAY = {"c_index": "Harrell's C", "auroc": "AUROC", "auprc": "AUPRC", "auroc_macro": "macro AUROC", "mae": "MAE"}


def select_tasks(names: list[str], spec: str | None) -> list[str]:
    """Filter task names by a CLI selection: "all", or comma-separated names / family prefixes.

    Args:
        names: available task names.
        spec: the selection.

    Returns:
        Selected names, sorted.
    """
    if not spec or spec.strip() == "all":
        return sorted(names)
    parts = [p.strip().rstrip("/") for p in spec.split(",") if p.strip()]
    return sorted(n for n in names if any(n == p or n.startswith(p + "/") for p in parts))


def _ok_records(recs: list[ResultFile], model: str) -> dict[str, list[ResultFile]]:
    """The finished (status ok, predictions on disk) records of one model, by task."""
    out: dict[str, list[ResultFile]] = {}
    for r in recs:
        if r.rec.model == model and r.rec.status == "ok" and r.pred.exists():
            out.setdefault(r.rec.task, []).append(r)
    return out


def _pair(ra: list[ResultFile], rb: list[ResultFile]) -> tuple[ResultFile, ResultFile] | str:
    """A's and B's result of one task to compare: the lowest common seed of the newest common task
    version, or why there is none (no common version or seed, or two different datasets)."""
    va = {r.rec.task_version for r in ra}
    vb = {r.rec.task_version for r in rb}
    common = va & vb
    if not common:
        return f"no common task version (A has {sorted(va)}, B has {sorted(vb)})"
    v = max(common)
    sa = {r.rec.seed: r for r in ra if r.rec.task_version == v}
    sb = {r.rec.seed: r for r in rb if r.rec.task_version == v}
    seeds = sorted(set(sa) & set(sb))
    if not seeds:
        return "no common seed"
    fa, fb = (r.rec.provenance.data_fingerprint for r in (sa[seeds[0]], sb[seeds[0]]))
    if fa != fb:
        # the same subject ids on two cohorts are different patients: never pair them
        return f"A and B were run on different datasets (fingerprint {fa} vs {fb})"
    return sa[seeds[0]], sb[seeds[0]]


def parse_b(b: str) -> list[str]:
    """Model B of a comparison: one model, or a comma-separated list meaning "per task, the best of
    these" (duplicates dropped, order kept)."""
    names = list(dict.fromkeys(x.strip() for x in b.split(",") if x.strip()))
    if not names:
        raise UserError("no model given", field="--b", fix="pass a model name, or several separated by commas")
    return names


def b_label(b: str) -> str:
    """Display name of model B: the model, or "best of (x, y)" for a list."""
    names = parse_b(b)
    return names[0] if len(names) == 1 else "best of (" + ", ".join(names) + ")"


def compare(results_dir: Path, a: str, b: str, tasks: str | None = "all", *, n_boot: int = 2000, seed: int = 0,
            level: float = 0.95) -> dict[str, Any]:
    """Paired comparison of models A and B on every common task, and meta-analysis across tasks.

    B may be several models ("probe_ct,probe_structured,probe_wsi"): then, per task and metric, B is
    the one of them with the best value on the held-out rows it shares with A, and the row's CI and
    p are corrected for that choice (Bonferroni over the candidates on B's side; A must beat every
    candidate on A's side). Without the correction, choosing B on the rows it is tested on made
    "favours B" 7.8% likely under the null at a nominal 2.5%. Each row names the model chosen
    (`model_b`). Candidates must be scored on the same rows as each other; one that is not is
    skipped with the reason.

    Args:
        results_dir: the results folder.
        a: model A.
        b: model B, or a comma-separated list of candidates (best per task).
        tasks: "all", or comma-separated task names / family prefixes.
        n_boot: paired bootstrap replicates.
        seed: bootstrap seed.
        level: CI coverage.

    Returns:
        {"a", "b" (display name), "b_models", "rows": [per task and metric: model_b, value_a, value_b,
        delta, ci_low, ci_high, p_value, se, n_rows, n_subjects, seed, task_version, favours],
        "skipped": [{task, reason}], "meta": {"discrimination"|"auprc": MetaResult dict or None,
        with "emphasis" and "emphasis_reason"}, "thresholded": [per binary task and thresholded
        metric: the row keys above plus "threshold"], "pr_curves": {task: dict}, "n_boot", "level"}.

    Raises:
        UserError: a model has no results, or A shares no task with any B.
    """
    from benchmark.stats.pooled import pooled_paired_bootstrap

    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError("results folder not found", file=results_dir, field="--results",
                        fix="pass the folder that holds the result files")
    b_models = parse_b(b)
    all_recs, _ = load_records(results_dir)
    recs_a = _ok_records(all_recs, a)
    recs_b = {m: _ok_records(all_recs, m) for m in b_models}
    for name, recs, flag in ((a, recs_a, "--a"), *((m, recs_b[m], "--b") for m in b_models)):
        if not recs:
            known = sorted({r.rec.model for r in all_recs})
            raise UserError(f"no finished results for model {name!r}", file=results_dir, field=flag,
                            fix="choose from: " + (", ".join(known)
                                                   or "(no results yet: run `python -m benchmark run`)"))
    label = b_label(b)
    chosen = select_tasks(sorted(set(recs_a) & set().union(*(set(r) for r in recs_b.values()))), tasks)
    if not chosen:
        raise UserError(f"models {a!r} and {label!r} have no finished task in common"
                        + (f" among {tasks!r}" if tasks and tasks != "all" else ""), field="--tasks",
                        fix="run both models on the same tasks, or widen --tasks")
    rows, skipped, curves, pool, thresholded = [], [], {}, [], []
    for task in chosen:
        cands, reasons = {}, []
        for m in b_models:
            if task not in recs_b[m]:
                continue
            joined = _joined(recs_a[task], recs_b[m][task])
            if isinstance(joined, str):
                reasons.append(joined if len(b_models) == 1 else f"{m}: {joined}")
            elif cands and not _same_rows(next(iter(cands.values())), joined):
                reasons.append(f"{m}: scored on other rows than {next(iter(cands))}, left out of the best-of")
            else:
                cands[m] = joined
        if not cands:
            skipped.append({"task": task, "reason": "; ".join(reasons)})
            continue
        skipped += [{"task": task, "reason": r} for r in reasons]
        task_rows, task_skipped, curve = _task_rows(task, a, cands, n_boot=n_boot, seed=seed, level=level)
        for r in task_rows:
            j = cands[r["model_b"]]
            if task.split("/")[0] in AUDIT_FAMILIES:
                continue  # an audit (the leak probe) is not evidence for either model: never pooled
            pool.append((r, {"metric": r["metric"], "y": j["y"], "score_a": j["sa"], "score_b": j["sb"],
                              "subject_ids": j["sid"]}))
        rows += task_rows
        skipped += task_skipped
        if task_rows and kind_of(task_rows[0]["kind"]).precision_recall:
            thresholded += _thresholded_rows(task, a, task_rows[0]["model_b"], cands, n_boot=n_boot, seed=seed,
                                             level=level)
        if curve is not None:
            curves[task] = curve
    meta: dict[str, Any] = {}
    for name, metrics in POOLED.items():
        sel = [(r, t) for r, t in pool if r["metric"] in metrics]
        if not sel:
            meta[name] = None
            continue
        try:
            m = pooled_paired_bootstrap([t for _, t in sel], n_boot=n_boot, seed=seed, level=level).to_dict()
            m["tasks"] = [f"{r['task']} ({DISPLAY[r['metric']]})" for r, _ in sel]
            meta[name] = m
        except ValueError as e:
            meta[name] = {"error": str(e), "tasks": [r["task"] for r, _ in sel]}
    return {"a": a, "b": label, "b_models": b_models, "rows": rows, "skipped": skipped, "meta": meta,
            "thresholded": thresholded, "threshold": THRESHOLD, "pr_curves": curves, "n_boot": n_boot, "level": level, "tasks": tasks or "all"}


def _joined(ra_list: list[ResultFile], rb_list: list[ResultFile]) -> dict | str:
    """A's and B's held-out predictions of one task on their shared rows: {ra, kind, y, sa, sb, sid},
    or the reason they cannot be compared."""
    import polars as pl

    pair = _pair(ra_list, rb_list)
    if isinstance(pair, str):
        return pair
    ra, rb = pair
    kind = ra.rec.task_kind
    if kind not in METRICS_BY_KIND:
        return f"unknown task kind {kind!r}"
    try:
        fa, fb = pl.read_parquet(ra.pred), pl.read_parquet(rb.pred)
        labels = kind_of(kind).truth_columns(fa.columns)
        # B's columns get a prefix no prediction column has, so A's names stay as they are
        fb = fb.select(["subject_id", "prediction_time", *labels,
                        *[c for c in fb.columns if c.startswith("predicted_")]])
        fb = fb.rename({c: _B + c for c in fb.columns if c not in ("subject_id", "prediction_time")})
        j = fa.join(fb, on=["subject_id", "prediction_time"], how="inner")
    except Exception as e:  # noqa: BLE001 - one bad file skips one task
        return f"predictions could not be read or joined ({type(e).__name__})"
    if j.height == 0:
        return "the two prediction files share no (subject, time) row"
    # one row order for every candidate, so best-of comparisons line their rows up
    j = j.sort(["subject_id", "prediction_time"])
    if any(not j[c].equals(j[_B + c]) for c in labels):
        return "labels differ between the two files (different data?)"
    y, sa = kind_of(kind).read_predictions(j)
    _, sb = kind_of(kind).read_predictions(j, _B)
    return {"ra": ra, "kind": kind, "y": y, "sa": sa, "sb": sb, "sid": j["subject_id"].to_numpy()}


def _same_rows(j1: dict, j2: dict) -> bool:
    """Whether two joined candidates hold the same rows (subjects and labels, in the same order)."""
    return (len(j1["sid"]) == len(j2["sid"]) and np.array_equal(j1["sid"], j2["sid"])
            and np.array_equal(np.asarray(j1["y"]), np.asarray(j2["y"])))


def _task_rows(task: str, a: str, cands: dict[str, dict], *, n_boot: int, seed: int,
               level: float) -> tuple[list[dict], list[dict], dict | None]:
    """Paired rows of one task for A against the best of the candidates B (one candidate: plain
    paired test) on their joined predictions: (rows, skipped metrics, PR-difference curve of A
    against the B chosen on the main metric)."""
    from benchmark.metrics.binary import DegenerateInputError
    from benchmark.stats.paired import paired_bootstrap_best_of
    from benchmark.stats.pr_curves import precision_difference_curve

    first = next(iter(cands.values()))
    ra, kind, y, sa, sid = (first[k] for k in ("ra", "kind", "y", "sa", "sid"))
    rows, skipped, curve, main_b = [], [], None, None
    for metric in METRICS_BY_KIND[kind]:
        try:
            b, pr = paired_bootstrap_best_of(y, sa, {m: j["sb"] for m, j in cands.items()}, sid, metric=metric,
                                             n_boot=n_boot, seed=seed, level=level)
        except DegenerateInputError as e:
            skipped.append({"task": task, "reason": f"{metric}: {e}"})
            continue
        main_b = main_b or b
        lower_better = metric in LOWER_IS_BETTER
        favours = None
        if math.isfinite(pr.ci_low) and (pr.ci_low > 0 or pr.ci_high < 0):
            favours = (a if pr.delta > 0 else b) if not lower_better else (b if pr.delta > 0 else a)
        rows.append({"task": task, "kind": kind, "metric": metric, "model_b": b, "value_a": pr.value_a,
                     "value_b": pr.value_b, "delta": pr.delta, "mean_delta": pr.mean_delta, "ci_low": pr.ci_low,
                     "ci_high": pr.ci_high, "p_value": pr.p_value, "se": pr.se, "n_rows": pr.n_rows,
                     "n_subjects": pr.n_subjects, "seed": ra.rec.seed,
                     "task_version": ra.rec.task_version, "favours": favours, "method": pr.method,
                     "note": pr.note, "candidates": list(cands)})
    if kind_of(kind).precision_recall and main_b is not None:
        try:
            curve = precision_difference_curve(y, sa, cands[main_b]["sb"], sid, n_boot=n_boot, seed=seed,
                                               level=level).to_dict()
        except DegenerateInputError:
            pass
    return rows, skipped, curve


def _thresholded_rows(task: str, a: str, b: str, cands: dict[str, dict], *, n_boot: int, seed: int,
                      level: float) -> list[dict]:
    """Paired differences of the thresholded metrics at THRESHOLD between A and the B chosen on the
    task's main metric (same resamples as the other rows of the task)."""
    from benchmark.metrics.binary import DegenerateInputError
    from benchmark.stats.thresholded import paired_thresholded

    j = cands[b]
    try:
        res = paired_thresholded(j["y"], j["sa"], j["sb"], j["sid"], threshold=THRESHOLD, n_boot=n_boot, seed=seed,
                                 level=level)
    except DegenerateInputError:
        return []
    out = []
    for metric, pr in res.items():
        favours = None
        if math.isfinite(pr.ci_low) and (pr.ci_low > 0 or pr.ci_high < 0):
            favours = a if pr.delta > 0 else b
        note = pr.note
        if len(cands) > 1:
            note = ((note + "; ") if note else "") + (f"B = {b}, chosen on the main metric; not corrected "
                                                      "for that choice")
        out.append({"task": task, "kind": j["kind"], "metric": metric, "threshold": THRESHOLD, "model_b": b,
                    "value_a": pr.value_a, "value_b": pr.value_b, "delta": pr.delta, "mean_delta": pr.mean_delta,
                    "ci_low": pr.ci_low, "ci_high": pr.ci_high, "p_value": pr.p_value, "se": pr.se,
                    "n_rows": pr.n_rows, "n_subjects": pr.n_subjects, "seed": j["ra"].rec.seed,
                    "task_version": j["ra"].rec.task_version, "favours": favours, "method": pr.method,
                    "note": note})
    return out


def _p(p: float) -> str:
    if not isinstance(p, (int, float)) or not math.isfinite(p):
        return "\u2014"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _d(x: float) -> str:
    return "\u2014" if not isinstance(x, (int, float)) or not math.isfinite(x) else f"{x:+.3f}"


def render_compare(res: dict[str, Any]) -> str:
    """The comparison page (HTML) of a `compare` result.

    Args:
        res: the dict from `compare`.

    Returns:
        HTML text.
    """
    env = environment()
    env.filters.update(p=_p, d=_d)
    forests = {}
    for name, metrics in POOLED.items():
        m = res["meta"].get(name)
        sel = [r for r in res["rows"] if r["metric"] in metrics]
        if not sel:
            continue
        fr = [(f"{r['task']} ({DISPLAY[r['metric']]})", r["delta"], r["ci_low"], r["ci_high"], False) for r in sel]
        if m and "fixed" in m:
            star = {m.get("emphasis"): " (emphasised)"}
            fr.append(("pooled, fixed effect" + star.get("fixed", ""), m["fixed"]["estimate"], m["fixed"]["ci_low"],
                       m["fixed"]["ci_high"], True))
            fr.append(("pooled, random effects (DL)" + star.get("random", ""), m["random"]["estimate"],
                       m["random"]["ci_low"], m["random"]["ci_high"], True))
        label = "AUROC / C-index" if name == "discrimination" else "AUPRC"
        forests[name] = plots.forest_plot(fr, title=f"{label}: {res['a']} \u2212 {res['b']} (95% CI)",
                                          x_label=f"difference in {label} (A \u2212 B)")
    pr_figs = []
    for task, c in sorted(res["pr_curves"].items()):
        pts = [(r, d) for r, d in zip(c["recall"], c["delta"]) if d is not None]
        lo = [v if v is not None else d for v, (_, d) in zip(c["ci_low"], pts)]
        hi = [v if v is not None else d for v, (_, d) in zip(c["ci_high"], pts)]
        if len(pts) < 2:
            continue
        span = max([abs(v) for v in lo + hi] + [0.05]) * 1.1
        span = math.ceil(span * 20) / 20
        pr_figs.append(plots.line_plot([plots.Series("A \u2212 B (95% CI band)", pts, lo=lo, hi=hi)],
                                       title=f"{task}: precision difference at fixed recall", x_label="recall",
                                       y_label="precision A \u2212 B", x_range=(0.0, 1.0), y_range=(-span, span),
                                       band=True, ref_y=0.0))
    return env.get_template("compare.html.j2").render(root="", res=res, forests=forests, pr_figs=pr_figs,
                                                      display=DISPLAY, th_display=TH_DISPLAY,
                                                      metric_label=metric_label)


def _print_table(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    console = Console(highlight=False)
    t = Table(title=escape(f"{res['a']} (A) vs {res['b']} (B): paired bootstrap, {res['n_boot']} resamples, delta = A - B"))
    several = len(res.get("b_models", [])) > 1
    for col in ("task", "metric", *(("B model",) if several else ()), "A", "B", "delta", "95% CI", "p", "favours"):
        t.add_column(col)
    for r in res["rows"]:
        cells = (r["task"], DISPLAY[r["metric"]], *((r["model_b"],) if several else ()), fmt(r["value_a"]),
                 fmt(r["value_b"]), _d(r["delta"]), f"[{_d(r['ci_low'])}, {_d(r['ci_high'])}]", _p(r["p_value"]),
                 r["favours"] or "\u2014")
        t.add_row(*(escape(str(c)) for c in cells))
    console.print(t)
    for name in POOLED:
        m = res["meta"].get(name)
        if not m or "fixed" not in m:
            continue
        label = "AUROC / C-index" if name == "discrimination" else "AUPRC"
        mt = Table(title=f"pooled {label} difference over {m['k']} task(s)")
        for col in ("model", "estimate", "95% CI", "p"):
            mt.add_column(col)
        for key, txt in (("fixed", "fixed effect (inverse variance)"),
                         ("random", "random effects (DerSimonian-Laird)")):
            e = m[key]
            txt += " *" if m.get("emphasis") == key else ""
            mt.add_row(txt, _d(e["estimate"]), f"[{_d(e['ci_low'])}, {_d(e['ci_high'])}]", _p(e["p_value"]))
        console.print(mt)
        if m["k"] >= 2:
            console.print(f"  heterogeneity: Q = {m['q']:.2f} (df {m['q_df']}), I\u00b2 = {100 * m['i2']:.0f}%, "
                          f"tau\u00b2 = {m['tau2']:.2g}")
        if m.get("emphasis"):
            console.print(f"  * emphasised: {escape(m['emphasis_reason'])}")
    if res.get("thresholded"):
        tt = Table(title=f"thresholded metrics at {res['threshold']:g} (predicted positive: probability >= "
                         f"{res['threshold']:g}), paired bootstrap, delta = A - B")
        for col in ("task", "metric", *(("B model",) if several else ()), "A", "B", "delta", "95% CI", "p",
                    "favours"):
            tt.add_column(col)
        for r in res["thresholded"]:
            ci = f"[{_d(r['ci_low'])}, {_d(r['ci_high'])}]" if math.isfinite(r["ci_low"]) else (r["note"] or "\u2014")
            cells = (r["task"], TH_DISPLAY[r["metric"]], *((r["model_b"],) if several else ()), fmt(r["value_a"]),
                     fmt(r["value_b"]), _d(r["delta"]), ci, _p(r["p_value"]), r["favours"] or "\u2014")
            tt.add_row(*(escape(str(c)) for c in cells))
        console.print(tt)
    for s in res["skipped"]:
        console.print(f"[yellow]skipped {escape(s['task'])}[/]: {escape(s['reason'])}")


def output_path(results_dir: Path, a: str, b: str, out: str | None) -> Path:
    """Where the comparison page goes.

    Args:
        results_dir: the results folder.
        a: model A.
        b: model B (or a comma-separated list: "best-of-x-y").
        out: --out: a file ending in .html, a folder, or None (<results>/leaderboard).

    Returns:
        The HTML path.
    """
    names = parse_b(b)
    bname = names[0] if len(names) == 1 else "best-of-" + "-".join(names)
    name = f"compare-{slug(a)}-vs-{slug(bname)}.html"
    if out:
        p = Path(out)
        return p if p.suffix == ".html" else p / name
    return Path(results_dir) / "leaderboard" / name


def compare_cli(args) -> int:
    """Entry point of `python -m benchmark compare`.

    Args:
        args: namespace with a, b, tasks, results, out (and optionally n_boot, seed).

    Returns:
        Exit status 0 (UserError is raised for bad input; the CLI prints it and exits 2).
    """
    from benchmark.artifacts import atomic_write

    results = Path(args.results)
    res = compare(results, args.a, args.b, getattr(args, "tasks", "all"), n_boot=int(getattr(args, "n_boot", 2000)),
                  seed=int(getattr(args, "seed", 0)))
    _print_table(res)
    path = output_path(results, args.a, args.b, getattr(args, "out", None))
    atomic_write(path, render_compare(res))
    data = json.dumps(_finite(res), indent=1, sort_keys=True, allow_nan=False, default=str)
    atomic_write(path.with_suffix(".json"), data + "\n")
    print(f"comparison written to {path}")
    return 0


def _finite(x):
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float):
        return round(x, 6) if math.isfinite(x) else None
    if isinstance(x, np.generic):
        return _finite(x.item())
    return x
