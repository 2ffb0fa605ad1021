"""MIMIC-CXR-JPG -> the `cxr` sidecar and CXR events of an existing MIMIC-IV MEDS cohort.

Input: a MIMIC-CXR-JPG 2.0.0 / 2.1.0 folder as PhysioNet publishes it:

    mimic-cxr-2.0.0-metadata.csv.gz   dicom_id, subject_id, study_id, ViewPosition, StudyDate (YYYYMMDD),
                                      StudyTime (HHMMSS.fff, leading zeros dropped: 45007.0 = 04:50:07), ...
    mimic-cxr-2.0.0-chexpert.csv.gz   subject_id, study_id, the 14 findings (1.0 positive, 0.0 negative,
    mimic-cxr-2.0.0-negbio.csv.gz     -1.0 uncertain, empty = not mentioned)
    mimic-cxr-2.0.0-split.csv.gz      dicom_id, study_id, subject_id, split (optional; kept as `cxr_split`)
    files/p10/p10000032/s50414267/<dicom_id>.jpg

MIMIC-CXR's dates are shifted consistently with MIMIC-IV 2.x (same subject_id), so StudyDate +
StudyTime are on the cohort's timeline.

Output (added to the cohort; one transaction, rolled back on any error):

* `modalities/cxr.parquet`, ONE ROW PER STUDY (the task predicts per study): subject_id, time (study
  time = earliest image of the study), study_id, dicom_id and view of the representative image (the
  first frontal view: PA, then AP, then any other, ties by dicom_id), n_images, path
  (`images/cxr/p10/p10000032/s50414267/<dicom_id>.jpg`, a link to or a copy of the raw JPG; absent
  with images="none"), labels (list<int8>[14] in FINDINGS order = the task's order; null for a study
  the labeler did not label), cxr_split (the official split, if the split file exists), and
  `embedding` when a precomputed embeddings file is given.
* MEDS events, for labeled studies only (an unlabeled study would otherwise read as "all negative"):
  `CXR//STUDY` at the study time (the mimic_iv profile maps it to `cxr_study`) and one
  `CXR//FINDING//<Finding_Name>` per positive finding at study time + `report_delay`.
  MIMIC-CXR publishes no report time. Findings at the study time itself would be visible at the
  prediction time of `cxr/chexpert_multilabel` (the study time; visible means time <= prediction
  time), so every structured model would read its labels. They are placed `report_delay` (default
  2 h, as in the synthetic cohort) after the study: inside the task's 24 h label window, never
  visible at the index.
* Uncertain labels (-1.0): `uncertain="zeros"` (U-Zeros, the default) or `"ones"` (U-Ones), the two
  simple policies of "CheXpert: A Large Chest Radiograph Dataset with Uncertainty Labels and Expert
  Comparison". A blank (not mentioned) is negative. The summary counts the uncertain labels per finding.

Events are merged into each subject's existing shard (a subject lives in one shard), shards stay
sorted by (subject_id, time), and earlier `CXR//` events are replaced, so re-running is idempotent.
Studies of subjects the cohort does not have are dropped and counted.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from benchmark.errors import UserError
from data_prep.meds_merge import (CohortEdit, add_code_metadata, merge_events, raw_file, read_csv, run_edit,
                                  subject_shards)

# the 14 findings as MIMIC-CXR's label files name their columns, in the task's (alphabetical) order
FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
            "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
            "Pneumothorax", "Support Devices")
CODE_PREFIX = "CXR//"
STUDY_CODE = "CXR//STUDY"
FINDING_CODES = {f: f"CXR//FINDING//{f.replace(' ', '_')}" for f in FINDINGS}
REPORT_DELAY = timedelta(hours=2)
METADATA_FILE = "mimic-cxr-2.0.0-metadata.csv.gz"
LABEL_FILES = {"chexpert": "mimic-cxr-2.0.0-chexpert.csv.gz", "negbio": "mimic-cxr-2.0.0-negbio.csv.gz"}
SPLIT_FILE = "mimic-cxr-2.0.0-split.csv.gz"
UNCERTAIN = {"zeros": 0, "ones": 1}
IMAGE_MODES = ("link", "copy", "none")
VIEW_RANK = {"PA": 0, "AP": 1}  # frontal views first; every other view ranks 2
_META_COLS = {"dicom_id": pl.String, "subject_id": pl.Int64, "study_id": pl.Int64, "ViewPosition": pl.String,
              "StudyDate": pl.Int64, "StudyTime": pl.Float64}
_FIX_RAW = "use the unmodified file from PhysioNet MIMIC-CXR-JPG 2.0.0 / 2.1.0"


@dataclass
class CxrSummary:
    """What `prepare_mimic_cxr` linked and dropped."""

    studies_linked: int = 0
    studies_labeled: int = 0
    images_linked: int = 0
    dropped_unknown_subject: int = 0
    dropped_no_image: int = 0
    dropped_no_embedding: int = 0
    finding_events: int = 0
    uncertain: dict[str, int] = field(default_factory=dict)  # finding -> number of -1.0 labels
    shards_rewritten: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- reading raw files
def study_time(date: pl.Expr, time: pl.Expr) -> pl.Expr:
    """StudyDate (YYYYMMDD int) + StudyTime (HHMMSS.ffffff float, leading zeros dropped) -> Datetime[us].

    The time is split with integer arithmetic on microseconds so 213014.531 gives 21:30:14.531 exactly.
    """
    us = (time * 1_000_000).round(0).cast(pl.Int64)  # HHMMSSffffff
    hh, mm, ss_us = us // 10_000_000_000, (us // 100_000_000) % 100, us % 100_000_000
    day = date.cast(pl.String).str.to_date("%Y%m%d", strict=False).cast(pl.Datetime("us"))
    return day + pl.duration(hours=hh, minutes=mm, microseconds=ss_us)


def read_metadata(raw: Path) -> pl.DataFrame:
    """One row per image: dicom_id, subject_id, study_id, view, time (UserError for bad dates/times)."""
    path = raw_file(raw, METADATA_FILE)
    meta = read_csv(path, _META_COLS)
    meta = meta.with_columns(study_time(pl.col("StudyDate"), pl.col("StudyTime")).alias("time"))
    t = pl.col("StudyTime")
    bad = meta.filter(pl.col("time").is_null() | (t < 0) | (t >= 240000) | ((t // 100) % 100 >= 60) | (t % 100 >= 60))
    if bad.height:
        r = bad.row(0, named=True)
        raise UserError(f"{bad.height} images have no valid study date/time (e.g. StudyDate={r['StudyDate']}, "
                        f"StudyTime={r['StudyTime']})", file=path, field="StudyDate/StudyTime",
                        fix="StudyDate is YYYYMMDD and StudyTime HHMMSS.fff; " + _FIX_RAW)
    return meta.select("dicom_id", "subject_id", "study_id", pl.col("ViewPosition").alias("view"), "time")


def read_labels(raw: Path, labeler: str, uncertain: str) -> pl.DataFrame:
    """Per-study labels (list<int8>[14]) under the uncertainty policy.

    Returns:
        study_id, subject_id, labels, uncertain (list<bool>[14]: the raw value was -1.0).
    """
    path = raw_file(raw, LABEL_FILES[labeler])
    df = read_csv(path, {"subject_id": pl.Int64, "study_id": pl.Int64} | {f: pl.Float64 for f in FINDINGS})
    for f in FINDINGS:
        bad = df.filter(pl.col(f).is_not_null() & ~pl.col(f).is_in([1.0, 0.0, -1.0]))
        if bad.height:
            raise UserError(f"{bad.height} values are not 1.0, 0.0, -1.0 or empty (e.g. {bad[f][0]})", file=path,
                            field=f, fix=_FIX_RAW)
    u = UNCERTAIN[uncertain]
    binary = [pl.when(pl.col(f) == 1.0).then(1).when(pl.col(f) == -1.0).then(u).otherwise(0).cast(pl.Int8)
              for f in FINDINGS]  # blank (not mentioned) and 0.0 are negative
    uncertain_flags = pl.concat_list([(pl.col(f) == -1.0).fill_null(False) for f in FINDINGS]).alias("uncertain")
    labels = df.select("study_id", "subject_id", pl.concat_list(binary).alias("labels"), uncertain_flags)
    dup = labels.filter(pl.col("study_id").is_duplicated())
    if dup.height:
        raise UserError(f"study_id {dup['study_id'][0]} has more than one label row", file=path, field="study_id",
                        fix=_FIX_RAW)
    return labels


def read_split(raw: Path) -> pl.DataFrame | None:
    """study_id -> official split (the split file is per image; a study has one split), or None."""
    path = raw_file(raw, SPLIT_FILE, required=False)
    if path is None:
        return None
    df = read_csv(path, {"dicom_id": pl.String, "study_id": pl.Int64, "split": pl.String})
    return df.group_by("study_id").agg(pl.col("split").first().alias("cxr_split"))


def read_embeddings(path: Path) -> tuple[str, pl.DataFrame]:
    """A precomputed embeddings parquet keyed by dicom_id or study_id.

    Returns:
        (key column, table of key + embedding as Array[float32, d]).
    """
    path = Path(path)
    try:
        names = pq.read_schema(path).names
    except Exception as e:  # noqa: BLE001 - not a parquet file
        raise UserError(f"embeddings file is not a readable parquet file ({str(e).splitlines()[0][:200]})",
                        file=path, fix="write it with polars or pyarrow: dicom_id or study_id, embedding") from None
    key = next((k for k in ("dicom_id", "study_id") if k in names), None)
    if key is None or "embedding" not in names:
        raise UserError("embeddings file needs a key column (dicom_id or study_id) and an embedding column",
                        file=path, field="embedding" if key else "dicom_id",
                        fix="write one row per image (dicom_id) or study (study_id) with a list<float32> embedding")
    df = pl.read_parquet(path, columns=[key, "embedding"])
    emb = df["embedding"].cast(pl.List(pl.Float32))
    sizes = emb.list.len().unique().drop_nulls()
    if sizes.len() != 1:
        raise UserError(f"embeddings have {sizes.len()} different lengths (or none)", file=path, field="embedding",
                        fix="use one embedding size for every study")
    return key, df.with_columns(emb.cast(pl.Array(pl.Float32, int(sizes[0]))).alias("embedding")).drop_nulls()


# ---------------------------------------------------------------------------- cohort transaction
def _check_options(labeler: str, uncertain: str, images: str, embeddings) -> None:
    for name, value, allowed in (("--labeler", labeler, LABEL_FILES), ("--uncertain", uncertain, UNCERTAIN),
                                 ("--images", images, IMAGE_MODES)):
        if value not in allowed:
            raise UserError(f"unknown value {value!r}", field=name, fix=f"use one of: {', '.join(allowed)}")
    if images == "none" and embeddings is None:
        raise UserError("images='none' and no embeddings file: the cxr sidecar would carry neither path nor "
                        "embedding", field="--images", fix="link or copy the images, or pass --embeddings FILE")


def image_rel(subject_id: pl.Expr, study_id: pl.Expr, dicom_id: pl.Expr) -> pl.Expr:
    """MIMIC-CXR-JPG's file layout: p{first 2 digits}/p{subject_id}/s{study_id}/{dicom_id}.jpg."""
    sid = subject_id.cast(pl.String)
    return pl.concat_str([pl.lit("p"), sid.str.slice(0, 2), pl.lit("/p"), sid, pl.lit("/s"),
                          study_id.cast(pl.String), pl.lit("/"), dicom_id, pl.lit(".jpg")])


