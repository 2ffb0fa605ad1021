"""The MEHR-Bench part of every `prepare <dataset>` after the community ETL has run: keep the ETL's
data/ and metadata/, keep its splits or write seeded subject-level 70/15/15 ones, stamp
metadata/dataset.json with the dataset and ETL names, run the integrity check, and publish the
cohort atomically (a temp folder next to --out renamed into place; on any failure --out stays
untouched). data_prep/mimic_iv.py, omop.py and eicu.py call `build_and_publish`."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from benchmark.artifacts import atomic_write
from benchmark.data.integrity import Finding, integrity_findings
from benchmark.errors import UserError
from benchmark.vocabulary import SPLITS
from data_prep.etl import publish

SPLIT_FRACTIONS = (0.70, 0.15, 0.15)  # train, tuning, held_out, at subject level


def check_out(out: Path) -> None:
    """Refuse an --out that exists and is not an empty folder (nothing is ever overwritten)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError("already exists and is not empty", file=out, field="--out",
                        fix="pass a new folder (or remove this one first)")


def data_subjects(cohort: Path) -> np.ndarray:
    """Sorted unique subject ids over every data shard of a cohort."""
    ids = pl.scan_parquet(sorted((cohort / "data").rglob("*.parquet"))).select("subject_id").unique().collect()
    return np.sort(ids["subject_id"].to_numpy())


def seeded_splits(subjects: np.ndarray, seed: int) -> pl.DataFrame:
    """Subject-level 70/15/15 train/tuning/held_out splits, a function of (subjects, seed) only.

    Args:
        subjects: unique subject ids.
        seed: the random seed.

    Returns:
        subject_id (int64), split (string), sorted by subject_id.
    """
    ids = np.sort(np.asarray(subjects, dtype=np.int64))
    order = np.random.default_rng(seed).permutation(len(ids))
    n_train = int(round(SPLIT_FRACTIONS[0] * len(ids)))
    n_tuning = int(round(SPLIT_FRACTIONS[1] * len(ids)))
    split = np.empty(len(ids), dtype=object)
    split[order[:n_train]] = "train"
    split[order[n_train:n_train + n_tuning]] = "tuning"
    split[order[n_train + n_tuning:]] = "held_out"
    return pl.DataFrame({"subject_id": ids, "split": split.tolist()},
                        schema={"subject_id": pl.Int64, "split": pl.String})


def etl_splits_usable(cohort: Path, subjects: np.ndarray) -> bool:
    """True if the ETL wrote subject_splits.parquet with only train/tuning/held_out, a train and a
    held_out split, and exactly one split for every subject with data."""
    p = cohort / "metadata" / "subject_splits.parquet"
    if not p.is_file():
        return False
    s = pl.read_parquet(p)
    if not {"subject_id", "split"} <= set(s.columns):
        return False
    names = set(s["split"].unique().to_list())
    return (names <= set(SPLITS) and {"train", "held_out"} <= names and s["subject_id"].is_unique().all()
            and set(s["subject_id"].to_list()) == set(subjects.tolist()))


def write_splits(cohort: Path, seed: int) -> tuple[bool, dict[str, int]]:
    """Keep the ETL's splits when usable, else write seeded 70/15/15 ones.

    Returns:
        (kept the ETL's splits, subjects per split).
    """
    subjects = data_subjects(cohort)
    p = cohort / "metadata" / "subject_splits.parquet"
    kept = etl_splits_usable(cohort, subjects)
    if not kept:
        seeded_splits(subjects, seed).write_parquet(p)
    counts = pl.read_parquet(p)["split"].value_counts()
    return kept, {r[0]: int(r[1]) for r in counts.rows()}


def stamp_dataset_json(cohort: Path, dataset_name: str, etl_name: str, etl_version: str) -> dict:
    """Make metadata/dataset.json name the dataset and the ETL whose code conventions the data follow
    (MEDS DatasetMetadataSchema; dataset profiles are recognised from these fields).

    MEDS-Extract ETLs write etl_name/etl_version of the pipeline engine underneath (MEDS_transforms):
    those move to pipeline_name/pipeline_version (the schema allows extra keys).

    Returns:
        The metadata written.
    """
    p = cohort / "metadata" / "dataset.json"
    meta = json.loads(p.read_text()) if p.is_file() else {}
    if meta.get("etl_name") and meta.get("etl_name") != etl_name:
        meta["pipeline_name"], meta["pipeline_version"] = meta["etl_name"], meta.get("etl_version")
    meta.update(dataset_name=dataset_name, etl_name=etl_name, etl_version=etl_version)
    atomic_write(p, json.dumps(meta, indent=2) + "\n")
    return meta


def assemble(etl_out: Path, cohort: Path) -> None:
    """Keep the ETL's data/ and metadata/ (not its intermediate stage folders) as the cohort."""
    cohort.mkdir()
    for part in ("data", "metadata"):
        if not (etl_out / part).is_dir():
            raise UserError(f"the ETL finished but wrote no {part}/ folder", file=etl_out, field=part,
                            fix="read the ETL's log (its path is printed above)")
        shutil.move(str(etl_out / part), str(cohort / part))


def build_and_publish(out: Path, build: Callable[[Path], Path], *, field: str, fix: str) -> tuple[list[Finding], int]:
    """Build a cohort in a temp folder next to `out`, check it, and rename it into place.

    Args:
        out: the --out folder (new or empty; checked again right before publishing).
        build: called with the temp folder; runs the ETL and MEHR-Bench's steps and returns the
            finished cohort folder inside it.
        field, fix: what an integrity error names (the option a user can change, and how).

    Returns:
        (integrity findings, number of events).

    Raises:
        UserError: from `build`, or when the cohort fails the integrity check; out is left untouched.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.prepare-{os.getpid()}"
    tmp.mkdir()
    try:
        cohort = build(tmp)
        findings = integrity_findings(cohort)
        errors = [f for f in findings if f.level == "error"]
        if errors:
            raise UserError("the ETL's output fails MEHR-Bench's integrity check:\n"
                            + "\n".join(f.render() for f in errors), file=out, field=field, fix=fix)
        n_events = pl.scan_parquet(sorted((cohort / "data").rglob("*.parquet"))).select(pl.len()).collect().item()
        check_out(out)  # another process may have written it meanwhile
        publish(cohort, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return findings, n_events
