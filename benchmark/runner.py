"""`python -m benchmark run`: plan the (model, task, seed) grid, run each cell, write result files.

A cell's JSON is written last (after its predictions), atomically, so a killed run leaves either a
finished cell or nothing; rerunning recomputes only the unfinished cells. A cell that raises is
recorded with status "failed" and its error, and the run goes on; the summary table is always
printed. Each cell runs under a file lock, so two runs sharing a results folder do not compute the
same cell twice (the second finds it finished and keeps it). Console text is escaped: error messages
and user names are never read as rich markup.

Exit status of `run` (run_grid's return value):
  0  every planned cell finished (a metric a sample cannot support is refused, not failed) or was kept
  1  some cell crashed or its result could not be written (disk full...); the other cells still ran
  2  nothing crashed, but some task could not run because of the user's data or task file
     (no training or held-out samples, one class in training...); each is printed with its fix.
     Bad input found before any cell starts (flags, files, an unwritable --results) also exits 2.
"""

from __future__ import annotations

import contextlib
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
from benchmark.results import (SCHEMA_VERSION, cache_lock, cell_paths, cell_state, check_results_dir, git_sha,
                               hardware, lockfile_hash, write_predictions, write_result)
from benchmark.scoring import score_cell
from benchmark.task_registry import select_tasks
from benchmark.taskspec import TaskSpec


EXIT_OK, EXIT_CELL_FAILED, EXIT_BAD_INPUT = 0, 1, 2


@dataclass
class Cell:
    spec: ModelSpec
    task: TaskSpec
    seed: int


def _events_in(kind: str, labels: pl.DataFrame) -> int | None:
    """Positive labels (binary) or observed events (survival); None where a kind has no such count."""
    if kind in ("binary", "survival"):
        return int(labels["boolean_value"].sum())
    return None


def split_names(text: str, flag: str) -> list[str]:
    """The names of a comma-separated --model / --task value, in order, without blanks or repeats.

    Raises:
        UserError: no name at all (e.g. `--model ,`).
    """
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        what = "model" if flag == "--model" else "task"
        raise UserError(f"no {what} named in {flag} {text!r}", field=flag,
                        fix=f"name one or more {what}s separated by commas (list them with `python -m benchmark "
                            f"{what}s`)" + (", or 'all'" if what == "task" else ""))
    return names


def input_problem(task: TaskSpec, labels: pl.DataFrame, splits: pl.DataFrame) -> str | None:
    """Why a task cannot be learned and scored on this data, or None if it can.

    Checked once per task before any cell runs: no training or held-out samples, or (binary,
    survival) training labels of one class only. Models would otherwise fail with a library error
    deep inside a fit, once per model.

    Args:
        task: the task.
        labels: its labels (MEDS LabelSchema rows).
        splits: the cohort's subject_id -> split table.

    Returns:
        A one-line reason, or None.
    """
    lab = labels.join(splits, on="subject_id", how="inner")
    n = {s: lab.filter(pl.col("split") == s).height for s in ("train", "tuning", "held_out")}
    counts = f"{labels.height} samples: {n['train']} train, {n['tuning']} tuning, {n['held_out']} held_out"
    if n["train"] == 0:
        return f"no training samples ({counts})"
    if n["held_out"] == 0:
        return f"no held-out samples to score ({counts})"
    pos = _events_in(task.kind, lab.filter(pl.col("split") == "train"))
    if pos is not None and (pos == 0 or (task.kind == "binary" and pos == n["train"])):
        what = "events" if task.kind == "survival" else "labels"
        return (f"only one class in training: {pos} of {n['train']} training {what} are positive "
                f"(a model needs both classes)")
    return None


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