def _studies(images: pl.DataFrame) -> pl.DataFrame:
    """One row per study: earliest image time, representative image (PA, AP, other; then dicom_id)."""
    rank = pl.col("view").replace_strict(VIEW_RANK, default=2, return_dtype=pl.Int8)
    return (images.sort(rank, "dicom_id")
            .group_by("study_id", maintain_order=True)
            .agg(pl.col("subject_id").first(), pl.col("subject_id").n_unique().alias("n_subjects"),
                 pl.col("time").min(), pl.col("dicom_id").first(), pl.col("view").first(),
                 pl.col("rel").first(), pl.len().alias("n_images").cast(pl.Int32))
            .sort("subject_id", "time", "study_id"))


def _place_images(edit: CohortEdit, root: Path, raw: Path, rels: list[str], mode: str) -> None:
    """Link (symlink to the raw file) or copy each image under <cohort>/images/cxr/ (tracked by `edit`)."""
    for rel in rels:
        dest = root / "images" / "cxr" / rel
        if dest.exists() or dest.is_symlink():
            continue  # an earlier run placed it
        edit.mkdir(dest.parent)
        src = (raw / "files" / rel).resolve()
        edit.created.append(dest)
        if mode == "link":
            os.symlink(src, dest)
        else:
            shutil.copy2(src, dest)


