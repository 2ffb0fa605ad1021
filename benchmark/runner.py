"""`python -m benchmark run`: plan the (model, task, seed) grid, run each cell, write result files.

A cell's JSON is written last (after its predictions), atomically, so a killed run leaves either a
finished cell or nothing; rerunning recomputes only the unfinished cells. A cell that raises is
recorded with status "failed" and its error, and the run goes on.
"""

from __future__ import annotations

import random
import resource
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from benchmark import __version__
from benchmark.ablation import is_maskable, leave_one_out, modality_ablation, modality_attribution
from benchmark.data.cohort import Cohort
from benchmark.data.integrity import require_integrity
from benchmark.errors import UserError
from benchmark.labels import TaskNotApplicable, extract_labels
from benchmark.model_api import BUDGETS, Prediction, TaskData
from benchmark.paths import cache_dir
from benchmark.registry import ModelSpec, get_model
from benchmark.results import (SCHEMA_VERSION, cell_paths, cell_state, git_sha, hardware, lockfile_hash,
                               write_predictions, write_result)
from benchmark.task_registry import select_tasks
from benchmark.taskspec import TaskSpec


@dataclass
class Cell:
    spec: ModelSpec
    task: TaskSpec
    seed: int


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and (if already imported) torch."""
    import sys
    random.seed(seed)
    np.random.seed(seed % (2**32))
    if "torch" in sys.modules:
        import torch
        torch.manual_seed(seed)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def task_data(task: TaskSpec, cohort: Cohort, seed: int, labels: pl.DataFrame) -> TaskData:
    """Join labels with splits and build the TaskData a model sees."""
    lab = labels.join(cohort.splits, on="subject_id", how="inner").sort("subject_id", "prediction_time")
    work = cache_dir() / "work" / cohort.fingerprint() / task.name.replace("/", "__")
    work.mkdir(parents=True, exist_ok=True)
    return TaskData(task=task, cohort=cohort, labels=lab, seed=seed, work_dir=work)


def predictions_frame(data: TaskData, pred: Prediction, split: str = "held_out") -> pl.DataFrame:
    """meds-evaluation PredictionSchema rows (+ documented extensions for other task kinds).

    binary:     boolean_value, predicted_boolean_probability
    multilabel: boolean_value/<label>, predicted_boolean_probability/<label> for each label
    survival:   boolean_value (event), float_value (days), predicted_risk
    regression: float_value, predicted_float_value
    """
    f = data.frame(split).select("subject_id", "prediction_time")
    k = data.task.kind
    y = data.y(split)
    if k == "binary":
        return f.with_columns(pl.Series("boolean_value", y.astype(bool)),
                              pl.Series("predicted_boolean_probability", pred.score.astype(np.float32)))
    if k == "multilabel":
        cols = []
        for i, n in enumerate(data.task.label_names()):
            cols += [pl.Series(f"boolean_value/{n}", y[:, i].astype(bool)),
                     pl.Series(f"predicted_boolean_probability/{n}", pred.score[:, i].astype(np.float32))]
        return f.with_columns(cols)
    if k == "survival":
        return f.with_columns(pl.Series("float_value", y[:, 0]), pl.Series("boolean_value", y[:, 1].astype(bool)),
                              pl.Series("predicted_risk", pred.score.astype(np.float64)))
    return f.with_columns(pl.Series("float_value", y), pl.Series("predicted_float_value", pred.score.astype(np.float64)))


def score_cell(data: TaskData, test: Prediction, val: Prediction | None, n_boot: int, seed: int) -> dict:
    """Metrics with patient-level bootstrap CIs for the held-out split."""
    from benchmark.metrics.evaluate import evaluate

    task = data.task
    y = data.y("held_out")
    sid = data.frame("held_out")["subject_id"].to_numpy()
    kw: dict = {"n_boot": n_boot, "seed": seed}
    if task.kind == "binary" and val is not None:
        from benchmark.metrics.binary import choose_threshold
        yv = data.y("tuning")
        if len(np.unique(yv)) == 2:
            # rounded so the stored value is not one tuning patient's exact score
            kw["threshold"] = round(float(choose_threshold(yv, val.score, rule="youden")), 3)
    if task.kind == "survival":
        ytr = data.y(("train", "tuning"))
        kw.update(train_time=ytr[:, 0], train_event=ytr[:, 1].astype(bool), horizon=task.horizon_days())
        ev_times = y[y[:, 1] == 1, 0]
        if len(ev_times) >= 4:
            # whole days, so an evaluation time is never one patient's exact event time
            kw["times"] = np.unique(np.round(np.quantile(ev_times, [0.25, 0.5, 0.75])))
        if test.surv_prob is not None and test.surv_times is not None:
            kw["surv_prob"], kw["times"] = test.surv_prob, test.surv_times
        res = evaluate("survival", (y[:, 0], y[:, 1].astype(bool)), test.score, sid, **kw)
    else:
        res = evaluate(task.kind, y, test.score, sid, **kw)
    out = {name: r.to_dict() for name, r in res.items()}
    if "threshold" in kw:
        out["_threshold"] = {"value": kw["threshold"], "ci_low": None, "ci_high": None,
                             "method": "Youden's J on the tuning split"}
    return out


def run_cell(cell: Cell, cohort: Cohort, labels: pl.DataFrame, results_dir: Path, budget: str,
             ablate: bool = False) -> dict:
    """Fit, predict, score and write one (model, task, seed) cell. Returns the record written.

    ablate: also run the test-time modality ablations (benchmark.ablation) into record["ablations"].
    """
    spec, task, seed = cell.spec, cell.task, cell.seed
    json_path, pred_path = cell_paths(results_dir, spec.name, task.name, seed)
    t0 = time.perf_counter()
    data = task_data(task, cohort, seed, labels)
    b = BUDGETS[budget]
    record: dict = {
        "schema_version": SCHEMA_VERSION, "model": spec.name, "task": task.name, "task_version": task.version,
        "task_kind": task.kind, "seed": seed, "budget": budget, "main_metric": task.main_metric,
        "n_train": int(data.frame("train").height), "n_tuning": int(data.frame("tuning").height),
        "n_test": int(data.frame("held_out").height),
        "provenance": {"package_version": __version__, "git_sha": git_sha(), "task_hash": task.content_hash(),
                       "data_fingerprint": cohort.fingerprint(), "lockfile_hash": lockfile_hash(),
                       "hardware": hardware(), "cohort": str(cohort.root)},
        "model_info": {"kind": spec.kind, "modalities": list(spec.modalities), "reference": spec.reference},
    }
    y_test = data.y("held_out")
    record["n_events"] = (int(y_test.sum()) if task.kind == "binary" else int(y_test[:, 1].sum())
                          if task.kind == "survival" else int(y_test.sum()) if task.kind == "multilabel" else None)
    try:
        seed_everything(seed)
        model = spec.factory(budget=b, seed=seed)
        model.fit(data)
        test = model.predict(data, "held_out")
        val = model.predict(data, "tuning") if task.kind == "binary" else None
        metrics = score_cell(data, test, val, b.n_boot, seed)
        record["metrics"] = metrics
        main = metrics.get(task.main_metric, {})
        record["status"] = "ok" if main.get("value") is not None else "refused"
        if main.get("refused"):
            record["refused"] = main["refused"]
        record["model_info"].update({k: v for k, v in test.info.items() if k != "explanations"})
        record["explanations"] = test.info.get("explanations")
        maskable = is_maskable(model)
        loo = leave_one_out(model, data) if maskable and (ablate or not record["explanations"]) else None
        if maskable:
            record["model_info"]["maskable_modalities"] = list(model.maskable_modalities())
            if not record["explanations"]:
                record["explanations"] = modality_attribution(model, data, test, loo=loo)
        if ablate:
            abl = modality_ablation(model, data, test, n_boot=b.n_boot, seed=seed, loo=loo) if maskable else None
            record["ablations"] = abl or {"skipped": f"{spec.name} cannot mask modalities at test time"}
        record["fairness"] = _fairness(data, test, metrics)
        write_predictions(pred_path, predictions_frame(data, test))
    except Exception as e:  # noqa: BLE001 - a failing cell is recorded and the run goes on
        record["status"] = "failed"
        record["error"] = f"{type(e).__name__}: {e}"
        record["traceback"] = traceback.format_exc(limit=8)
    record["compute"] = {"wall_s": round(time.perf_counter() - t0, 3), "peak_rss_mb": round(_peak_rss_mb(), 1),
                         "device": record["model_info"].get("device", "cpu"),
                         "n_parameters": record["model_info"].get("n_parameters", spec.n_parameters),
                         "tokens_per_s": record["model_info"].get("tokens_per_s")}
    write_result(json_path, record)
    return record


def _has_ablations(results_dir: Path, c: Cell) -> bool:
    import json
    jp, _ = cell_paths(results_dir, c.spec.name, c.task.name, c.seed)
    try:
        return "ablations" in json.loads(jp.read_text())
    except (OSError, ValueError):
        return False


def _fairness(data: TaskData, test: Prediction, metrics: dict) -> dict:
    from benchmark.fairness import fairness_report
    thr = metrics.get("_threshold", {}).get("value")
    return fairness_report(data, test, threshold=thr)


def run_grid(models: str, tasks: str, cohort: Cohort, results_dir: Path, seeds: int = 1, budget: str = "default",
             force: bool = False, ablate: bool = False) -> int:
    """Run every fitting (model, task, seed) cell and print a results table.

    ablate: run modality ablations in every cell; finished cells without them are rerun.

    Returns:
        0 when every planned cell finished, 1 when some cell failed.
    """
    require_integrity(cohort)  # refuse a cohort that fails validate's integrity checks, before any label or cell
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    import shutil
    console = Console(highlight=False, width=max(shutil.get_terminal_size((140, 24)).columns, 120))
    if seeds < 1:
        raise UserError(f"--seeds {seeds} must be at least 1", field="--seeds", fix="pass --seeds 1 or more")
    specs = [get_model(m.strip()) for m in models.split(",") if m.strip()]
    task_list = select_tasks(tasks)
    labels: dict[str, pl.DataFrame] = {}
    for t in task_list:
        try:
            labels[t.name] = extract_labels(t, cohort).labels
        except TaskNotApplicable as e:
            console.print(f"[yellow]skip task {t.name}[/]: the dataset does not map {', '.join(e.missing)}")
    cells, skipped = [], []
    for spec in specs:
        for t in task_list:
            if t.name not in labels:
                continue
            why = spec.fits(t)
            if why:
                skipped.append((spec.name, t.name, why))
                continue
            cells += [Cell(spec, t, s) for s in range(seeds)]
    for m, t, why in skipped:
        console.print(f"[yellow]skip {m} on {t}[/]: {why}")
    fp = cohort.fingerprint()
    states = [cell_state(results_dir, c.spec.name, c.task.name, c.seed, data_fingerprint=fp,
                         task_hash=c.task.content_hash()) for c in cells]
    stale = [c for c, st in zip(cells, states) if st == "stale"]
    todo = [c for c, st in zip(cells, states)
            if force or st != "current" or (ablate and not _has_ablations(results_dir, c))]
    if stale and not force:
        console.print(f"[yellow]{len(stale)} result(s) were computed on other data or another task definition "
                      "and will be recomputed[/]")
    if len(todo) < len(cells):
        console.print(f"{len(cells) - len(todo)} finished cell(s) kept (use --force to recompute)")
    failed = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as prog:
        bar = prog.add_task("running", total=len(todo))
        for c in todo:
            prog.update(bar, description=f"{c.spec.name} · {c.task.name} · seed {c.seed}")
            rec = run_cell(c, cohort, labels[c.task.name], results_dir, budget, ablate=ablate)
            if rec["status"] == "failed":
                failed += 1
                console.print(f"[red]failed[/] {c.spec.name} on {c.task.name}: {rec['error']}")
            prog.advance(bar)
    table = Table(title=f"results in {results_dir} (main metric, 95% bootstrap CI)")
    for col in ("task", "model", "metric", "value", "95% CI", "n test", "wall s"):
        table.add_column(col)
    import json
    for c in sorted(cells, key=lambda c: (c.task.name, c.spec.name, c.seed)):
        jp, _ = cell_paths(results_dir, c.spec.name, c.task.name, c.seed)
        if not jp.exists():
            continue
        r = json.loads(jp.read_text())
        m = (r.get("metrics") or {}).get(r["main_metric"], {})
        v = m.get("value")
        ci = f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]" if m.get("ci_low") is not None else "-"
        table.add_row(c.task.name, c.spec.name + (f" s{c.seed}" if seeds > 1 else ""), r["main_metric"],
                      f"{v:.3f}" if v is not None else r.get("status", "?"), ci, str(r.get("n_test")),
                      f"{r['compute']['wall_s']:.1f}")
    console.print(table)
    return 1 if failed else 0
