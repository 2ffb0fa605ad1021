"""Perturbed copies of a cohort whose evaluation subjects' futures differ: the oracle of the
check-model "future invariance" row (benchmark.model_check).

For one task's labels, each tuning or held-out subject that has a sample gets a cut: its LAST
prediction time in the labels. Every row of that subject strictly after the cut, in the data shards
and in the timed sidecars (modalities/<name>.parquet with subject_id and time columns), is

    "deleted"   removed;
    "burst"     replaced: numeric values shifted (v -> 1.5 v + 1), sidecar embeddings shifted by +1
                and ground-truth item columns flipped (1 - x), plus planted rows after the cut: a
                MEDS_DEATH and 1 to 5 PLANTED_CODE rows with a value a few microseconds after the cut (more
                rows for some subjects than others, so counts differ between subjects).

Everything at or before a cut, the static (null-time) rows, training subjects (a model may pretrain
on the training split's whole timelines) and evaluation subjects without a sample stay as they
are; metadata/ (codes.parquet, subject_splits.parquet, dataset.json), predicates.yaml and other
files (images) are copied unchanged. A model that reads inputs only through the leakage guard
therefore sees exactly the same inputs for every sample and must give the same scores.

Each copy is written once into cache_dir()/model_check/, atomically (a reader sees a whole folder
or none), keyed by the source cohort's fingerprint, the variant and the cuts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Literal

import polars as pl
import pyarrow.parquet as pq

from benchmark.artifacts import atomic_dir, cache_lock, digest
from benchmark.data.cohort import Cohort
from benchmark.data.leakage import LABEL_COLUMNS

FUTURE_VERSION = "1"
VARIANTS = ("deleted", "burst")
Variant = Literal["deleted", "burst"]
EVAL_SPLITS = ("tuning", "held_out")
PLANTED_CODE = "MEHR_BENCH/FUTURE_BURST"
DEATH_CODE = "MEDS_DEATH"
_CUT = "__cut"
_ROW = "__row"


def future_cuts(labels: pl.DataFrame, splits: pl.DataFrame, eval_splits: tuple[str, ...] = EVAL_SPLITS) -> pl.DataFrame:
    """The cut of each evaluation subject: its last prediction time in the labels.

    Args:
        labels: the task's labels (subject_id, prediction_time, ...).
        splits: the cohort's subject_id -> split.
        eval_splits: the splits whose subjects get a cut.

    Returns:
        subject_id (int64), cut (datetime[us]), one row per subject, sorted.
    """
    lab = labels.select(pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us")))
    ev = splits.filter(pl.col("split").is_in(list(eval_splits))).select(pl.col("subject_id").cast(pl.Int64))
    return (lab.join(ev, on="subject_id", how="semi").group_by("subject_id")
            .agg(pl.col("prediction_time").max().alias("cut")).sort("subject_id"))


def perturbed_cohort(cohort: Cohort, cuts: pl.DataFrame, variant: Variant) -> Cohort:
    """A copy of `cohort` whose rows after each subject's cut are deleted or replaced (module docstring).

    Args:
        cohort: the intact cohort.
        cuts: subject_id, cut (future_cuts).
        variant: "deleted" or "burst".

    Returns:
        The perturbed Cohort (same --predicates and --dataset as `cohort`), written once into the cache.
    """
    from benchmark.paths import cache_dir

    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: choose one of {VARIANTS}")
    cuts = cuts.select(pl.col("subject_id").cast(pl.Int64), pl.col("cut").cast(pl.Datetime("us")).alias(_CUT))
    key = digest({"v": FUTURE_VERSION, "variant": variant, "cohort": cohort.fingerprint(),
                  "cuts": hashlib.sha256(cuts.sort("subject_id").write_csv().encode()).hexdigest()})
    out = cache_dir() / "model_check" / f"future-{variant}-{key}"
    done = out / "metadata" / "subject_splits.parquet"
    if not done.exists():
        with cache_lock(out):
            if not done.exists():  # another check may have written it while this one waited
                with atomic_dir(out) as tmp:
                    _write(cohort.root, tmp, cuts, variant)
    # the same predicate map (it decides which null-time rows scan() drops) and dataset profile
    pf = cohort.predicates_file
    own = pf == cohort.root / "predicates.yaml"
    return Cohort(out, predicates_file=None if own or not pf.exists() else pf, dataset=cohort.dataset)


def _write(src: Path, dst: Path, cuts: pl.DataFrame, variant: Variant) -> None:
    """Fill `dst` with the perturbed copy of the cohort folder `src`."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if any(part.startswith(".") for part in rel.parts):  # .fingerprint, locks: not part of the data
            continue
        target = dst / rel
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".parquet" and rel.parts[0] == "data":
            _rewrite(path, target, cuts, variant, _shard)
        elif path.suffix == ".parquet" and rel.parts[0] == "modalities" and len(rel.parts) == 2:
            _rewrite(path, target, cuts, variant, _sidecar)
        else:
            _link_or_copy(path, target)


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (images can be large and are never written), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _rewrite(src: Path, dst: Path, cuts: pl.DataFrame, variant: Variant, change) -> None:
    """Read one parquet file, perturb it, write it back with its own arrow schema."""
    table = pq.read_table(src)
    names = set(table.column_names)
    if not {"subject_id", "time"} <= names:  # no timed rows: nothing can lie after a cut
        _link_or_copy(src, dst)
        return
    df = pl.from_arrow(table)
    if not isinstance(df, pl.DataFrame):
        df = df.to_frame()
    after = (pl.col("time").cast(pl.Datetime("us")) > pl.col(_CUT)).fill_null(False)
    df = (df.with_row_index(_ROW).with_columns(pl.col("subject_id").cast(pl.Int64).alias("__sid"))
          .join(cuts.rename({"subject_id": "__sid"}), on="__sid", how="left", maintain_order="left")
          .drop("__sid").with_columns(after.alias("__after")))
    out = change(df, variant, cuts)
    out = out.sort(_ROW, maintain_order=True).drop(_ROW, _CUT, "__after", strict=False).select(table.column_names)
    pq.write_table(out.to_arrow().cast(table.schema), dst)


