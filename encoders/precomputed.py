"""Precomputed study embeddings from a modality sidecar, pooled per sample up to the prediction time.

This is the benchmark's main image path (as in the MEHRT paper's GigaPath/DINOv2 and the CT + EHR fusion paper's
MedImageInsight features, computed elsewhere): ``<cohort>/modalities/<name>.parquet`` carries one
``embedding`` per study; for each sample we read the studies the leakage guard lets through
(time <= prediction time; static rows with a null time always) and return

* ``mean``      [n, d]     the mean embedding of all visible studies (0 where none),
* ``seq``       [n, K, d]  the K most recent visible studies, most recent first (tokens for the
                           attention heads),
* ``seq_mask``  [n, K]     which of those slots hold a study,
* ``count``     [n]        how many studies were visible,

aligned with ``TaskData.labels`` (all splits, label order). ``present = count > 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from benchmark.errors import UserError
from benchmark.model_api import TaskData
from encoders.cache import all_splits, cached_arrays, sample_table, with_sample_index

VERSION = "1"


@dataclass
class ModalityEncoding:
    """Per-sample encoding of one modality, aligned with TaskData.labels rows."""

    name: str
    mean: np.ndarray       # [n, d] float32
    seq: np.ndarray        # [n, K, d] float32, most recent first
    seq_mask: np.ndarray   # [n, K] bool
    count: np.ndarray      # [n] int32

    @property
    def present(self) -> np.ndarray:
        """[n] bool: the sample has at least one visible study."""
        return self.count > 0

    @property
    def dim(self) -> int:
        return int(self.mean.shape[1])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "seq": self.seq, "seq_mask": self.seq_mask, "count": self.count}

    @classmethod
    def from_arrays(cls, name: str, a: dict[str, np.ndarray]) -> "ModalityEncoding":
        return cls(name, a["mean"], a["seq"], a["seq_mask"].astype(bool), a["count"])


def pool_studies(sample: np.ndarray, time_key: np.ndarray, emb: np.ndarray, n_samples: int,
                 max_studies: int) -> dict[str, np.ndarray]:
    """Mean and most-recent-K pooling of study vectors per sample.

    Args:
        sample: [m] sample index of each visible study.
        time_key: [m] int64 study time (null times mapped to the smallest int64: oldest).
        emb: [m, d] study vectors.
        n_samples: number of samples.
        max_studies: K, the number of most recent studies kept as tokens.

    Returns:
        Arrays mean [n, d], seq [n, K, d], seq_mask [n, K], count [n] (see module docstring).
    """
    d = emb.shape[1] if emb.ndim == 2 else 0
    emb = emb.astype(np.float64, copy=False)
    count = np.bincount(sample, minlength=n_samples).astype(np.int32)
    sums = np.zeros((n_samples, d))
    # deterministic summation order: studies sorted by (sample, time, original position)
    order = np.lexsort((np.arange(len(sample)), time_key, sample))
    s_sorted, e_sorted = sample[order], emb[order]
    np.add.at(sums, s_sorted, e_sorted)
    mean = np.where(count[:, None] > 0, sums / np.maximum(count, 1)[:, None], 0.0).astype(np.float32)
    seq = np.zeros((n_samples, max_studies, d), dtype=np.float32)
    seq_mask = np.zeros((n_samples, max_studies), dtype=bool)
    if len(s_sorted):
        # rank from the end within each sample: 0 = most recent
        starts = np.r_[0, np.cumsum(count)[:-1]]
        pos = np.arange(len(s_sorted)) - starts[s_sorted]
        rank = count[s_sorted] - 1 - pos
        keep = rank < max_studies
        seq[s_sorted[keep], rank[keep]] = e_sorted[keep]
        seq_mask[s_sorted[keep], rank[keep]] = True
    return {"mean": mean, "seq": seq, "seq_mask": seq_mask, "count": count}


def time_key(times: pl.Series) -> np.ndarray:
    """int64 microseconds of a datetime column, nulls (static rows) as the oldest time."""
    return times.cast(pl.Datetime("us")).cast(pl.Int64).fill_null(np.iinfo(np.int64).min).to_numpy()


def encode_precomputed(data: TaskData, modality: str, *, max_studies: int = 4, cache: bool = True) -> ModalityEncoding:
    """Pool a sidecar's precomputed study embeddings per sample (visible studies only).

    Args:
        data: the task's samples; studies pass through `TaskData.visible_modality`.
        modality: sidecar name (ct, wsi, cxr, note, prs, ...).
        max_studies: K most recent studies kept as tokens.
        cache: read/write the on-disk cache under data.work_dir.

    Returns:
        ModalityEncoding aligned with data.labels rows.

    Raises:
        UserError: the sidecar has no `embedding` column.
    """
    def compute() -> dict[str, np.ndarray]:
        names = data.cohort.modality(modality).collect_schema().names()
        if "embedding" not in names:
            raise UserError(f"modality {modality!r} has no embedding column", field="embedding",
                            file=data.cohort.root / "modalities" / f"{modality}.parquet",
                            fix="precompute study embeddings into an `embedding` list<float32> column, "
                                "or use an image/text encoder on the `path` column")
        samples, row_to_sample = sample_table(data)
        vis = (with_sample_index(data.visible_modality(modality, all_splits(data)), samples)
               .select("sample", "time", "embedding").collect())
        emb = _embedding_matrix(vis["embedding"])
        pooled = pool_studies(vis["sample"].to_numpy().astype(np.int64), time_key(vis["time"]), emb,
                              samples.height, max_studies)
        return {k: v[row_to_sample] for k, v in pooled.items()}

    arrays = cached_arrays(data, f"precomputed:{modality}", VERSION, {"max_studies": max_studies}, compute,
                           cache=cache)
    return ModalityEncoding.from_arrays(modality, arrays)


def _embedding_matrix(col: pl.Series) -> np.ndarray:
    """[m, d] float32 from an Array or List embedding column (all rows must share d)."""
    if col.len() == 0:
        width = col.dtype.size if isinstance(col.dtype, pl.Array) else 0
        return np.zeros((0, width), dtype=np.float32)
    if isinstance(col.dtype, pl.Array):
        return col.to_numpy().astype(np.float32).reshape(col.len(), -1)
    lens = col.list.len()
    if lens.n_unique() != 1:
        raise UserError("embeddings have different lengths", field="embedding",
                        fix="every study embedding of a modality must have the same size")
    return np.asarray(col.explode().to_numpy(), dtype=np.float32).reshape(col.len(), -1)
