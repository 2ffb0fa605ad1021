"""`python -m benchmark run` and `benchmark.evaluate`: plan the (model, task, seed) grid, run each
cell, write result files, return their typed records.

`run_evaluation` does the work and reports through a Reporter (quiet for the Python API, a rich
console for the CLI); `evaluate` is the Python API (returns the records), `run_grid` the CLI layer
(prints the table, returns the exit status).

A cell's JSON is written last (after its predictions), atomically, so a killed run leaves either a
finished cell or nothing; rerunning recomputes only the unfinished cells. A cell that raises is
recorded with status "failed" and its error, and the run goes on; the summary table is always
printed. Each cell runs under a file lock, so two runs sharing a results folder do not compute the
same cell twice (the second finds it finished and keeps it). Console text is escaped: error messages
and user names are never read as rich markup. Cells run here, in K local worker processes (--jobs)
or as Ray tasks (benchmark.grid_parallel); --shard keeps a fixed 1/N of the grid (benchmark.parallel).

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
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from benchmark.ablation import is_maskable, leave_one_out, modality_ablation, modality_attribution
from benchmark.data.cohort import Cohort
from benchmark.data.integrity import require_integrity
from benchmark.default_cohort import ensure_default_cohort
from benchmark.errors import UserError
from benchmark.external import ExternalSet, applicability, open_external, predictions_name, score_external
from benchmark.few_shot import ShotPoint, cell_label, point_of, record_block, subsample, subset_problem
from benchmark.label_files import given_labels
from benchmark.model_api import BUDGETS, Budget, NotApplicable, Prediction, TaskData
from benchmark.parallel import Placement, Shard, placement, shard_of
from benchmark.paths import cache_dir, default_results_dir
from benchmark.planning import input_problem, names_of, split_names, task_labels  # noqa: F401 - re-exported
from benchmark.cell_records import (_counts, _dataset, _failed_record, _peak_rss_mb,  # noqa: F401 - re-exported
                                    _provenance, _record)
from benchmark.records import INFO_EXPLANATIONS, SCHEMA_VERSION, ResultRecord
from benchmark.registry import ModelSpec, get_model
from benchmark.reporting import ConsoleReporter, Key, Reporter, summary_table
from benchmark.results import (cache_lock, cell_paths, cell_state, check_results_dir, legacy_predictions_name,
                               read_record, read_records, record_from_bytes, result_json, write_predictions,
                               write_result)
from benchmark.scoring import score_cell
from benchmark.task_registry import select_tasks
from benchmark.taskspec import TaskSpec


EXIT_OK, EXIT_CELL_FAILED, EXIT_BAD_INPUT = 0, 1, 2


@dataclass
class Cell:
    spec: ModelSpec
    task: TaskSpec
    seed: int
    labels_hash: str | None = None  # labels made elsewhere (run --labels): their content hash
    shots: ShotPoint | None = None  # a few-shot point (run --k-shots / --train-fraction; benchmark.few_shot)

    @property
    def key(self) -> Key:
        """(model, task [point], seed): the cell's key in the run's records and summary."""
        return self.spec.name, cell_label(self.task.name, self.shots), self.seed

    def paths(self, results_dir: Path) -> tuple[Path, Path]:
        """The cell's JSON and predictions paths (benchmark.results.cell_paths)."""
        return cell_paths(results_dir, self.spec.name, self.task.name, self.seed, self.task.kind,
                          point=self.shots.tag if self.shots else None)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and (if already imported) torch."""
    import sys
    random.seed(seed)
    np.random.seed(seed % (2**32))
    if "torch" in sys.modules:
        import torch
        torch.manual_seed(seed)


def task_data(task: TaskSpec, cohort: Cohort, seed: int, labels: pl.DataFrame,
              labels_hash: str | None = None, shots: ShotPoint | None = None) -> TaskData:
    """Join labels with splits and build the TaskData a model sees (labels_hash: of labels made elsewhere,
    whose features and encodings get a work folder of their own; shots: a few-shot point, whose drawn
    training and tuning subjects every family sees, benchmark.few_shot; caches key on the samples)."""
    lab = labels.join(cohort.splits, on="subject_id", how="inner").sort("subject_id", "prediction_time")
    lab = subsample(lab, task, shots, seed) if shots is not None else lab
    # the input window (and labels made elsewhere) name the work folder: features cached otherwise are never read back
    tag = task.input_window_tag() + (f"@labels{labels_hash}" if labels_hash else "")
    work = cache_dir() / "work" / cohort.fingerprint() / (task.name.replace("/", "__") + tag)
    work.mkdir(parents=True, exist_ok=True)
    return TaskData(task=task, cohort=cohort, labels=lab, seed=seed, work_dir=work)


def predictions_frame(data: TaskData, pred: Prediction, split: str = "held_out") -> pl.DataFrame:
    """meds-evaluation PredictionSchema rows (+ documented extensions for other task kinds).

    Columns after subject_id (int64), prediction_time (datetime[us]):
    binary:     boolean_value, predicted_boolean_value (probability >= 0.5), predicted_boolean_probability (float64)
    multilabel: boolean_value/<label>, predicted_boolean_probability/<label> for each label
    survival:   float_value (days), boolean_value (event), predicted_risk
    regression: float_value, predicted_float_value
    File names: benchmark.results.predictions_name.
    """
    samples = data.frame(split).select("subject_id", "prediction_time")
    return data.task.kind_obj.predictions_frame(samples, data.y(split), pred.score, data.task.label_names())


def resolve_budget(budget: str | Budget) -> Budget:
    """The Budget of a level name ("smoke", "default", "full"), or the Budget itself.

    Raises:
        UserError: an unknown level name.
    """
    if isinstance(budget, Budget):
        return budget
    if budget not in BUDGETS:
        raise UserError(f"unknown budget {budget!r}", field="--budget", fix=f"use one of {', '.join(BUDGETS)}")
    return BUDGETS[budget]


def run_cell(cell: Cell, cohort: Cohort, labels: pl.DataFrame, results_dir: Path, budget: str | Budget,
             ablate: bool = False, external: ExternalSet | None = None) -> ResultRecord:
    """Fit, predict, score and write one (model, task, seed) cell.

    Args:
        cell: the (model spec, task, seed).
        cohort: the cohort.
        labels: the task's labels.
        results_dir: the results folder.
        budget: a budget level name or Budget.
        ablate: also run the test-time modality ablations (benchmark.ablation) into the record's ablations.
        external: an external set the fitted model also scores (benchmark.external) into the record's external.

    Returns:
        The record as written (read back from its JSON, so it equals what a reader of the file gets);
        its write_error says why when the file could not be written.
    """
    spec, task, seed = cell.spec, cell.task, cell.seed
    json_path, pred_path = cell.paths(results_dir)
    pred_written = False
    ext_path = None
    t0 = time.perf_counter()
    data = task_data(task, cohort, seed, labels, cell.labels_hash, cell.shots)
    b = resolve_budget(budget)
    info: dict = {"kind": spec.kind, "modalities": list(spec.modalities), "reference": spec.reference}
    reached: dict = {}  # the record fields this cell reached: a failed cell has no metrics, fairness...
    if cell.shots is not None:
        reached["few_shot"] = record_block(data.labels, cell.shots)
        why = subset_problem(data.labels, task, b.n_folds)
        if why:  # refused per cell with its reason: no fit, no metrics
            reached.update(status="refused", refused=why)
    try:
        if reached.get("status") == "refused":
            raise _Refused
        seed_everything(seed)
        model = spec.factory(budget=b, seed=seed)
        model.fit(data)
        test = model.predict(data, "held_out")
        val = model.predict(data, "tuning") if task.kind_obj.chooses_threshold else None
        metrics = score_cell(data, test, val, b.n_boot, seed)
        reached["metrics"] = metrics
        main = metrics.get(task.main_metric, {})
        reached["status"] = "ok" if main.get("value") is not None else "refused"
        if main.get("refused"):
            reached["refused"] = main["refused"]
        info.update({k: v for k, v in test.info.items() if k != INFO_EXPLANATIONS})
        reached["explanations"] = explanations = test.info.get(INFO_EXPLANATIONS)
        maskable = is_maskable(model)
        loo = leave_one_out(model, data) if maskable and (ablate or not explanations) else None
        if maskable:
            info["maskable_modalities"] = list(model.maskable_modalities())
            if not explanations:
                reached["explanations"] = modality_attribution(model, data, test, loo=loo)
        if ablate:
            abl = modality_ablation(model, data, test, n_boot=b.n_boot, seed=seed, loo=loo) if maskable else None
            reached["ablations"] = abl or {"skipped": f"{spec.name} cannot mask modalities at test time"}
        reached["fairness"] = _fairness(data, test, metrics)
        if external is not None:
            entry, frame = score_external(model, data, val, external, n_boot=b.n_boot, seed=seed, make_data=task_data,
                                          score=score_cell)
            reached["external"] = [entry]
            if frame is not None:
                ext_path = pred_path.with_name(predictions_name(seed, external.ref.fingerprint, task.kind))
                write_predictions(ext_path, frame)
        write_predictions(pred_path, predictions_frame(data, test))
        pred_written = True
        legacy = pred_path.with_name(legacy_predictions_name(seed))
        if legacy != pred_path:  # a non-binary file of an older run would read as meds-evaluation's
            legacy.unlink(missing_ok=True)
    except _Refused:
        pass
    except NotApplicable as e:  # the model cannot answer this task (its message says why): refused, not failed
        reached.update(status="refused", refused=e.render() if hasattr(e, "render") else str(e))
    except Exception as e:  # noqa: BLE001 - a failing cell is recorded and the run goes on
        reached.update(status="failed", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=8))
    compute = dict(wall_s=round(time.perf_counter() - t0, 3), peak_rss_mb=round(_peak_rss_mb(), 1),
                   spec_n_parameters=spec.n_parameters)
    record = _record(cell, cohort, b, counts=_counts(data), info=info, reached=reached, **compute)
    if record.status == "failed" and (pred_written or ext_path):
        pred_path.unlink(missing_ok=True)  # the model's output did not fit a record: no orphan predictions
        if ext_path:
            ext_path.unlink(missing_ok=True)
        pred_written, ext_path = False, None
    try:
        text = result_json(record)
        write_result(json_path, record)
        return record_from_bytes(text)
    except OSError as e:
        # Disk full, folder removed...: the cell's work is lost, not the grid. A predictions file
        # without its JSON would be an orphan (the cell counts as missing), so it goes too.
        for p in (pred_path if pred_written else None, ext_path):
            if p is not None:
                with contextlib.suppress(OSError):
                    p.unlink(missing_ok=True)
        return record.model_copy(update={"write_error": f"could not write {json_path}: {e.strerror or e}"})


class _Refused(Exception):
    """A few-shot cell whose drawn subset cannot be fitted (its record says why)."""


def add_external(cell: Cell, cohort: Cohort, labels: pl.DataFrame, results_dir: Path, budget: str | Budget,
                 external: ExternalSet, rec: ResultRecord) -> ResultRecord:
    """A finished cell without an entry for this external set: refit the model (the same fit: models
    are deterministic for a seed) and score only the external set; the internal fields are kept as
    they are on disk, the entry is added (replacing a crashed one) and the record rewritten as v3.

    Returns:
        The record as written (write_error set when it could not be written; the file is unchanged then).
    """
    spec, task, seed = cell.spec, cell.task, cell.seed
    json_path, pred_path = cell_paths(results_dir, spec.name, task.name, seed, task.kind)
    data, b = task_data(task, cohort, seed, labels, cell.labels_hash), resolve_budget(budget)
    seed_everything(seed)
    try:
        model = spec.factory(budget=b, seed=seed)
        model.fit(data)
        val = model.predict(data, "tuning") if task.kind_obj.chooses_threshold else None
        entry, frame = score_external(model, data, val, external, n_boot=b.n_boot, seed=seed, make_data=task_data,
                                      score=score_cell)
    except Exception as e:  # noqa: BLE001 - the refit crashed: the entry says so, the internal result stays
        entry, frame = {"dataset": external.ref.model_dump(), "error": f"refit failed: {type(e).__name__}: {e}"}, None
    others = [x.model_dump(mode="json", exclude_unset=True) for x in rec.external or []
              if x.dataset.fingerprint != external.ref.fingerprint]
    new = ResultRecord.from_json_dict({**rec.to_json_dict(), "schema_version": SCHEMA_VERSION,
                                       "dataset": rec.dataset.model_dump(), "external": [*others, entry]})
    try:
        if frame is not None:
            write_predictions(pred_path.with_name(predictions_name(seed, external.ref.fingerprint, task.kind)), frame)
        text = result_json(new)
        write_result(json_path, new)
        return record_from_bytes(text)
    except OSError as e:
        return new.model_copy(update={"write_error": f"could not write {json_path}: {e.strerror or e}"})


def _has_ablations(results_dir: Path, c: Cell) -> bool:
    rec = read_record(c.paths(results_dir)[0])
    return rec is not None and rec.ablations is not None


def _fairness(data: TaskData, test: Prediction, metrics: dict) -> dict:
    from benchmark.fairness import fairness_report  # fairlearn is imported only once a cell is scored

    thr = metrics.get("_threshold", {}).get("value")
    return fairness_report(data, test, threshold=thr)


# ---------------------------------------------------------------------------- the grid
@dataclass
class Evaluation:
    """What a grid run did.

    Args:
        records: one record per planned cell that has one (computed now, or kept from disk), in grid
            order (model, task, seed).
        failed: cells that crashed or were not written, plus tasks whose label extraction crashed.
        bad_input: tasks refused because of the user's data or task file.
    """

    records: list[ResultRecord]
    failed: int
    bad_input: int


def run_evaluation(models: str | list[str], tasks: str | list[str], cohort: Cohort, results_dir: Path,
                   seeds: int = 1, budget: str | Budget = "default", force: bool = False, ablate: bool = False,
                   reporter: Reporter | None = None, external: str | Path | None = None,
                   labels: str | Path | None = None, shots: list[ShotPoint] | None = None, jobs: int = 1,
                   executor: str = "local", address: str | None = None, shard: str | Shard | None = None) -> Evaluation:
    """Plan and run every fitting (model, task, seed) cell (see benchmark.evaluate for the arguments);
    with `shots` (benchmark.few_shot.parse_points), one cell per (model, task, seed, point, draw).
    jobs: cells run in that many local worker processes; executor "ray": as Ray tasks on the cluster
    at `address` (benchmark.executors); shard "i/N": only cell j % N == i of the grid (benchmark.parallel).

    Order of checks, before any label or cell: cohort integrity, --seeds, model names, task names,
    budget, a writable results folder, the external dataset (then, per task, its labels.csv columns).

    Returns:
        The Evaluation.

    Raises:
        UserError: a cohort failing the integrity checks, bad flags, unknown models or tasks, an
            unwritable results folder, bad task files.
    """
    rep = reporter or Reporter()
    require_integrity(cohort)  # refuse a cohort that fails validate's integrity checks, before any label or cell
    if seeds < 1:
        raise UserError(f"--seeds {seeds} must be at least 1", field="--seeds", fix="pass --seeds 1 or more")
    if shots and (ablate or external is not None):
        raise UserError("a few-shot run (--k-shots / --train-fraction) takes no --ablate-modalities or --external-data",
                        field="--k-shots", fix="run the ablations or the external validation on the full data")
    where = placement(jobs, executor, address, shard)
    specs = [m if isinstance(m, ModelSpec) else get_model(m) for m in names_of(models, "--model")]
    task_list = select_tasks(",".join(names_of(tasks, "--task")))
    b = resolve_budget(budget)
    results_dir = check_results_dir(results_dir)
    ext = open_external(external, cohort, None) if external is not None else None
    given = given_labels(task_list, cohort, Path(labels)) if labels is not None else None
    hashes = {name: h for name, (_, h) in (given or {}).items()}
    grid, skipped = [], []  # the whole grid first: a shard owns a fixed part of it, whatever the labels give
    for spec in specs:
        for t in task_list:
            why = spec.fits(t)
            if why:
                skipped.append((spec.name, t.name, why))
                continue
            grid += [Cell(spec, t, s, hashes.get(t.name), p) for s in range(seeds) for p in (shots or [None])]
    grid = shard_of(grid, where.shard)
    if where.shard is not None:  # a shard extracts (or reads from the locked cache) only its tasks' labels
        rep.say(f"shard {where.shard}: {len(grid)} cell(s) of the grid")
        task_list = [t for t in task_list if any(c.task.name == t.name for c in grid)]
    labels, bad_input, failed = task_labels(task_list, cohort, rep, given)
    if ext is not None:
        for t in task_list:
            why = applicability(ext, t) if t.name in labels else None  # a bad labels.csv raises here
            if why:
                rep.say((f"external {ext.ref.name} not scored on {t.name}", "yellow"), f": {why}")
    cells = [c for c in grid if c.task.name in labels]
    for m, t, why in skipped:
        rep.say((f"skip {m} on {t}", "yellow"), f": {why}")
    todo = _plan(cells, cohort, results_dir, force, ablate, rep, ext)
    rep.cells = cells
    failed += _run_cells(todo, cohort, labels, results_dir, b, force, ablate, rep, ext,
                         where=where, external=external)
    return Evaluation(records=_records_of(cells, results_dir, rep.records), failed=failed, bad_input=bad_input)


def run_grid(models: str, tasks: str, cohort: Cohort, results_dir: Path, seeds: int = 1, budget: str = "default",
             force: bool = False, ablate: bool = False, external: str | Path | None = None,
             labels: str | Path | None = None, shots: list[ShotPoint] | None = None,
             where: Placement = Placement()) -> int:
    """`run`: evaluate the grid with console output and print the results table.

    ablate: run modality ablations in every cell; finished cells without them are rerun.
    external: an external dataset folder (--external-data) every fitted model is also scored on.
    labels: a label folder (--labels) used instead of the tasks' extraction.
    shots: few-shot points (--k-shots / --train-fraction with --draws; benchmark.few_shot).
    where: --jobs / --executor / --address / --shard (benchmark.parallel.placement).

    Returns:
        The exit status (module docstring): 0 all finished, 1 some cell failed or was not written,
        2 some task refused because of the user's data or task file (and nothing failed).

    Raises:
        UserError: bad flags, no model or task named, an unwritable results folder, bad task files.
    """
    import shutil

    from rich.console import Console

    console = Console(highlight=False, width=max(shutil.get_terminal_size((140, 24)).columns, 120))
    rep = ConsoleReporter(console)
    try:
        ev = run_evaluation(models, tasks, cohort, results_dir, seeds=seeds, budget=budget, force=force,
                            ablate=ablate, reporter=rep, external=external, labels=labels, shots=shots,
                            jobs=where.jobs, executor=where.executor, address=where.address, shard=where.shard)
    finally:  # once planned, the summary is printed even when a cell, or the user (Ctrl-C), stops the loop
        if rep.cells is not None:
            console.print(_summary(rep.cells, Path(results_dir), seeds, rep.records))
    if ev.failed:
        return EXIT_CELL_FAILED
    return EXIT_BAD_INPUT if ev.bad_input else EXIT_OK


def evaluate(models: str | list[str], tasks: str | list[str], data: str | Path | Cohort | None = None,
             results: str | Path | None = None, budget: str | Budget = "default", seeds: int = 1,
             force: bool = False, ablate: bool = False, dataset: str | None = None,
             external_data: str | Path | None = None, labels: str | Path | None = None,
             shots: list[ShotPoint] | None = None, jobs: int = 1, executor: str = "local",
             address: str | None = None, shard: str | None = None) -> list[ResultRecord]:
    """Run models on tasks and return their typed result records (what `run` does, without printing).

    Result files are written exactly as `run` writes them; finished cells are kept (not recomputed)
    unless force. Messages (skipped tasks or models, failed cells) go to the `benchmark` logger.

    Args:
        models: model names, a list or a comma-separated string.
        tasks: task names or families, a list or a comma-separated string ("all": every task).
        data: a cohort folder or Cohort (default: the embedded synthetic cohort, generated on first use).
        results: the results folder (default: $MEHR_BENCH_RESULTS or ./results).
        budget: "smoke", "default", "full", or a Budget.
        seeds: number of seeds (0..seeds-1).
        force: recompute finished cells.
        ablate: also run the test-time modality ablations.
        dataset: a dataset profile name or folder (``--dataset``), when `data` is a folder; None =
            recognised from the cohort's metadata/dataset.json.
        external_data: an external dataset (a MEDS cohort, or an image folder with a CheXpert-style
            labels.csv) the SAME fitted model of every cell also scores (benchmark.external); the
            results go into each record's `external` list. A finished cell without it is refitted
            and scored there; one with it is kept.
        labels: labels made elsewhere (`run --labels`; benchmark.label_files.given_labels) used instead
            of the tasks' extraction; their hash is in each record's provenance.labels_hash.
        shots: few-shot points (benchmark.few_shot.parse_points): each fits on a drawn subset of the
            training and tuning subjects, scored on the whole held-out set; records carry few_shot.
        jobs, executor, address, shard: where the cells run, as `run --jobs K`, `--executor local|ray`,
            `--address ADDR` and `--shard i/N` (then only that shard's records are returned).

    Returns:
        One record per (model, task, seed) cell that fits, in grid order; a failed cell's record has
        status "failed" and its error (a cell that could not be written carries write_error).

    Raises:
        UserError: bad input (the cohort, names, budget, seeds, an unwritable results folder).
    """
    if data is None:
        data = ensure_default_cohort()
    cohort = data if isinstance(data, Cohort) else Cohort(data, dataset=dataset)
    results_dir = Path(results) if results is not None else default_results_dir()
    return run_evaluation(models, tasks, cohort, results_dir, seeds=seeds, budget=budget, force=force,
                          ablate=ablate, external=external_data, labels=labels, shots=shots, jobs=jobs,
                          executor=executor, address=address, shard=shard).records


def _records_of(cells: list[Cell], results_dir: Path, records: dict[Key, ResultRecord]) -> list[ResultRecord]:
    """The record of each cell: this run's, else the file on disk (read_records); cells without one are left out."""
    keys = [c.key for c in cells]
    if any(k not in records for k in keys):
        on_disk = {(r.model, cell_label(r.task, point_of(r.few_shot)), r.seed): r for r in read_records(results_dir)}
        records = {**on_disk, **records}
    return [records[k] for k in keys if k in records]


def _summary(cells: list[Cell], results_dir: Path, seeds: int, records: dict[Key, ResultRecord]):
    """The results table of the planned cells (this run's records, else the files on disk)."""
    keys = sorted((c.key[1], c.spec.name, c.seed) for c in cells)
    by_key = {(cell_label(r.task, point_of(r.few_shot)), r.model, r.seed): r for r in _records_of(cells, results_dir, records)}
    return summary_table(keys, results_dir, seeds, by_key)


def _plan(cells: list[Cell], cohort: Cohort, results_dir: Path, force: bool, ablate: bool, rep: Reporter,
          ext: ExternalSet | None = None) -> list[Cell]:
    """The cells to compute now: missing, stale (other data / task definition), forced, lacking
    ablations, or (with an external set) lacking its entry (those are refitted for it only)."""
    fp = cohort.fingerprint()
    states = [cell_state(results_dir, c.spec.name, c.task.name, c.seed, data_fingerprint=fp, task_hash=c.task.content_hash(),
                         labels_hash=c.labels_hash, point=c.shots and c.shots.tag) for c in cells]
    stale = [c for c, st in zip(cells, states) if st == "stale"]
    todo = [c for c, st in zip(cells, states)
            if force or st != "current" or (ablate and not _has_ablations(results_dir, c))
            or _needs_external(results_dir, c, ext) is not None]
    if stale and not force:
        rep.say((f"{len(stale)} result(s) were computed on other data or another task definition or "
                 "other labels and will be recomputed", "yellow"))
    if len(todo) < len(cells):
        rep.say(f"{len(cells) - len(todo)} finished cell(s) kept (use --force to recompute)")
    return todo


def _needs_external(results_dir: Path, c: Cell, ext: ExternalSet | None) -> ResultRecord | None:
    """The cell's finished record when it lacks an entry for the external set (or has a crashed one), else None."""
    if ext is None:
        return None
    rec = read_record(c.paths(results_dir)[0])
    if rec is None or rec.status not in {"ok", "refused"}:
        return None
    have = rec.external_for(ext.ref.fingerprint)
    return rec if have is None or have.error is not None else None


def _is_current(c: Cell, cohort: Cohort, results_dir: Path, ablate: bool) -> bool:
    """Whether another run finished this cell meanwhile (on this data and task definition)."""
    st = cell_state(results_dir, c.spec.name, c.task.name, c.seed, data_fingerprint=cohort.fingerprint(),
                    task_hash=c.task.content_hash(), labels_hash=c.labels_hash, point=c.shots and c.shots.tag)
    return st == "current" and not (ablate and not _has_ablations(results_dir, c))


def _compute(c: Cell, cohort: Cohort, labels: pl.DataFrame, results_dir: Path, budget: Budget, force: bool,
             ablate: bool, ext: ExternalSet | None) -> ResultRecord | None:
    """One cell under its lock (in the driver or a worker): its record, or None when another run
    finished it meanwhile (kept)."""
    t0 = time.perf_counter()
    try:
        with cache_lock(c.paths(results_dir)[0]):
            current = not force and _is_current(c, cohort, results_dir, ablate)
            lacking = _needs_external(results_dir, c, ext) if current else None
            if current and lacking is None:
                return None
            if lacking is not None:
                return add_external(c, cohort, labels, results_dir, budget, ext, lacking)
            return run_cell(c, cohort, labels, results_dir, budget, ablate=ablate, external=ext)
    except Exception as e:  # noqa: BLE001 - outside run_cell's own guard (locks, work folder...)
        return _failed_record(c, cohort, budget, f"{type(e).__name__}: {e}", time.perf_counter() - t0)


def _prepare(spec: ModelSpec, budget: Budget, seed: int, cohort: Cohort) -> tuple[bool, str | None]:
    """The model's optional prepare step (benchmark.model_api.Model): (whether it has one, its line)."""
    model = spec.factory(budget=budget, seed=seed)
    if not callable(getattr(model, "prepare", None)):
        return False, None
    seed_everything(seed)
    return True, model.prepare(cohort)


def _cell_job(c: Cell, where: tuple, labels, results_dir: Path, budget: Budget, force: bool, ablate: bool,
              external: str | Path | None) -> ResultRecord | None:
    """A worker's cell (benchmark.executors): reopen the cohort, read the shared labels, compute."""
    from benchmark.executors import fetch
    from benchmark.grid_parallel import opened
    cohort, ext = opened(where, external)
    return _compute(c, cohort, fetch(labels), results_dir, budget, force, ablate, ext)


def _prepare_job(spec: ModelSpec, budget: Budget, seed: int, where: tuple) -> tuple[bool, str | None]:
    """A worker's prepare step: reopen the cohort, run it."""
    from benchmark.grid_parallel import opened
    return _prepare(spec, budget, seed, opened(where, None)[0])


def _run_cells(todo: list[Cell], cohort: Cohort, labels: dict[str, pl.DataFrame], results_dir: Path, budget: Budget,
               force: bool, ablate: bool, rep: Reporter, ext: ExternalSet | None = None,
               where: Placement = Placement(), external: str | Path | None = None) -> int:
    """Run the cells (each under its lock) in the driver, local workers or Ray (`where`); each model's
    prepare step first (once per model and seed). A failure is reported and the run goes on; each
    cell's record lands in rep.records.

    Returns:
        The number of cells that failed or whose result could not be written.
    """
    failed = 0

    def name(c: Cell) -> str:
        return f"{c.spec.name} on {c.key[1]}" + (f" seed {c.seed}" if c.seed else "")

    def finish(c: Cell, rec: ResultRecord | None) -> None:
        nonlocal failed
        if rec is None:
            rep.say(f"kept {name(c)}: finished by another run meanwhile")
        else:
            rep.records[c.key] = rec
            failed += bool(rec.write_error or rec.status == "failed")
            if rec.write_error:
                rep.say(("not written", "red"), f" {name(c)}: {rec.write_error}", problem=True)
            elif rec.status == "failed":
                rep.say(("failed", "red"), f" {name(c)}: {rec.error}", problem=True)
        bar.advance()

    def prepared(spec: ModelSpec, seed: int, ok: bool, value, error: str | None) -> None:
        who = spec.name + (f" seed {seed}" if seed else "")
        if not ok:
            rep.say(("failed", "red"), f" prepare step of {who}: {error}", problem=True)
        elif value[0]:
            rep.say(f"prepared {who}: {value[1] or 'done'}")

    with rep.progress(len(todo)) as bar:
        if where.parallel:
            from benchmark.grid_parallel import run_parallel
            fail = lambda c, error: _failed_record(c, cohort, budget, error, 0.0)  # noqa: E731
            run_parallel(todo, cohort, labels, where, rep, bar, finish, prepared, fail, cell_job=_cell_job,
                         prepare_job=_prepare_job, args=(results_dir, budget, force, ablate, external))
            return failed
        broken: dict[tuple[str, int], str] = {}  # (model, seed) -> why its prepare step failed
        ready: set[tuple[str, int]] = set()
        for c in todo:
            if (c.spec.name, c.seed) not in ready:  # this model's prepare steps, before its first cell
                for s in sorted({x.seed for x in todo if x.spec.name == c.spec.name}):
                    bar.start(f"{c.spec.name} · prepare · seed {s}")
                    ready.add((c.spec.name, s))
                    try:
                        prepared(c.spec, s, True, _prepare(c.spec, budget, s, cohort), None)
                    except Exception as e:  # noqa: BLE001 - that model's cells fail with it, the others run
                        broken[c.spec.name, s] = f"{type(e).__name__}: {e}"
                        prepared(c.spec, s, False, None, broken[c.spec.name, s])
            bar.start(f"{c.spec.name} · {c.key[1]} · seed {c.seed}")
            why = broken.get((c.spec.name, c.seed))
            bad = why and _failed_record(c, cohort, budget, f"the prepare step of {c.spec.name} failed: {why}", 0.0)
            finish(c, bad or _compute(c, cohort, labels[c.task.name], results_dir, budget, force, ablate, ext))
    return failed
