"""`python -m benchmark evaluate` and `benchmark.evaluate_predictions`: score predictions made outside
MEHR-Bench (a MEDS-DEV model, your own pipeline) as if a registered model had made them.

Input: one parquet file, or a folder whose `*.parquet` files (at any depth; MEDS-DEV writes one per
shard) hold the predictions of ONE task's held-out samples, in the columns MEHR-Bench writes for that
task's kind (benchmark.kinds `prediction_columns`; README "Prediction files"):

    binary      meds-evaluation's PredictionSchema: subject_id, prediction_time, boolean_value,
                predicted_boolean_probability (predicted_boolean_value optional, not read: metrics
                need the probability)
    multilabel  boolean_value/<label>, predicted_boolean_probability/<label> for each of the task's labels
    survival    float_value (days to event or censoring), boolean_value (event), predicted_risk
    regression  float_value, predicted_float_value

Other columns are ignored (MEDS files carry extra columns). The data check: a predictions file has
no fingerprint, so it must match the task's held-out samples on --data exactly: every held-out
(subject_id, prediction_time) once, nothing else, and the file's truth columns equal the task's
labels there. Anything else (a missing, unknown or duplicated sample, a truth that disagrees, NaN or
infinite scores, probabilities outside [0, 1], a column of the wrong type) is refused with a
UserError naming the file, the column, a few offending rows and the fix.

Scoring reuses the runner's code: the same TaskData, benchmark.scoring.score_cell (metrics and
patient-bootstrap CIs, same seed and budget give the same numbers as `run`), the same fairness
report, and a normal ResultRecord under <results>/<NAME>/<task>/seed<k>.json with the predictions
rewritten beside it in MEHR-Bench's format. The record's `external_predictions` block says where
the predictions came from and what is unknown (n_train, n_tuning: None; compute: this scoring's
own cost, not the model's). No threshold is chosen (there are no tuning-split predictions), so the
record has no `_threshold` and its fairness block no parity differences.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import polars as pl

from benchmark.data.cohort import Cohort
from benchmark.errors import UserError
from benchmark.kinds import TaskKind, sample_keys
from benchmark.records import SCHEMA_VERSION, Compute, ExternalPredictions, ModelInfo, ResultRecord
from benchmark.taskspec import TaskSpec

FLAG = "--predictions"
KEY = ["subject_id", "prediction_time"]
SHOWN = 5  # offending rows shown in an error
EXTERNAL_KIND = "external predictions"  # model_info.kind of such a record (the leaderboard shows it)


def prediction_files(path: str | Path) -> list[Path]:
    """The parquet files of --predictions: the file itself, or every *.parquet under a folder.

    Raises:
        UserError: no such file or folder, or a folder without parquet files.
    """
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise UserError("predictions file or folder not found", file=p, field=FLAG,
                        fix="pass a parquet file, or a folder of parquet files (one per shard)")
    files = sorted(f for f in p.rglob("*.parquet")
                   if f.is_file() and not any(s.startswith(".") for s in f.relative_to(p).parts))
    if not files:
        raise UserError("the folder holds no *.parquet file", file=p, field=FLAG,
                        fix="pass the folder your pipeline wrote its predictions parquet files to")
    return files


def expected_columns(kind: TaskKind, label_names: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(truth columns, score columns, optional columns) a predictions file of this kind has."""
    cols = kind.prediction_columns(label_names)
    truth, scores = kind.truth_columns(cols), kind.score_columns(label_names)
    return truth, scores, [c for c in cols if c not in truth and c not in scores]


def _kind_fix(kind: TaskKind, label_names: list[str]) -> str:
    truth, scores, optional = expected_columns(kind, label_names)
    extra = f" (optional: {', '.join(optional)})" if optional else ""
    return (f"a {kind.name} task's predictions need subject_id (int), prediction_time (datetime), "
            f"{', '.join(truth)} (the labels) and {', '.join(scores)} (the model's scores){extra}; "
            "see the README's 'Prediction files'")


