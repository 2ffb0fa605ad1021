"""Result files: `<results>/<model>/<task>/seed<k>.json` and its predictions file beside it.

Predictions file names (`predictions_name`, the one place that maps kind, seed and external set to a
name): a binary task's `seed<k>.predictions.parquet` is exactly meds-evaluation's PredictionSchema
(subject_id int64, prediction_time datetime[us], boolean_value, predicted_boolean_value,
predicted_boolean_probability float64; nothing else), so `meds-evaluation-cli` and a glob of
`*predictions.parquet` read it as it is. The other kinds have no meds-evaluation schema: their files
are `seed<k>.predictions.<kind>.parquet` (columns: benchmark.kinds, `prediction_columns`), so no
meds-evaluation user globs them by mistake. External-validation predictions insert
`.external-<fingerprint[:12]>` after the seed. Result folders written before schema version 4 hold
every kind's predictions in `seed<k>.predictions.parquet`; `predictions_path` still finds them.

Append-only and typed: a cell is written once, atomically (temp file + rename), and skipped on
rerun unless forced. The JSON is a `benchmark.records.ResultRecord`; `read_records` is the one
reader (files of earlier schema versions included). `schema_version` changes when a field's
meaning changes.

Every file here is written with `benchmark.artifacts.atomic_write` / `atomic_path` (unique temp
file, then rename), so concurrent runs on one results folder are safe. `atomic_path`,
`atomic_write_bytes` and `cache_lock` stay importable from here (older import path).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import ValidationError

from benchmark.artifacts import atomic_path, atomic_write, atomic_write_bytes, cache_lock  # noqa: F401 - re-exported
from benchmark.kinds import TaskKind, kind_of
from benchmark.paths import REPO_ROOT
from benchmark.records import SCHEMA_VERSION, ResultRecord  # noqa: F401 - SCHEMA_VERSION re-exported

# One path segment of a model or task name: starts with a letter or digit (so never "." or ".."),
# then letters, digits, "_", "-" or "."; no separators. Shared with the registry and the task loader.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SAFE_NAME_HELP = "letters, digits, '_', '-' and '.', starting with a letter or digit"


def predictions_name(kind: str | TaskKind, seed: int, external: str | None = None) -> str:
    """The file name of a cell's predictions (module docstring): the one map from (task kind, seed,
    external dataset) to a name; readers find files through `predictions_path`.

    Args:
        kind: the task kind (name or object).
        seed: the cell's seed.
        external: the external dataset's fingerprint (its first 12 characters name the file), or None
            for the held-out predictions.

    Returns:
        seed<k>[.external-<fp12>].predictions.parquet (binary) or ...predictions.<kind>.parquet.
    """
    k = kind_of(kind)
    ext = f".external-{external[:12]}" if external else ""
    return f"seed{int(seed)}{ext}.predictions{'' if k.name == 'binary' else '.' + k.name}.parquet"


def legacy_predictions_name(seed: int, external: str | None = None) -> str:
    """The name every kind's predictions had before schema version 4 (the binary name today)."""
    return predictions_name("binary", seed, external)


def cell_paths(results_dir: Path, model: str, task: str, seed: int,
               kind: str | TaskKind = "binary", point: str | None = None) -> tuple[Path, Path]:
    """The JSON and predictions paths of one cell, always inside results_dir.

    Args:
        results_dir: the results folder.
        model: a model name (one safe segment).
        task: a task name (safe segments joined by "/").
        seed: the seed (a non-negative integer).
        kind: the task's kind (names the predictions file; binary: seed<k>.predictions.parquet).
        point: a few-shot cell's point tag (benchmark.few_shot.ShotPoint.tag, e.g. "shots-4-d1"): its
            files are seed<k>.<point>.json and seed<k>.<point>.predictions...; None: a full-data cell.

    Returns:
        (seed<k>.json, its predictions file `predictions_name(kind, seed)`) under results_dir/model/task.

    Raises:
        UserError: a name that could leave results_dir (absolute, "..", separators, odd characters).
    """
    from benchmark.errors import UserError

    bad = [n for n in [model, *task.split("/")] if not SAFE_NAME.match(n)]
    if bad or int(seed) < 0:
        what = f"model {model!r}" if model in bad else f"task {task!r}" if bad else f"seed {seed}"
        raise UserError(f"{what} cannot name a result folder", file=results_dir, field="model/task name",
                        fix=f"use names made of {SAFE_NAME_HELP} (task names: such segments joined by '/')")
    d = Path(results_dir) / model / task
    if point is not None:
        if not POINT_TAG.fullmatch(point):
            raise ValueError(f"not a few-shot point tag: {point!r}")
        return d / f"seed{int(seed)}.{point}.json", d / _with_point(predictions_name(kind, seed), seed, point)
    return d / f"seed{int(seed)}.json", d / predictions_name(kind, seed)