def prepare_mimic_cxr(raw: str | Path, cohort: str | Path, *, labeler: str = "chexpert", uncertain: str = "zeros",
                      embeddings: str | Path | None = None, images: str = "link",
                      report_delay: timedelta = REPORT_DELAY) -> CxrSummary:
    """Add MIMIC-CXR-JPG studies to a MIMIC-IV MEDS cohort: the `cxr` sidecar and CXR events.

    Args:
        raw: the MIMIC-CXR-JPG folder (metadata, label and split csv.gz files; files/ for images).
        cohort: an existing MEDS cohort built from MIMIC-IV (same subject_ids, same date shift).
        labeler: "chexpert" or "negbio" (which label file).
        uncertain: "zeros" (U-Zeros, default) or "ones" (U-Ones) for -1.0 labels; blank is negative.
        embeddings: optional parquet of precomputed embeddings keyed by dicom_id or study_id.
        images: "link" (symlinks), "copy", or "none" (no path column; needs `embeddings`).
        report_delay: finding events go this long after the study (no report time is published).

    Returns:
        CxrSummary of linked and dropped studies and uncertain labels per finding.

    Raises:
        UserError: a missing file or column, a bad value or option, or an integrity error of the result
            (the cohort is left unchanged in every case).
    """
    raw, root = Path(raw), Path(cohort)
    _check_options(labeler, uncertain, images, embeddings)
    if not root.is_dir():
        raise UserError("cohort folder not found", file=root, field="--data",
                        fix="build the MIMIC-IV cohort first (python -m benchmark prepare mimic-iv)")
    s = CxrSummary()
    meta = read_metadata(raw).with_columns(image_rel(pl.col("subject_id"), pl.col("study_id"),
                                                     pl.col("dicom_id")).alias("rel"))
    labels = read_labels(raw, labeler, uncertain)
    split = read_split(raw)
    emb = read_embeddings(Path(embeddings)) if embeddings is not None else None
    known = subject_shards(root)["subject_id"]
    n_all = meta["study_id"].n_unique()
    meta = meta.filter(pl.col("subject_id").is_in(known.implode()))
    s.dropped_unknown_subject = n_all - meta["study_id"].n_unique()
    if images != "none":  # studies keep only the images that exist in the raw folder
        n_before = meta["study_id"].n_unique()
        meta = meta.filter(pl.Series([(raw / "files" / r).is_file() for r in meta["rel"]], dtype=pl.Boolean))
        s.dropped_no_image = n_before - meta["study_id"].n_unique()
    studies = _studies(meta)
    if studies.filter(pl.col("n_subjects") > 1).height:
        sid = studies.filter(pl.col("n_subjects") > 1)["study_id"][0]
        raise UserError(f"study {sid} has images of more than one subject", file=raw_file(raw, METADATA_FILE),
                        field="subject_id", fix=_FIX_RAW)
    studies = studies.join(labels.drop("subject_id"), on="study_id", how="left")
    if split is not None:
        studies = studies.join(split, on="study_id", how="left")
    if emb is not None:
        key, table = emb
        n_before = studies.height
        studies = studies.join(table, on=key, how="inner").sort("subject_id", "time", "study_id")
        s.dropped_no_embedding = n_before - studies.height
    flags = studies["uncertain"].drop_nulls().to_list()
    s.uncertain = {f: sum(row[j] for row in flags) for j, f in enumerate(FINDINGS)}  # of the linked studies
    sidecar = _sidecar(studies, images, emb is not None, split is not None)
    events = _events(studies, report_delay)
    s.studies_linked, s.images_linked = studies.height, int(studies["n_images"].sum() or 0)
    s.studies_labeled = int(studies["labels"].is_not_null().sum())
    s.finding_events = events.filter(pl.col("code") != STUDY_CODE).height

    def build(edit: CohortEdit) -> None:
        s.shards_rewritten = merge_events(edit, root, events, pl.col("code").str.starts_with(CODE_PREFIX))
        add_code_metadata(edit, root, {STUDY_CODE: "MIMIC-CXR chest X-ray study (study time)"}
                          | {c: f"MIMIC-CXR {labeler} finding: {f} (positive)" for f, c in FINDING_CODES.items()})
        edit.stage(root / "modalities" / "cxr.parquet", lambda tmp: sidecar.write_parquet(tmp))
        if images != "none":
            _place_images(edit, root, raw, studies["rel"].to_list(), images)

    run_edit(root, build)
    return s


