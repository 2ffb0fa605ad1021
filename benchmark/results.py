"""Result files: `<results>/<model>/<task>/seed<k>.json` and `seed<k>.predictions.parquet`.

Append-only and typed: a cell is written once, atomically (temp file + rename), and skipped on
rerun unless forced. `schema_version` changes when a field's meaning changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from benchmark.paths import REPO_ROOT

SCHEMA_VERSION = 1


def cell_paths(results_dir: Path, model: str, task: str, seed: int) -> tuple[Path, Path]:
    d = Path(results_dir) / model / task
    return d / f"seed{seed}.json", d / f"seed{seed}.predictions.parquet"


def cell_state(results_dir: Path, model: str, task: str, seed: int, *, data_fingerprint: str | None = None,
               task_hash: str | None = None) -> str:
    """Whether a cell needs computing: "missing" (no JSON, unreadable, or not status ok/refused),
    "stale" (finished, but on other data or another task definition: a regenerated cohort or an
    edited task YAML) or "current".

    Args:
        results_dir: the results folder.
        model, task, seed: the cell.
        data_fingerprint: the cohort's fingerprint now; None skips the check.
        task_hash: the task's content hash now; None skips the check.
    """
    j, _ = cell_paths(results_dir, model, task, seed)
    try:
        rec = json.loads(j.read_text())
    except (OSError, ValueError):
        return "missing"
    if rec.get("status") not in {"ok", "refused"}:
        return "missing"
    prov = rec.get("provenance") or {}
    if data_fingerprint is not None and prov.get("data_fingerprint") != data_fingerprint:
        return "stale"
    return "stale" if task_hash is not None and prov.get("task_hash") != task_hash else "current"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


def write_result(path: Path, record: dict) -> None:
    """Write a result JSON atomically (sorted keys, NaN/inf as null)."""
    atomic_write_bytes(path, (json.dumps(_jsonable(record), indent=2, sort_keys=True) + "\n").encode())


def write_predictions(path: Path, frame: pl.DataFrame) -> None:
    """Write a predictions parquet atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def read_results(results_dir: Path) -> list[dict]:
    """Every result JSON under results_dir (sorted by model, task, seed)."""
    out = []
    for p in sorted(Path(results_dir).rglob("seed*.json")):
        try:
            out.append(json.loads(p.read_text()))
        except ValueError:
            continue
    return sorted(out, key=lambda r: (r.get("model", ""), r.get("task", ""), r.get("seed", 0)))


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