# benchmark.few_shot.ShotPoint.tag: shots-<k|all>-d<draw> or frac-<fraction>-d<draw>
POINT_TAG = re.compile(r"(?:shots-(?:\d+|all)|frac-[0-9.e-]+)-d\d+")


def _with_point(name: str, seed: int, point: str | None) -> str:
    """A predictions file name with a few-shot point after its seed<k> (unchanged for None)."""
    head = f"seed{int(seed)}"
    return name if point is None else f"{head}.{point}{name[len(head):]}"


def cell_state(results_dir: Path, model: str, task: str, seed: int, *, data_fingerprint: str | None = None,
               task_hash: str | None = None, labels_hash: Any = ..., point: str | None = None) -> str:
    """Whether a cell needs computing: "missing" (no JSON, unreadable, or not status ok/refused),
    "stale" (finished, but on other data, another task definition or other labels: a regenerated
    cohort, an edited task YAML, another `run --labels` folder) or "current".

    Args:
        results_dir: the results folder.
        model, task, seed: the cell.
        data_fingerprint: the cohort's fingerprint now; None skips the check.
        task_hash: the task's content hash now; None skips the check.
        labels_hash: the content hash of labels made elsewhere (`run --labels`), None for the
            labels the benchmark extracts; ... (the default) skips the check.
        point: a few-shot cell's point tag (cell_paths).
    """
    rec = read_record(cell_paths(results_dir, model, task, seed, point=point)[0])
    if rec is None or rec.status not in {"ok", "refused"}:
        return "missing"
    if data_fingerprint is not None and rec.provenance.data_fingerprint != data_fingerprint:
        return "stale"
    if labels_hash is not ... and rec.provenance.labels_hash != labels_hash:
        return "stale"
    return "stale" if task_hash is not None and rec.provenance.task_hash != task_hash else "current"


def check_results_dir(results_dir: Path) -> Path:
    """Make sure results can be written to results_dir before any work starts.

    Creates the folder if needed and writes (then removes) a probe file in it.

    Args:
        results_dir: the --results folder.

    Returns:
        results_dir as a Path.

    Raises:
        UserError: it is a file, cannot be created, or is not writable.
    """
    from benchmark.errors import UserError

    results_dir = Path(results_dir)
    if results_dir.exists() and not results_dir.is_dir():
        raise UserError("the results folder is a file", file=results_dir, field="--results",
                        fix="pass a folder (new or existing) to --results")
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=results_dir, prefix=".write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"cannot write to the results folder ({e.strerror or e})", file=results_dir,
                        field="--results", fix="pass a writable folder to --results, or fix its permissions "
                                               "or free disk space") from None
    return results_dir


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def write_result(path: Path, record: ResultRecord | dict) -> None:
    """Write a result JSON atomically (sorted keys, NaN/inf as null).

    Args:
        path: the cell's seed<k>.json.
        record: a ResultRecord (its set fields are written), or a plain dict (tests plant those).
    """
    atomic_write(path, result_json(record))


def result_json(record: ResultRecord | dict) -> str:
    """The text of a result file: sorted keys, NaN/inf as null, numpy values as plain JSON."""
    data = record.to_json_dict() if isinstance(record, ResultRecord) else record
    return json.dumps(_jsonable(data), indent=2, sort_keys=True) + "\n"


def write_predictions(path: Path, frame: pl.DataFrame) -> None:
    """Write a predictions parquet atomically."""
    with atomic_path(path, ".parquet") as tmp:
        frame.write_parquet(tmp)


def record_from_bytes(text: bytes | str) -> ResultRecord:
    """Parse a result file's content into a ResultRecord (any readable schema version).

    Raises:
        ValueError: not JSON, or not a result record (pydantic.ValidationError is a ValueError).
    """
    return ResultRecord.from_json_dict(json.loads(text))