def _shard(df: pl.DataFrame, variant: Variant, cuts: pl.DataFrame) -> pl.DataFrame:
    """A MEDS data shard: rows after the cut removed, or shifted with planted rows after them."""
    if variant == "deleted":
        return df.filter(~pl.col("__after"))
    if "numeric_value" in df.columns:
        v = pl.col("numeric_value")
        df = df.with_columns(pl.when(pl.col("__after")).then(v * 1.5 + 1).otherwise(v).cast(df.schema["numeric_value"])
                             .alias("numeric_value"))
    # planted rows go right after the subject's last row at or before its cut (rank + .5), a few
    # microseconds after the cut: the shard stays sorted by time and the rows a model may see keep their order
    here = (df.filter(pl.col(_CUT).is_not_null() & ~pl.col("__after"))
            .group_by(pl.col("subject_id").cast(pl.Int64).alias("sid"))
            .agg(pl.col(_ROW).max().alias("last"), pl.col(_CUT).first()).sort("sid"))
    if here.height == 0:
        return df
    planted = []
    for sid, last, cut in here.select("sid", "last", _CUT).iter_rows():
        rows = [(DEATH_CODE, None)] + [(PLANTED_CODE, float(100 + sid % 7))] * (1 + sid % 5)
        planted += [{"subject_id": sid, "time": cut + timedelta(microseconds=1 + i), "code": c, "numeric_value": v,
                     _ROW: last + 0.5} for i, (c, v) in enumerate(rows)]
    extra = pl.DataFrame(planted, schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                          "numeric_value": pl.Float64, _ROW: pl.Float64})
    df = df.with_columns(pl.col(_ROW).cast(pl.Float64))
    cols = [pl.col(c).cast(df.schema[c]) if c in extra.columns else pl.lit(None, dtype=df.schema[c]).alias(c)
            for c in df.columns if c not in (_CUT, "__after")]
    return pl.concat([df.drop(_CUT, "__after"), extra.select(cols)], how="vertical")


def _sidecar(df: pl.DataFrame, variant: Variant, cuts: pl.DataFrame) -> pl.DataFrame:
    """A modality sidecar: studies after the cut removed, or their embeddings and labels changed."""
    if variant == "deleted":
        return df.filter(~pl.col("__after"))
    changed = []
    for name, dtype in df.schema.items():
        inner = getattr(dtype, "inner", None)
        if name == "embedding" and inner is not None and inner.is_float():
            changed.append(pl.when(pl.col("__after")).then(pl.col(name) + 1).otherwise(pl.col(name)).alias(name))
        elif name in LABEL_COLUMNS and inner is not None and inner.is_integer():
            changed.append(pl.when(pl.col("__after")).then(1 - pl.col(name)).otherwise(pl.col(name))
                           .cast(dtype).alias(name))
    return df.with_columns(changed) if changed else df