def _sidecar(studies: pl.DataFrame, images: str, with_embedding: bool, with_split: bool) -> pl.DataFrame:
    """The cxr sidecar rows (one per study) in the cohort's sidecar format."""
    cols = [pl.col("subject_id"), pl.col("time"), pl.col("study_id"), pl.col("dicom_id"), pl.col("view"),
            pl.col("n_images"), pl.col("labels")]
    if images != "none":
        cols.append(pl.concat_str([pl.lit("images/cxr/"), pl.col("rel")]).alias("path"))
    if with_split:
        cols.append(pl.col("cxr_split"))
    if with_embedding:
        cols.append(pl.col("embedding"))
    return studies.select(cols)


def _events(studies: pl.DataFrame, report_delay: timedelta) -> pl.DataFrame:
    """MEDS events of the labeled studies: CXR//STUDY at the study time, positive findings after the delay."""
    lab = studies.filter(pl.col("labels").is_not_null())
    study = lab.select("subject_id", "time", pl.lit(STUDY_CODE).alias("code"))
    codes = pl.DataFrame({"j": range(len(FINDINGS)), "code": list(FINDING_CODES.values())},
                         schema={"j": pl.Int64, "code": pl.String})
    found = (lab.select("subject_id", (pl.col("time") + report_delay).alias("time"),
                        pl.col("labels"), pl.lit(list(range(len(FINDINGS))), pl.List(pl.Int64)).alias("j"))
             .explode("labels", "j", empty_as_null=True).filter(pl.col("labels") == 1)
             .join(codes, on="j", how="left", maintain_order="left").select("subject_id", "time", "code"))
    return pl.concat([study, found]).sort("subject_id", "time", maintain_order=True)


__all__ = ["prepare_mimic_cxr", "CxrSummary", "add_code_metadata", "FINDINGS", "FINDING_CODES", "STUDY_CODE", "REPORT_DELAY",
           "CohortEdit", "merge_events", "run_edit", "read_csv", "raw_file", "subject_shards"]
