"""On-disk cache of per-sample encodings, and the sample bookkeeping every encoder shares.

Encoders only encode: each turns a task's samples (subject_id, prediction_time) into arrays aligned
with `TaskData.labels` (every split, label order). The arrays are cached under
``<data.work_dir>/encoders/<encoder>-<key>.npz`` where the key hashes

    (encoder name, encoder version, encoder config, cohort fingerprint, task name,
     the samples: subject_id, prediction_time and split of every label row)

so a change to the data, the task, the prediction times, the split assignment or the encoder's
settings gives a new file. Files are written atomically (temp file + rename); a reader never sees a
half-written cache. Pass ``cache=False`` to an encoder to bypass the cache (tests of determinism).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from benchmark.model_api import TaskData
from benchmark.vocabulary import SPLITS
from benchmark.artifacts import cached_artifact, digest

CACHE_SUBDIR = "encoders"


def samples_hash(data: TaskData) -> str:
    """Stable hash of the task's samples (subject_id, prediction_time, split) in label order.

    Args:
        data: the task data.

    Returns:
        16 hex characters.
    """
    lab = data.labels
    h = hashlib.sha256()
    h.update(lab["subject_id"].cast(pl.Int64).to_numpy().tobytes())
    h.update(lab["prediction_time"].cast(pl.Datetime("us")).cast(pl.Int64).fill_null(-1).to_numpy().tobytes())
    h.update("\n".join(lab["split"].to_list()).encode())
    return h.hexdigest()[:16]


def cache_key(encoder: str, version: str, config: dict, data: TaskData) -> str:
    """The cache key of one encoding.

    Args:
        encoder: encoder name (e.g. "precomputed:ct").
        version: bumped when the encoder's output changes for the same inputs.
        config: the encoder's settings (JSON-able).
        data: the task data (cohort fingerprint, task name and samples enter the key).

    Returns:
        16 hex characters.
    """
    return digest({"encoder": encoder, "version": version, "config": config, "data": data.cohort.fingerprint(),
                   "task": data.task.name, "samples": samples_hash(data)})


def cached_arrays(data: TaskData, encoder: str, version: str, config: dict,
                  compute: Callable[[], dict[str, np.ndarray]], *, cache: bool = True) -> dict[str, np.ndarray]:
    """Load an encoding from the cache or compute and store it.

    Args:
        data: the task data (its work_dir holds the cache).
        encoder: encoder name; also the file name prefix.
        version: encoder version.
        config: encoder settings that change the output.
        compute: builds the arrays (name -> numpy array, no object dtype).
        cache: False = always compute, never read or write the cache.

    Returns:
        The arrays.
    """
    if not cache:
        return compute()
    key = cache_key(encoder, version, config, data)
    folder = Path(data.work_dir) / CACHE_SUBDIR
    path = folder / f"{encoder.replace('/', '_').replace(':', '-')}-{key}.npz"
    # Concurrent runs on one cache: one computes, the others wait on the lock and read its file.
    return cached_artifact(path, compute, read=_read, write=lambda tmp, arrays: np.savez(tmp, **arrays),
                           suffix=".npz")


def _read(path: Path) -> dict[str, np.ndarray]:
    """The arrays of one cache file."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def sample_table(data: TaskData) -> tuple[pl.DataFrame, np.ndarray]:
    """Unique samples of the task and the map from label rows to them.

    Encoders compute one vector per unique (subject_id, prediction_time) and expand to label rows
    with the returned index, so a duplicated label row cannot duplicate visible events.

    Args:
        data: the task data.

    Returns:
        (samples with columns subject_id, prediction_time, sample (0..m-1), sorted by subject and
        time; row_to_sample [n_label_rows] index into it).
    """
    lab = data.labels.select(pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us")))
    uniq = lab.unique().sort("subject_id", "prediction_time").with_row_index("sample").with_columns(
        pl.col("sample").cast(pl.Int64))
    rows = lab.with_row_index("row").join(uniq, on=["subject_id", "prediction_time"], how="left").sort("row")
    return uniq.select("subject_id", "prediction_time", "sample"), rows["sample"].to_numpy()


def split_rows(data: TaskData, split: str | tuple[str, ...]) -> np.ndarray:
    """Indices of a split's rows in label order (matches `TaskData.frame(split)` order).

    Args:
        data: the task data.
        split: one split or several.

    Returns:
        int64 row indices into label-aligned arrays.
    """
    splits = (split,) if isinstance(split, str) else tuple(split)
    return np.flatnonzero(np.isin(data.labels["split"].to_numpy(), list(splits)))


def with_sample_index(frame: pl.LazyFrame, samples: pl.DataFrame) -> pl.LazyFrame:
    """Attach the sample index to guarded rows (which carry subject_id and prediction_time).

    Args:
        frame: output of the leakage guard (has subject_id, prediction_time).
        samples: from `sample_table`.

    Returns:
        The rows with a `sample` column.
    """
    return frame.join(samples.lazy(), on=["subject_id", "prediction_time"], how="inner")


def all_splits(data: TaskData) -> tuple[str, ...]:
    """The splits present in the task's labels (in train, tuning, held_out order)."""
    present = set(data.labels["split"].unique().to_list())
    return tuple(s for s in SPLITS if s in present) or SPLITS