def run_cell(cell: Cell, cohort: Cohort, labels: pl.DataFrame, results_dir: Path, budget: str,
             ablate: bool = False) -> dict:
    """Fit, predict, score and write one (model, task, seed) cell. Returns the record written.

    ablate: also run the test-time modality ablations (benchmark.ablation) into record["ablations"].
    """
    spec, task, seed = cell.spec, cell.task, cell.seed
    json_path, pred_path = cell_paths(results_dir, spec.name, task.name, seed)
    pred_written = False
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
        pred_written = True
    except Exception as e:  # noqa: BLE001 - a failing cell is recorded and the run goes on
        record["status"] = "failed"
        record["error"] = f"{type(e).__name__}: {e}"
        record["traceback"] = traceback.format_exc(limit=8)
    record["compute"] = {"wall_s": round(time.perf_counter() - t0, 3), "peak_rss_mb": round(_peak_rss_mb(), 1),
                         "device": record["model_info"].get("device", "cpu"),
                         "n_parameters": record["model_info"].get("n_parameters", spec.n_parameters),
                         "tokens_per_s": record["model_info"].get("tokens_per_s")}
    try:
        write_result(json_path, record)
    except OSError as e:
        # Disk full, folder removed...: the cell's work is lost, not the grid. A predictions file
        # without its JSON would be an orphan (the cell counts as missing), so it goes too.
        record["write_error"] = f"could not write {json_path}: {e.strerror or e}"
        if pred_written:
            with contextlib.suppress(OSError):
                pred_path.unlink(missing_ok=True)
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
        The exit status (module docstring): 0 all finished, 1 some cell failed or was not written,
        2 some task refused because of the user's data or task file (and nothing failed).

    Raises:
        UserError: bad flags, no model or task named, an unwritable results folder, bad task files.
    """
    require_integrity(cohort)  # refuse a cohort that fails validate's integrity checks, before any label or cell
    from rich.console import Console
    from rich.markup import escape

    import shutil
    console = Console(highlight=False, width=max(shutil.get_terminal_size((140, 24)).columns, 120))
    if seeds < 1:
        raise UserError(f"--seeds {seeds} must be at least 1", field="--seeds", fix="pass --seeds 1 or more")
    specs = [get_model(m) for m in split_names(models, "--model")]
    task_list = select_tasks(",".join(split_names(tasks, "--task")))
    results_dir = check_results_dir(results_dir)
    labels, bad_input, failed = _task_labels(task_list, cohort, console)
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
        console.print(f"[yellow]skip {escape(m)} on {escape(t)}[/]: {escape(why)}")
    todo = _plan(cells, cohort, results_dir, force, ablate, console)
    records: dict[tuple[str, str, int], dict] = {}
    try:
        failed += _run_cells(todo, cohort, labels, results_dir, budget, force, ablate, console, records)
    finally:  # the summary is printed even when a cell, or the user (Ctrl-C), stops the loop
        console.print(_summary_table(cells, results_dir, seeds, records))
    if failed:
        return EXIT_CELL_FAILED
    return EXIT_BAD_INPUT if bad_input else EXIT_OK


def _task_labels(task_list: list[TaskSpec], cohort: Cohort, console) -> tuple[dict[str, pl.DataFrame], int, int]:
    """Labels of every task that can run; the others are printed with the reason and the fix.

    Returns:
        (task name -> labels, number of tasks refused because of the user's data or task file,
        number of tasks whose label extraction crashed).

    Raises:
        UserError: bad input in a task's rules (the run stops before any cell).
    """
    from rich.markup import escape

    labels: dict[str, pl.DataFrame] = {}
    bad = crashed = 0
    for t in task_list:
        try:
            lab = extract_labels(t, cohort).labels
        except TaskNotApplicable as e:
            console.print(f"[yellow]skip task {escape(t.name)}[/]: the dataset does not map "
                          f"{escape(', '.join(e.missing))}")
            continue
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - one task's crash is reported; the other tasks run
            crashed += 1
            console.print(f"[red]failed[/] labels of task {escape(t.name)}: {escape(f'{type(e).__name__}: {e}')}")
            continue
        why = input_problem(t, lab, cohort.splits)
        if why:
            bad += 1
            console.print(f"[red]cannot run task {escape(t.name)}[/] on {escape(str(cohort.root))}: {escape(why)}\n"
                          f"  fix: check the task's index, inclusion and label rules and the cohort's splits "
                          f"(`python -m benchmark labels --task {escape(t.name)} --data {escape(str(cohort.root))}` "
                          "shows the counts)")
            continue
        labels[t.name] = lab
    return labels, bad, crashed


def _plan(cells: list[Cell], cohort: Cohort, results_dir: Path, force: bool, ablate: bool, console) -> list[Cell]:
    """The cells to compute now: missing, stale (other data / task definition), forced, or lacking ablations."""
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
    return todo


def _is_current(c: Cell, cohort: Cohort, results_dir: Path, ablate: bool) -> bool:
    """Whether another run finished this cell meanwhile (on this data and task definition)."""
    st = cell_state(results_dir, c.spec.name, c.task.name, c.seed, data_fingerprint=cohort.fingerprint(),
                    task_hash=c.task.content_hash())
    return st == "current" and not (ablate and not _has_ablations(results_dir, c))


def _run_cells(todo: list[Cell], cohort: Cohort, labels: dict[str, pl.DataFrame], results_dir: Path, budget: str,
               force: bool, ablate: bool, console, records: dict) -> int:
    """Run the cells one by one (each under its lock); a failure is printed and the loop goes on.

    Returns:
        The number of cells that failed or whose result could not be written.
    """
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    failed = 0
    with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as prog:
        bar = prog.add_task("running", total=len(todo))
        for c in todo:
            name = f"{c.spec.name} on {c.task.name}" + (f" seed {c.seed}" if c.seed else "")
            prog.update(bar, description=f"{c.spec.name} · {c.task.name} · seed {c.seed}")
            try:
                json_path, _ = cell_paths(results_dir, c.spec.name, c.task.name, c.seed)
                with cache_lock(json_path):
                    if not force and _is_current(c, cohort, results_dir, ablate):
                        console.print(f"kept {escape(name)}: finished by another run meanwhile")
                        prog.advance(bar)
                        continue
                    rec = run_cell(c, cohort, labels[c.task.name], results_dir, budget, ablate=ablate)
            except Exception as e:  # noqa: BLE001 - outside run_cell's own guard (locks, work folder...)
                rec = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
            records[(c.spec.name, c.task.name, c.seed)] = rec
            if rec.get("write_error"):
                failed += 1
                console.print(f"[red]not written[/] {escape(name)}: {escape(rec['write_error'])}")
            elif rec["status"] == "failed":
                failed += 1
                console.print(f"[red]failed[/] {escape(name)}: {escape(rec['error'])}")
            prog.advance(bar)
    return failed


def _summary_table(cells: list[Cell], results_dir: Path, seeds: int, records: dict):
    """The results table: one row per planned cell, from this run's records or the files on disk."""
    import json

    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"results in {results_dir} (main metric, 95% bootstrap CI)"))
    for col in ("task", "model", "metric", "value", "95% CI", "n test", "wall s"):
        table.add_column(col)
    for c in sorted(cells, key=lambda c: (c.task.name, c.spec.name, c.seed)):
        r = records.get((c.spec.name, c.task.name, c.seed))
        if r is None or "main_metric" not in r:
            try:
                r = json.loads(cell_paths(results_dir, c.spec.name, c.task.name, c.seed)[0].read_text())
            except (OSError, ValueError):
                r = r or None
        if not r:
            continue
        m = (r.get("metrics") or {}).get(r.get("main_metric"), {}) or {}
        v = m.get("value")
        status = "not written" if r.get("write_error") else r.get("status", "?")
        ci = (f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]" if m.get("ci_low") is not None
              else "not reported" if m.get("ci_note") else "-")  # the sample cannot support one
        wall = (r.get("compute") or {}).get("wall_s")
        row = (c.task.name, c.spec.name + (f" s{c.seed}" if seeds > 1 else ""), r.get("main_metric", c.task.main_metric),
               f"{v:.3f}" if v is not None and status != "not written" else status, ci, str(r.get("n_test", "-")),
               f"{wall:.1f}" if isinstance(wall, (int, float)) else "-")
        table.add_row(*(Text(str(x)) for x in row))
    return table
