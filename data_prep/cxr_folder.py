"""Export a cohort's chest X-rays as a CheXpert-style image folder (an image-only external set).

``export_chexpert_folder(cohort_dir, out_dir)`` writes ``out_dir/labels.csv`` (column ``Path``,
relative to out_dir, then one column per finding named exactly as the outcome keys of the task
``cxr/chexpert_multilabel``, values 1 / 0 / blank for a missing label) and the PNGs under
``out_dir/images/``.  The cohort's ``modalities/cxr.parquet`` must carry ``path`` (an image per
study) and ``labels`` (one 0/1 per finding, in the task's outcome order, which is CheXpert's order).
The folder is built next to ``out_dir`` and renamed at the end, so a failure leaves nothing behind.

CLI: ``python -m benchmark prepare cxr-folder --data COHORT --out DIR``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from benchmark.artifacts import atomic_dir
from benchmark.errors import UserError
from benchmark.external_images import PATH_COLUMN
from benchmark.task_registry import load_tasks

TASK = "cxr/chexpert_multilabel"


def finding_names() -> list[str]:
    """The finding columns of labels.csv: the outcome keys of the task cxr/chexpert_multilabel, in order."""
    return list(load_tasks()[TASK].label.outcomes)


def _read_studies(cohort_dir: Path, names: list[str]) -> pl.DataFrame:
    side = cohort_dir / "modalities" / "cxr.parquet"
    if not side.is_file():
        raise UserError(f"{side} does not exist: the cohort has no CXR sidecar", file=side, field="--data",
                        fix="pass a cohort with modalities/cxr.parquet (e.g. `prepare synthetic` with images)")
    df = pl.read_parquet(side)
    for col, fix in (("path", "generate the cohort with images (drop --no-images)"),
                     ("labels", "add a labels column (list of 0/1 per finding) to the sidecar")):
        if col not in df.columns:
            raise UserError(f"{side} has no {col!r} column", file=side, field=col, fix=fix)
    lengths = df["labels"].list.len().drop_nulls().unique().to_list()
    if lengths and lengths != [len(names)]:
        raise UserError(f"{side}: labels have {lengths} entries, the task {TASK} has {len(names)} findings",
                        file=side, field="labels", fix=f"one 0/1 per finding in the order {names}")
    bad = df.filter(pl.col("path").is_null() | pl.col("path").str.starts_with("/") | pl.col("path").str.contains(r"\.\."))
    if bad.height:
        raise UserError(f"{side}: {bad.height} rows have a missing, absolute or escaping path "
                        f"(first: {bad['path'][0]!r})", file=side, field="path",
                        fix="paths must be relative to the cohort folder and stay inside it")
    missing = [p for p in df["path"] if not (cohort_dir / p).is_file()]
    if missing:
        raise UserError(f"{len(missing)} CXR images listed in {side} do not exist (first: {missing[0]})",
                        file=side, field="path", fix="regenerate the cohort or fix the paths")
    return df


def export_chexpert_folder(cohort_dir: Path, out_dir: Path) -> tuple[Path, int]:
    """Write the cohort's CXR studies as a CheXpert-style folder (labels.csv + images/).

    Args:
        cohort_dir: a cohort whose cxr sidecar has ``path`` and ``labels``.
        out_dir: new folder (must not exist, or be empty).

    Returns:
        (out_dir, number of images).

    Raises:
        UserError: out_dir is not empty, or the sidecar lacks paths / labels or names missing images.
    """
    cohort_dir, out_dir = Path(cohort_dir), Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"output folder {out_dir} already exists and is not empty", file=out_dir, field="--out",
                        fix="choose a new folder or delete it")
    names = finding_names()
    df = _read_studies(cohort_dir, names)
    df = df.sort([c for c in ("subject_id", "time", "study_id") if c in df.columns])
    rel = [f"images/{Path(p).name}" for p in df["path"]]
    if len(set(rel)) != len(rel):                  # two studies share a file name: prefix the row number
        rel = [f"images/{i:07d}_{Path(p).name}" for i, p in enumerate(df["path"])]
    labels = df.select([pl.col("labels").list.get(j, null_on_oob=True).cast(pl.Int8).alias(n)
                        for j, n in enumerate(names)])
    table = pl.concat([pl.DataFrame({PATH_COLUMN: rel}), labels], how="horizontal")
    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        for src, dst in zip(df["path"], rel):
            shutil.copyfile(cohort_dir / src, tmp / dst)
        table.write_csv(tmp / "labels.csv", null_value="")
    return out_dir, table.height

