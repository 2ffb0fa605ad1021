"""MEDS-DEV's model contract: `fit` saves a fitted model, `predict` loads it and writes predictions,
`export meds-dev` writes a result cell as MEDS-DEV's result JSON.

A MEDS-DEV model (integrations/meds-dev/<model>/model.yaml) runs two shell commands in its own venv:

    supervised train:    python -m benchmark fit --model M --data {dataset_dir} --labels {labels_dir} --out {output_dir}
    supervised predict:  python -m benchmark predict --model-dir {model_initialization_dir} --data {dataset_dir}
                             --labels {labels_dir} --split {split} --out {output_dir}

`fit` trains on the train (+ tuning, for early stopping and model selection) labels exactly as a
`run` cell does (same TaskData, seed, budget) and saves the fitted model object (pickle) with a
JSON manifest; `predict` checks the manifest, loads the model and writes
{out}/predictions.parquet in the prediction format (`benchmark.runner.predictions_frame` +
`benchmark.results.write_predictions`). Its predictions equal `run`'s held-out predictions for the
same model, task, seed and budget. A pickle is code: load only model folders you made or trust.

MEDS-DEV's commands carry no task name: without --task, a label folder with boolean_value runs as
an anonymous binary task (benchmark.label_files.anonymous_task).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import pickle
import warnings
from pathlib import Path
from typing import Any

from benchmark import __version__
from benchmark.artifacts import atomic_write
from benchmark.data.cohort import Cohort
from benchmark.data.integrity import require_integrity
from benchmark.errors import UserError
from benchmark.label_files import anonymous_task, task_labels
from benchmark.model_api import Budget
from benchmark.planning import input_problem
from benchmark.registry import get_model
from benchmark.results import cell_paths, read_record, write_predictions
from benchmark.runner import predictions_frame, resolve_budget, seed_everything, task_data
from benchmark.task_registry import select_tasks
from benchmark.taskspec import TaskSpec
from benchmark.vocabulary import SPLITS

MANIFEST = "manifest.json"
MODEL_FILE = "model.pkl"
PREDICTIONS_FILE = "predictions.parquet"
FORMAT = "mehr-bench fitted model"
FORMAT_VERSION = 1
RESULT_MAX_BYTES = 1536  # MEDS-DEV's results/__main__.py: MAX_SIZE_KB = 1.5
# our binary metric -> meds-evaluation's name for the same quantity (identical definitions)
MEDS_EVALUATION_NAMES = {"auroc": "roc_auc_score", "auprc": "average_precision_score", "brier": "brier_score"}
# metrics meds-evaluation defines differently under its own name (its calibration_error is an
# unweighted mean over bins, our ece a weighted one): only in the mehr_bench block
NOT_MEDS_EVALUATION = frozenset({"ece"})


def resolve_task(name: str | None, labels_dir: Path) -> TaskSpec:
    """The task a label folder is for: the named task, or (no name) the anonymous binary task.

    Raises:
        UserError: an unknown task name, or several tasks named (fit takes one).
    """
    if name is None:
        return anonymous_task(labels_dir)
    tasks = select_tasks(name)
    if len(tasks) != 1:
        raise UserError(f"--task {name!r} names {len(tasks)} tasks; fit and predict take one", field="--task",
                        fix="name one task (list them with `python -m benchmark tasks`)")
    return tasks[0]


def fit_model(model: str, task: str | None, cohort: Cohort, labels_dir: Path, out_dir: Path,
              budget: str | Budget = "default", seed: int = 0) -> Path:
    """Fit a model on a task's train (+ tuning) labels and save it to out_dir (model.pkl + manifest.json).

    Args:
        model: a registered model name.
        task: a task name, or None for the anonymous binary task of the labels.
        cohort: the MEDS cohort the labels are for.
        labels_dir: the task's labels (MEDS LabelSchema; benchmark.label_files.task_labels).
        out_dir: the folder to write (created if needed).
        budget: "smoke", "default", "full" or a Budget.
        seed: the seed (as `run --seeds`: seed k is the cell seed<k>).

    Returns:
        out_dir.

    Raises:
        UserError: bad input (model, task, labels, cohort), a task the model does not fit, labels
            a model cannot learn from (no training rows, one class), an unwritable out_dir.
    """
    if seed < 0:
        raise UserError(f"--seed {seed} is negative", field="--seed", fix="pass a seed of 0 or more")
    require_integrity(cohort)
    spec = get_model(model)
    b = resolve_budget(budget)
    t = resolve_task(task, Path(labels_dir))
    why = spec.fits(t)
    if why:
        raise UserError(why, field="--model", fix="pick a model that supports the task (`python -m benchmark models`)")
    lab, lab_hash = task_labels(Path(labels_dir), t, cohort)
    why = input_problem(t, lab, cohort.splits)
    if why:
        raise UserError(f"cannot fit on these labels: {why}", file=labels_dir, field="--labels",
                        fix="pass labels with training and held-out rows of both classes for this cohort's splits")
    data = task_data(t, cohort, seed, lab, lab_hash)
    seed_everything(seed)
    fitted = spec.factory(budget=b, seed=seed)
    fitted.fit(data)
    blob = pickle.dumps(fitted, protocol=pickle.HIGHEST_PROTOCOL)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "package_version": __version__,
                "model": spec.name, "task": t.name, "task_hash": t.content_hash(), "task_spec": t.model_dump(mode="json"),
                "budget": b.name, "seed": seed, "data_fingerprint": cohort.fingerprint(), "labels_hash": lab_hash,
                "model_file": MODEL_FILE, "model_sha256": hashlib.sha256(blob).hexdigest(),
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(out_dir / MODEL_FILE, blob)
        atomic_write(out_dir / MANIFEST, json.dumps(manifest, indent=2))  # last: its presence marks a complete folder
    except OSError as e:
        raise UserError(f"cannot write the fitted model: {e.strerror or e}", file=out_dir, field="--out",
                        fix="pass a folder you can write to") from None
    return out_dir


def read_manifest(model_dir: Path, model: str | None = None) -> dict[str, Any]:
    """A fitted model folder's manifest, checked before anything is unpickled.

    Args:
        model_dir: the folder `fit` wrote.
        model: the model the caller expects (None: any).

    Returns:
        The manifest.

    Raises:
        UserError: no manifest, another format or package version, another model.
    """
    path = Path(model_dir) / MANIFEST
    fix = "pass the --out folder of `python -m benchmark fit`"
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("no fitted model here (manifest.json not found)", file=path, field="--model-dir", fix=fix) from None
    except (OSError, ValueError) as e:
        raise UserError(f"cannot be read ({e})", file=path, field="--model-dir", fix=fix) from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("format_version") != FORMAT_VERSION:
        raise UserError(f"not a {FORMAT} manifest of format version {FORMAT_VERSION}", file=path, field="format",
                        fix=fix)
    if m.get("package_version") != __version__:
        raise UserError(f"the model was fitted by mehr-bench {m.get('package_version')}, this is {__version__}: "
                        "a pickled model only loads into the version that wrote it", file=path,
                        field="package_version",
                        fix=f"install mehr-bench=={m.get('package_version')} to predict, or refit with this version")
    if model is not None and m.get("model") != model:
        raise UserError(f"the folder holds a fitted {m.get('model')!r}, not {model!r}", file=path, field="model",
                        fix=f"pass --model {m.get('model')}, or the folder of a fitted {model}")
    return m


def load_model(model_dir: Path, manifest: dict[str, Any]) -> Any:
    """Unpickle the fitted model after checking its bytes against the manifest's sha256.

    A pickle runs code when loaded: the folder must come from a trusted source (README).
    """
    path = Path(model_dir) / manifest.get("model_file", MODEL_FILE)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read the fitted model: {e.strerror or e}", file=path, field="--model-dir",
                        fix="pass the complete --out folder of `python -m benchmark fit`") from None
    if hashlib.sha256(blob).hexdigest() != manifest.get("model_sha256"):
        raise UserError("the model file does not match its manifest (changed or truncated since fit)", file=path,
                        field="model_sha256", fix="refit the model")
    return pickle.loads(blob)  # noqa: S301 - the file's hash is the one fit recorded (trusted folder)


def predict_model(model_dir: Path, cohort: Cohort, labels_dir: Path, out_dir: Path, split: str = "held_out",
                  model: str | None = None) -> Path:
    """Load a fitted model and write its predictions on one split to out_dir/predictions.parquet.

    Args:
        model_dir: the folder `fit` wrote.
        cohort: the MEDS cohort.
        labels_dir: the task's labels (their rows of `split` are the samples predicted).
        out_dir: the folder to write (created if needed).
        split: train, tuning or held_out.
        model: the model expected in model_dir (None: any).

    Returns:
        The predictions file.

    Raises:
        UserError: a bad model folder (read_manifest, load_model), bad labels, no labels in the split.
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}", field="--split", fix=f"use one of {', '.join(SPLITS)}")
    manifest = read_manifest(Path(model_dir), model)
    t = TaskSpec.model_validate(manifest["task_spec"])
    if cohort.fingerprint() != manifest.get("data_fingerprint"):
        warnings.warn(f"{cohort.root} is not the data {manifest['model']} was fitted on (other fingerprint); "
                      "predicting anyway", stacklevel=2)
    lab, lab_hash = task_labels(Path(labels_dir), t, cohort)
    data = task_data(t, cohort, int(manifest["seed"]), lab, lab_hash)
    if data.frame(split).height == 0:
        raise UserError(f"the labels have no row in the {split} split", file=labels_dir, field="--split",
                        fix="pass the labels of that split (or another --split)")
    fitted = load_model(Path(model_dir), manifest)
    seed_everything(int(manifest["seed"]))
    pred = fitted.predict(data, split)
    out = Path(out_dir) / PREDICTIONS_FILE
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_predictions(out, predictions_frame(data, pred, split))
    except OSError as e:
        raise UserError(f"cannot write predictions: {e.strerror or e}", file=out, field="--out",
                        fix="pass a folder you can write to") from None
    return out


