"""Your own study encoder, in one function: `InputConfig(sources={"cxr": "my_pkg.my_encoder:encode"})`.

A custom source is named ``"module:function"``. The function receives the sidecar rows that some
sample may see (already through the leakage guard, each study once) and returns one vector per row::

    def encode(studies: pl.DataFrame, modality: str) -> np.ndarray:   # [len(studies), d] float32
        ...                                                          # e.g. read studies["path"], run a CNN

The benchmark does the rest, as for the built-in encoders: it pools the vectors of each sample's
visible studies (mean + the K most recent as tokens), caches the result on disk by (function, its
``VERSION`` attribute if any, data, task, samples), and feeds every fusion head. The rows carry the
sidecar's columns except ground-truth ``labels`` (subject_id, time, study_id, path, embedding...).
"""

from __future__ import annotations

import importlib
from typing import Callable

import numpy as np
import polars as pl

from benchmark.errors import UserError
from benchmark.model_api import TaskData
from encoders.cache import all_splits, cached_arrays, sample_table, with_sample_index
from encoders.precomputed import ModalityEncoding, pool_studies, time_key

VERSION = "1"


def resolve(source: str) -> Callable[[pl.DataFrame, str], np.ndarray]:
    """The function named by "module:function" (a UserError saying what is wrong otherwise)."""
    module, _, name = source.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"cannot load the encoder {source!r}: {e}", field="sources",
                        fix="give 'importable.module:function', the function taking (studies, modality)") from None
    if not callable(fn):
        raise UserError(f"{source!r} is not a function", field="sources", fix="point at a function")
    return fn


def encode_custom(data: TaskData, modality: str, source: str, *, max_studies: int = 4,
                  cache: bool = True) -> ModalityEncoding:
    """Encode a modality's visible studies with a user function and pool them per sample.

    Args:
        data: the task's samples; studies pass through `TaskData.visible_modality`.
        modality: sidecar name.
        source: "module:function".
        max_studies: K most recent studies kept as tokens.
        cache: read/write the on-disk cache under data.work_dir.

    Returns:
        ModalityEncoding aligned with data.labels rows.

    Raises:
        UserError: the function cannot be loaded or returns the wrong shape.
    """
    fn = resolve(source)

    def compute() -> dict[str, np.ndarray]:
        samples, row_to_sample = sample_table(data)
        vis = (with_sample_index(data.visible_modality(modality, all_splits(data)), samples)
               .drop("prediction_time").collect())
        # each study once: rows seen by several samples differ only in `sample`
        study_cols = [c for c, t in vis.schema.items()
                      if c != "sample" and not isinstance(t, (pl.List, pl.Array))]
        studies = vis.select(study_cols).unique(maintain_order=True).with_row_index("_study")
        idx = vis.select(study_cols).join(studies, on=study_cols, how="left", nulls_equal=True,
                                          maintain_order="left")["_study"].to_numpy()
        first = np.unique(idx, return_index=True)[1]
        emb = np.asarray(fn(vis[first.tolist()].drop("sample"), modality), dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] != len(first):
            raise UserError(f"encoder {source!r} returned shape {emb.shape} for {len(first)} studies",
                            field="sources", fix="return one row per input study: an array [n_studies, d]")
        pooled = pool_studies(vis["sample"].to_numpy().astype(np.int64), time_key(vis["time"]), emb[idx],
                              samples.height, max_studies)
        return {k: v[row_to_sample] for k, v in pooled.items()}

    version = f"{VERSION}:{getattr(fn, 'VERSION', '')}"
    arrays = cached_arrays(data, f"custom:{source}:{modality}", version, {"max_studies": max_studies}, compute,
                           cache=cache)
    return ModalityEncoding.from_arrays(modality, arrays)