def read_record(path: Path) -> ResultRecord | None:
    """The record in one result file, or None if it is missing, unreadable or not a valid record."""
    try:
        return record_from_bytes(Path(path).read_bytes())
    except (OSError, ValueError):
        return None


def read_record_files(results_dir: Path, exclude: Path | None = None) -> tuple[list[tuple[Path, ResultRecord]], list[str]]:
    """Every result file under results_dir with its record, and the files that are not records.

    Hidden folders (".name") and `exclude` (e.g. a site built inside the results folder) are skipped;
    a file removed meanwhile (a concurrent run replacing it) is skipped silently.

    Args:
        results_dir: the results folder (`<model>/<task>/seed<k>.json` below it).
        exclude: a folder inside it to skip.

    Returns:
        ([(json path, record)] sorted by (model, task, seed, path), problems): each problem names a
        file, what is wrong with it (field and reason) and the fix.
    """
    results_dir = Path(results_dir)
    ex = Path(exclude).resolve() if exclude is not None else None
    found, problems = [], []
    for p in sorted(results_dir.rglob("seed*.json")):
        if any(part.startswith(".") for part in p.relative_to(results_dir).parts):
            continue
        if ex is not None and p.resolve().is_relative_to(ex):
            continue
        try:
            found.append((p, record_from_bytes(p.read_bytes())))
        except FileNotFoundError:
            continue
        except json.JSONDecodeError as e:
            problems.append(f"{p}: not readable JSON ({e.msg}, line {e.lineno}); "
                            "fix: rerun that cell with --force, or remove the file")
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "(top level)"
            problems.append(f"{p}: not a result record (field '{where}': {first['msg']}); "
                            "fix: rerun that cell with --force, or remove the file")
        except (OSError, ValueError) as e:
            problems.append(f"{p}: unreadable result file ({e}); fix: rerun that cell with --force, or remove the file")
    found.sort(key=lambda pr: (pr[1].model, pr[1].task, pr[1].seed, str(pr[0])))
    return found, problems


def read_records(results_dir: Path) -> list[ResultRecord]:
    """Every result record under results_dir, sorted by (model, task, seed).

    The one reader of result files (read_record_files also gives their paths). A file that cannot
    be read or is not a valid record (truncated, hand-edited, written by a newer mehr-bench) is
    skipped with a warning naming it, the field and the fix.

    Args:
        results_dir: the results folder.

    Returns:
        The records.
    """
    found, problems = read_record_files(results_dir)
    for text in problems:
        warnings.warn(f"skipped {text}", stacklevel=2)
    return [rec for _, rec in found]


def predictions_path(json_path: Path, kind: str | TaskKind = "binary", external: str | None = None) -> Path:
    """The predictions file next to a cell's seed<k>.json (the one reader's way to find it).

    Args:
        json_path: the cell's seed<k>.json.
        kind: the cell's task kind (record.task_kind).
        external: an external dataset's fingerprint for its predictions, None for the held-out ones.

    Returns:
        `predictions_name(kind, seed, external)` beside it; for a non-binary cell written before
        schema version 4 (that file absent, the old seed<k>...predictions.parquet present) the old one.
    """
    json_path = Path(json_path)
    m = re.fullmatch(r"seed(\d+)(?:\.(" + POINT_TAG.pattern + r"))?\.json", json_path.name)
    if m is None:  # not a cell file name (a hand-made record): the predictions beside it by its stem
        return json_path.with_name(json_path.name[: -len(".json")] + ".predictions.parquet")
    seed = int(m.group(1))
    new = json_path.with_name(_with_point(predictions_name(kind, seed, external), seed, m.group(2)))
    if m.group(2):  # few-shot cells came after schema version 4: no legacy name
        return new
    old = json_path.with_name(legacy_predictions_name(seed, external))
    return old if not new.exists() and old.exists() else new


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


@lru_cache(maxsize=1)
def lockfile_hash() -> str | None:
    p = REPO_ROOT / "requirements.lock"
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.exists() else None


def hardware() -> dict:
    return {"machine": platform.machine(), "processor": platform.processor() or None,
            "cpus": os.cpu_count(), "python": platform.python_version(), "system": platform.system()}