def _read_one(f: Path, kind: TaskKind, label_names: list[str], index: int) -> pl.DataFrame:
    """One file's needed columns in canonical dtypes, plus `__file` (its index), or a UserError."""
    try:
        df = pl.read_parquet(f)
    except Exception as e:  # noqa: BLE001 - polars / pyarrow raise several types for a bad file
        raise UserError(f"not a readable parquet file ({type(e).__name__})", file=f, field=FLAG,
                        fix="pass parquet files written by pandas, polars or pyarrow") from None
    truth, scores, optional = expected_columns(kind, label_names)
    fix = _kind_fix(kind, label_names)
    missing = [c for c in [*KEY, *truth, *scores] if c not in df.columns]
    if missing:
        return _raise(f"missing column(s) {', '.join(missing)} (found: {', '.join(df.columns) or 'none'})",
                      f, missing[0], fix)
    dt = df.schema
    if not dt["subject_id"].is_integer():
        _raise(f"subject_id is {dt['subject_id']}, not an integer", f, "subject_id", "write subject_id as int64")
    t = dt["prediction_time"]
    if not isinstance(t, pl.Datetime) or t.time_zone is not None:
        _raise(f"prediction_time is {t}, not a datetime without time zone", f, "prediction_time",
               "write prediction_time as the labels' naive datetime (MEDS: datetime[us])")
    for c in truth:
        want_bool = c.startswith("boolean_value")
        ok = dt[c] == pl.Boolean if want_bool else (dt[c].is_numeric() and dt[c] != pl.Boolean)
        if not ok:
            _raise(f"{c} is {dt[c]}, not {'boolean' if want_bool else 'a number'}", f, c,
                   f"copy {c} from the task's MEDS labels unchanged")
    for c in scores:
        if not dt[c].is_numeric() or dt[c] == pl.Boolean:
            _raise(f"{c} is {dt[c]}, not a number", f, c, f"write {c} as float64")
    for c in optional:
        if c in df.columns and dt[c] != pl.Boolean:
            _raise(f"{c} is {dt[c]}, not boolean", f, c, f"write {c} as bool, or leave the column out")
    casts = [pl.col(c).cast(pl.Boolean if c.startswith("boolean_value") else pl.Float64) for c in truth]
    keys = [pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us"))]  # as sample_keys
    return df.select(*keys, *casts, *[pl.col(c).cast(pl.Float64) for c in scores],
                     pl.lit(index, dtype=pl.Int32).alias("__file"))


def _raise(message: str, file: Path, field: str, fix: str):
    raise UserError(message, file=file, field=field, fix=fix)


def _rows(df: pl.DataFrame, files: list[Path], extra: str | None = None) -> str:
    """A few rows, as `subject_id=.., prediction_time=..` (plus a value column and the file when several)."""
    out = []
    for r in df.head(SHOWN).iter_rows(named=True):
        s = f"subject_id={r['subject_id']}, prediction_time={r['prediction_time']}"
        if extra is not None:
            s += f", {extra}={r[extra]}"
        if len(files) > 1 and r.get("__file") is not None:
            s += f" ({files[r['__file']].name})"
        out.append(s)
    more = f" and {df.height - SHOWN} more" if df.height > SHOWN else ""
    return "; ".join(out) + more


def _file_of(df: pl.DataFrame, files: list[Path], default: Path) -> Path:
    """The file of the first offending row (the --predictions path when rows carry no file)."""
    if "__file" in df.columns and df.height and df["__file"][0] is not None:
        return files[df["__file"][0]]
    return default


def read_external_predictions(path: str | Path, task: TaskSpec, held_out: pl.DataFrame, y: np.ndarray,
                              other_splits: pl.DataFrame | None = None) -> tuple[np.ndarray, list[Path]]:
    """Read and check outside predictions of a task against its held-out samples on the data.

    Args:
        path: the --predictions file or folder.
        task: the task.
        held_out: the task's held-out label rows on the data (subject_id, prediction_time), in label order.
        y: their targets (the kind's layout, same rows).
        other_splits: the task's train / tuning samples (subject_id, prediction_time), to say so when
            a file holds them.

    Returns:
        (scores aligned with held_out's rows: [n] or [n, L] for multilabel in label_names order, the files read).

    Raises:
        UserError: any refusal of the module docstring, naming the file, the column and rows.
    """
    kind, names = task.kind_obj, task.label_names()
    root = Path(path)
    files = prediction_files(root)
    frame = pl.concat([_read_one(f, kind, names, i) for i, f in enumerate(files)], how="vertical")
    truth, scores, _ = expected_columns(kind, names)
    for c in [*KEY, *truth, *scores]:
        bad = frame.filter(pl.col(c).is_null())
        if bad.height:
            _raise(f"{bad.height} row(s) with an empty {c}: {_rows(bad, files)}", _file_of(bad, files, root), c,
                   f"fill {c} on every row (one row per held-out sample)")
    for c in scores:
        bad = frame.filter(~pl.col(c).is_finite())
        if bad.height:
            _raise(f"{bad.height} row(s) with a NaN or infinite {c}: {_rows(bad, files, c)}",
                   _file_of(bad, files, root), c, "give every sample a finite score (a failed prediction is no score)")
        if kind.bounded_scores():
            bad = frame.filter((pl.col(c) < 0) | (pl.col(c) > 1))
            if bad.height:
                _raise(f"{bad.height} probability(ies) outside [0, 1]: {_rows(bad, files, c)}",
                       _file_of(bad, files, root), c, f"write probabilities in {c} (e.g. a sigmoid of the logits)")
    dup = frame.filter(pl.struct(KEY).is_duplicated()).sort(KEY)
    if dup.height:
        _raise(f"{dup.height} rows share a (subject_id, prediction_time): {_rows(dup, files)}", _file_of(dup, files, root),
               "subject_id/prediction_time", "keep one prediction per held-out sample (a folder's files must not overlap)")
    keys = sample_keys(held_out)
    unknown = frame.join(keys, on=KEY, how="anti")
    if unknown.height:
        inside = unknown.join(sample_keys(other_splits), on=KEY, how="semi") if other_splits is not None else None
        if inside is not None and inside.height:
            why, fix = ("are samples of the train / tuning split, not held_out",
                        "keep only the held-out split's samples (metadata/subject_splits.parquet: split held_out)")
        else:
            why, fix = (f"are not samples of task {task.name} on this data (another dataset, another task "
                        "definition or version?)", "predict exactly the task's held-out samples on --data (its labels: "
                        f"`python -m benchmark labels --task {task.name} --data DIR --export OUT`; the held-out "
                        "subjects: metadata/subject_splits.parquet), or pass the data the predictions were made on")
        _raise(f"{unknown.height} row(s) {why}: {_rows(unknown.sort(KEY), files)}", _file_of(unknown, files, root),
               "subject_id/prediction_time", fix)
    missing = keys.join(frame, on=KEY, how="anti")
    if missing.height:
        _raise(f"{missing.height} of the task's {keys.height} held-out sample(s) have no prediction: "
               f"{_rows(missing, files)}", root, "subject_id/prediction_time",
               f"predict every held-out sample of task {task.name} on --data (partial predictions would "
               "score an easier subset)")
    aligned = keys.with_row_index("__row").join(frame, on=KEY, how="left").sort("__row")
    want = kind.predictions_frame(keys, y, np.zeros(kind.score_shape(len(keys), y)), names)
    for c in truth:
        a, b = aligned[c].to_numpy(), want[c].to_numpy()
        same = (a == b) if a.dtype == bool else np.isclose(a.astype(float), b.astype(float), rtol=1e-6, atol=1e-6)
        if not same.all():
            bad = aligned.filter(pl.Series(~same)).with_columns(want.filter(pl.Series(~same))[c].alias("label"))
            _raise(f"{int((~same).sum())} row(s) where {c} disagrees with the task's label on the data "
                   f"(predictions made on another dataset or task version?): {_rows(bad, files, c)}",
                   _file_of(bad, files, root), c, f"copy {c} from task {task.name}'s labels on --data "
                   "(`python -m benchmark labels --task ... --export`), or pass the data the predictions were made on")
    score = aligned.select(scores).to_numpy()
    return (score if kind.multi_output else score[:, 0]), files


def _sha256(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _task(task: str | TaskSpec) -> TaskSpec:
    from benchmark.task_registry import select_tasks

    if isinstance(task, TaskSpec):
        return task
    found = select_tasks(task)
    if len(found) != 1:
        raise UserError(f"--task {task!r} names {len(found)} tasks; predictions belong to one", field="--task",
                        fix="pass one task name, e.g. " + (found[0].name if found else "oncology/mortality_1y"))
    return found[0]


def evaluate_predictions(task: str | TaskSpec, predictions: str | Path, name: str, data: str | Path | Cohort | None = None,
                         results: str | Path | None = None, seed: int = 0, budget: str = "default",
                         dataset: str | None = None, force: bool = False) -> ResultRecord:
    """Score predictions made outside MEHR-Bench like a registered model's (module docstring).

    Args:
        task: the task name (one task).
        predictions: a parquet file or a folder of them (see the module docstring for the columns).
        name: the name the predictions get on the leaderboard (a safe name, not a registered model's).
        data: the cohort the predictions were made on (default: the embedded synthetic cohort).
        results: the results folder (default: $MEHR_BENCH_RESULTS or ./results).
        seed: the seed the record is filed under; also the bootstrap seed (as in `run`).
        budget: "smoke" | "default" | "full": sets the bootstrap replicates, as in `run`.
        dataset: a dataset profile name or folder for `data` (None: recognised from its metadata).
        force: replace an existing result of this name, task and seed made from other predictions.

    Returns:
        The record as written to <results>/<name>/<task>/seed<k>.json.

    Raises:
        UserError: a bad name, task, cohort, results folder or predictions (module docstring).
    """
    from benchmark.data.integrity import require_integrity
    from benchmark.default_cohort import ensure_default_cohort
    from benchmark.labels import TaskNotApplicable, extract_labels
    from benchmark.model_api import Prediction
    from benchmark.paths import default_results_dir
    from benchmark.registry import model_names
    from benchmark.results import (cell_paths, check_results_dir, legacy_predictions_name, read_record,
                                   record_from_bytes, result_json, write_predictions, write_result)
    from benchmark.runner import _dataset, _fairness, _peak_rss_mb, _provenance, resolve_budget, task_data
    from benchmark.scoring import score_cell

    t0 = time.perf_counter()
    t = _task(task)
    if int(seed) < 0:
        raise UserError(f"--seed {seed} is negative", field="--seed", fix="pass a seed of 0 or more (the default is 0)")
    b = resolve_budget(budget)
    results_dir = Path(results) if results is not None else default_results_dir()
    json_path, pred_path = cell_paths(results_dir, name, t.name, seed, t.kind)  # refuses an unsafe name
    if name in model_names():
        raise UserError(f"{name!r} is a registered model's name", field="--name",
                        fix="pick another name for the outside predictions (the leaderboard must not mix them "
                            "with the registered model's own results)")
    files = prediction_files(predictions)  # a missing path is refused before the cohort is read
    cohort = data if isinstance(data, Cohort) else Cohort(data if data is not None else ensure_default_cohort(),
                                                          dataset=dataset)
    require_integrity(cohort)
    try:
        labels = extract_labels(t, cohort, announce=False).labels
    except TaskNotApplicable as e:
        raise UserError(f"the dataset does not map {', '.join(e.missing)}", file=cohort.root, field="--task",
                        fix="pass the data the predictions were made on (or its profile with --dataset)") from None
    d = task_data(t, cohort, int(seed), labels)
    held = d.frame("held_out")
    if held.height == 0:
        raise UserError(f"task {t.name} has no held-out sample on this data", file=cohort.root, field="--task",
                        fix=f"check `python -m benchmark labels --task {t.name} --data {cohort.root}`")
    y = d.y("held_out")
    score, files = read_external_predictions(predictions, t, held, y, d.samples(("train", "tuning")))
    digest = _sha256(files)
    results_dir = check_results_dir(results_dir)
    old = read_record(json_path) if json_path.exists() else None
    if json_path.exists() and not force:
        same = (old is not None and old.external_predictions is not None and old.external_predictions.sha256 == digest
                and old.provenance.data_fingerprint == cohort.fingerprint() and old.budget == b.name
                and old.provenance.task_hash == t.content_hash())
        if same:
            return old
        raise UserError("a result for this name, task and seed exists (from other predictions, data or budget)",
                        file=json_path, field="--name", fix="pass --force to replace it, or another --name or --seed")
    pred = Prediction(score=np.asarray(score, dtype=float))
    metrics = score_cell(d, pred, None, b.n_boot, int(seed))
    main = metrics.get(t.main_metric, {})
    reached: dict = {"status": "ok" if main.get("value") is not None else "refused", "metrics": metrics}
    if main.get("refused"):
        reached["refused"] = main["refused"]
    reached["fairness"] = _fairness(d, pred, metrics)
    base = Path(predictions) if Path(predictions).is_dir() else Path(predictions).parent
    record = ResultRecord(
        schema_version=SCHEMA_VERSION, model=name, task=t.name, task_version=t.version, task_kind=t.kind,
        seed=int(seed), budget=b.name, main_metric=t.main_metric, dataset=_dataset(cohort), n_train=None,
        n_tuning=None, n_test=int(held.height), n_events=t.kind_obj.n_events(y), provenance=_provenance(t, cohort),
        # description / training_data: the leaderboard shows them for a model the registry does not know
        model_info=ModelInfo(kind=EXTERNAL_KIND, modalities=[], reference="predictions made outside MEHR-Bench",
                             description=f"external predictions scored by `evaluate` ({len(files)} file(s)); "
                                         "the model itself is not part of MEHR-Bench",
                             training_data="unknown (the model was trained outside MEHR-Bench)"),
        compute=Compute(wall_s=round(time.perf_counter() - t0, 3), peak_rss_mb=round(_peak_rss_mb(), 1), device=None),
        external_predictions=ExternalPredictions(files=[str(f.relative_to(base)) for f in files], sha256=digest,
                                                 n_rows=int(held.height)),
        **reached)
    write_predictions(pred_path, t.kind_obj.predictions_frame(d.samples("held_out"), y, pred.score, t.label_names()))
    legacy = pred_path.with_name(legacy_predictions_name(seed))
    if legacy != pred_path:
        legacy.unlink(missing_ok=True)
    text = result_json(record)
    write_result(json_path, record)
    return record_from_bytes(text)
