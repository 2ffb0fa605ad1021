"""A merged, read-only cohort for external validation: the internal cohort's train + tuning subjects
and ALL subjects of the external cohort as its held_out split.

Why: every model family reads its inputs through `TaskData` (the leakage guard) and computes its
vocabularies, scalers, bag-of-events columns and encoder caches from the training split. In the
merged cohort the train and tuning splits are exactly the internal ones (same subjects, same events,
same order), so whatever a fitted model learned from them is what it applies to the external
samples: `model.predict(merged, "held_out")` scores the external cohort with the model fitted on the
internal one, with no change to any model.

Layout (written once per (internal, external) fingerprint pair under the cache folder, atomically:
built in a temp folder, renamed into place):

    data/internal/...            links to the internal cohort's shards (not copied)
    data/external/<k>.parquet    the external shards, subject_id + offset (namespaced: no id collides)
    metadata/subject_splits.parquet   internal train + tuning, external subjects as held_out
    metadata/codes.parquet       internal codes, then external codes not in it
    metadata/dataset.json        the internal cohort's (the model reads B with A's dataset profile)
    predicates.yaml              the internal cohort's map in use, when it is a file
    modalities/<name>.parquet    internal rows + external rows (subject_id + offset; a `path` gets
                                 the prefix EXTERNAL_LINK/ so it resolves through the link below)
    <entry> -> internal/<entry>  links to the internal cohort's other top-level entries (images...)
    EXTERNAL_LINK -> external cohort folder

The internal held_out subjects' events stay in the linked shards but they are in no split, so no
sample of theirs exists in the merged cohort.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import polars as pl

from benchmark.artifacts import cache_lock
from benchmark.data.cohort import Cohort
from benchmark.paths import cache_dir

EXTERNAL_LINK = "_external_cohort"
CORE = {"data", "metadata", "modalities", "predicates.yaml"}
MERGE_VERSION = "1"


def id_offset(internal: Cohort, external: Cohort) -> int:
    """What is added to every external subject_id so that it is above every internal one.

    Returns:
        max(internal ids) + 1 - min(external ids) (0 when that is already the case).
    """
    a_max = max(int(internal.splits["subject_id"].max()),
                int(internal.scan(("subject_id",)).select(pl.col("subject_id").max()).collect().item()))
    b_min = min(int(external.splits["subject_id"].min()),
                int(external.scan(("subject_id",)).select(pl.col("subject_id").min()).collect().item()))
    return max(0, a_max + 1 - b_min)


def merged_cohort(internal: Cohort, external: Cohort) -> tuple[Cohort, int]:
    """The merged cohort of (internal, external), built on first use (module docstring).

    Args:
        internal: the cohort the model is fitted on.
        external: the external cohort it is scored on.

    Returns:
        (the merged Cohort, the subject_id offset of the external subjects in it).
    """
    offset = id_offset(internal, external)
    root = cache_dir() / "external" / f"m{MERGE_VERSION}-{internal.fingerprint()}-{external.fingerprint()}"
    done = root / ".complete"
    if not done.exists():
        with cache_lock(root):
            if not done.exists():
                _build(internal, external, offset, root)
    return Cohort(root, dataset=internal.dataset), offset


def _build(a: Cohort, b: Cohort, offset: int, root: Path) -> None:
    """Write the merged cohort into a temp folder, then rename it onto root (see module docstring)."""
    tmp = root.with_name(f".{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)  # an incomplete folder (no .complete) from a killed run
    try:
        (tmp / "data" / "internal").mkdir(parents=True)
        (tmp / "data" / "external").mkdir(parents=True)
        (tmp / "metadata").mkdir()
        (tmp / "modalities").mkdir()
        for f in a.data_files():
            dst = tmp / "data" / "internal" / f.relative_to(a.root / "data")
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(f.resolve())
        for k, f in enumerate(b.data_files()):
            pl.read_parquet(f).with_columns((pl.col("subject_id").cast(pl.Int64) + offset).alias("subject_id")) \
                .write_parquet(tmp / "data" / "external" / f"{k}.parquet")
        sp = pl.concat([a.splits.filter(pl.col("split").is_in(["train", "tuning"])),
                        b.splits.select((pl.col("subject_id") + offset).alias("subject_id"),
                                        pl.lit("held_out").alias("split"))])
        sp.write_parquet(tmp / "metadata" / "subject_splits.parquet")
        codes = pl.concat([a.codes(), b.codes()], how="diagonal_relaxed").unique("code", keep="first",
                                                                                 maintain_order=True)
        codes.write_parquet(tmp / "metadata" / "codes.parquet")
        meta = a.dataset_metadata()
        (tmp / "metadata" / "dataset.json").write_text(json.dumps(meta, indent=2))
        if a.predicates_file.exists():
            shutil.copyfile(a.predicates_file, tmp / "predicates.yaml")
        for name in sorted(set(a.modality_names()) | set(b.modality_names())):
            _merge_modality(a, b, name, offset, tmp / "modalities" / f"{name}.parquet")
        for entry in a.root.iterdir():
            if entry.name not in CORE and not entry.name.startswith(".") and entry.name != EXTERNAL_LINK:
                (tmp / entry.name).symlink_to(entry.resolve())
        (tmp / EXTERNAL_LINK).symlink_to(b.root.resolve())
        (tmp / ".complete").write_text("")
        os.rename(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _merge_modality(a: Cohort, b: Cohort, name: str, offset: int, out: Path) -> None:
    """One sidecar of the merged cohort: internal rows, then external rows with ids and paths moved."""
    parts = []
    if name in a.modality_names():
        parts.append(a.modality(name).collect())
    if name in b.modality_names():
        f = b.modality(name).collect().with_columns((pl.col("subject_id").cast(pl.Int64) + offset).alias("subject_id"))
        if "path" in f.columns:
            f = f.with_columns((pl.lit(EXTERNAL_LINK + "/") + pl.col("path")).alias("path"))
        parts.append(f)
    pl.concat(parts, how="diagonal_relaxed").write_parquet(out)