# ---------------------------------------------------------------------------- export meds-dev
def meds_dev_result(results_dir: Path, model: str, task: str, seed: int, dataset: str) -> dict[str, Any]:
    """MEDS-DEV's result JSON (results.Result: dataset, task, model, timestamp, result, version) of one cell.

    result holds `samples_equally_weighted`: the meds-evaluation names of the metrics we compute the
    same way (binary: roc_auc_score, average_precision_score, brier_score; other kinds: our metric
    names), and `mehr_bench`: every metric as [value, ci_low, ci_high], the main metric, n_test,
    n_events, seed and budget. version is "mehr-bench <version>" (not a MEDS-DEV version: MEDS-DEV
    then reads it as a historical result and does not check the names against its own registries).
    timestamp is the cell file's modification time (UTC), as MEDS-DEV's pack_result uses the
    evaluation file's.

    Raises:
        UserError: no finished cell, or a cell without metrics.
    """
    json_path, _ = cell_paths(results_dir, model, task, seed)
    rec = read_record(json_path)
    if rec is None or not rec.metrics or rec.status == "failed":
        why = "no readable result file" if rec is None else f"status {rec.status}, no metrics"
        raise UserError(f"no finished cell to export ({why})", file=json_path, field="--results",
                        fix=f"run it first: python -m benchmark run --model {model} --task {task} --seeds {seed + 1}")
    # meds-evaluation's own names where it computes the same quantity (binary); other kinds' metrics,
    # which meds-evaluation does not compute, under our names
    same = {MEDS_EVALUATION_NAMES.get(k, k): m.value for k, m in rec.metrics.items()
            if not k.startswith("_") and k not in NOT_MEDS_EVALUATION and m.value is not None}
    ours: dict[str, Any] = {k: [_r(m.value), _r(m.ci_low), _r(m.ci_high)] for k, m in rec.metrics.items()
                            if not k.startswith("_")}
    block = {"main_metric": rec.main_metric, "metrics": ours, "n_test": rec.n_test, "n_events": rec.n_events,
             "seed": rec.seed, "budget": rec.budget}
    stamp = datetime.datetime.fromtimestamp(json_path.stat().st_mtime, tz=datetime.timezone.utc)
    out = {"dataset": dataset, "task": task, "model": model, "timestamp": stamp.isoformat(),
           "result": {"samples_equally_weighted": same, "mehr_bench": block}, "version": f"mehr-bench {__version__}"}
    # MEDS-DEV refuses files over 1.5 KB: drop the CIs, then the metrics other than the main one
    if len(_dump(out)) > RESULT_MAX_BYTES:
        block["metrics"] = {k: v[0] for k, v in ours.items()}
    if len(_dump(out)) > RESULT_MAX_BYTES:
        block["metrics"] = {rec.main_metric: ours.get(rec.main_metric, [None])[0]}
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _dump(obj: dict) -> bytes:
    """The file's bytes (MEDS-DEV's Result.to_json writes json.dumps without indentation)."""
    return json.dumps(obj).encode()


def export_meds_dev(results_dir: Path, model: str, task: str, seed: int, dataset: str, out: Path) -> Path:
    """Write meds_dev_result(...) to out, atomically.

    Returns:
        out.
    """
    out = Path(out)
    try:
        atomic_write(out, _dump(meds_dev_result(Path(results_dir), model, task, seed, dataset)))
    except OSError as e:
        raise UserError(f"cannot write: {e.strerror or e}", file=out, field="--out",
                        fix="pass a file in a folder you can write to") from None
    return out

