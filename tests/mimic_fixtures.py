"""Tiny MIMIC-CXR-JPG and MIMIC-IV-Note trees in the published layouts, and a MIMIC-IV-like MEDS cohort.

The file names, column names and value formats are those of PhysioNet's MIMIC-CXR-JPG 2.0.0/2.1.0
and MIMIC-IV-Note 2.2 (StudyDate YYYYMMDD int, StudyTime HHMMSS.fff float with leading zeros dropped,
labels 1.0 / 0.0 / -1.0 / empty, note times 'YYYY-MM-DD HH:MM:SS'). Everything here is hand-written,
so the tests can state the expected times and labels literally.
"""

from __future__ import annotations

import gzip
import io
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import yaml
from PIL import Image

FINDINGS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
            "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
            "Pneumothorax", "Support Devices")
# subject -> shard; 19999999 (in the raw files) is not in the cohort
SHARDS = {10000032: "train/0", 10000764: "train/0", 11000011: "held_out/0"}
OUTSIDER = 19999999

# study_id -> (subject_id, StudyDate, StudyTime, [(dicom_id, ViewPosition)], chexpert, negbio); labels
# are {finding: value}, absent = empty cell; None = no row in the label files (an unlabeled study)
STUDIES = {
    50414267: (10000032, 21800506, 213014.531, [("d1-lat", "LATERAL"), ("d1-pa", "PA")],
               {"Cardiomegaly": 1.0, "Edema": -1.0, "Pleural Effusion": 0.0},
               {"Cardiomegaly": 1.0, "Edema": 1.0}),
    53189527: (10000032, 21800626, 45007.0, [("d2-ap", "AP")],
               {"Support Devices": 1.0, "Pneumothorax": -1.0}, {"Support Devices": 1.0}),
    57375967: (10000764, 21320822, 7.5, [("d3-pa", "PA")], {"No Finding": 1.0}, {"No Finding": 1.0}),
    58888888: (10000764, 21321001, 101500.0, [("d6-pa", "PA")], None, None),
    55555555: (11000011, 21600101, 120000.0, [("d4-ll", "LL"), ("d4-ap", "AP")],
               {"Lung Opacity": 1.0, "Pneumonia": -1.0, "Atelectasis": -1.0}, {"Lung Opacity": 1.0}),
    56666666: (OUTSIDER, 21500101, 80000.0, [("d5-pa", "PA")], {"Edema": 1.0}, {"Edema": 1.0}),
}
STUDY_SPLITS = {50414267: "train", 53189527: "train", 57375967: "validate", 58888888: "train",
                55555555: "test", 56666666: "train"}

# MIMIC-IV-Note rows: note_id, subject_id, hadm_id, note_type, note_seq, charttime, storetime (None = empty), text
DISCHARGE = [
    ("10000032-DS-21", 10000032, 22595853, "DS", 21, "2180-05-07 00:00:00", "2180-05-09 15:26:00",
     "Name: ___ Unit No: ___\nDischarge Diagnosis: ascites, \"cirrhosis\", HCV."),
    ("10000032-DS-22", 10000032, 22841357, "DS", 22, "2180-06-27 00:00:00", None, "Discharge summary two."),
    ("11000011-DS-1", 11000011, 20000001, "DS", 1, "2160-01-05 00:00:00", "2160-01-06 09:00:00", "Discharged home."),
    ("19999999-DS-1", OUTSIDER, 29999999, "DS", 1, "2150-01-05 00:00:00", "2150-01-05 10:00:00", "Not in cohort."),
]
RADIOLOGY = [
    ("10000032-RR-14", 10000032, 22595853, "RR", 14, "2180-05-06 21:30:00", "2180-05-06 23:05:00",
     "EXAMINATION: CHEST (PA AND LAT)\nIMPRESSION: Cardiomegaly."),
    ("10000032-RR-15", 10000032, None, "RR", 15, "2180-06-26 04:50:00", None, "Portable chest: line in place."),
    ("10000764-RR-2", 10000764, None, "AR", 2, "2132-08-22", None, "Addendum: no acute process."),
]


def T(s: str) -> datetime:
    """'2180-05-06 21:30:14.531' -> datetime."""
    return datetime.fromisoformat(s)


def make_mimic_cohort(root: Path) -> Path:
    """A two-shard MEDS cohort with MIMIC-IV-style codes for the subjects of SHARDS (no text_value column).

    Returns:
        root
    """
    root = Path(root)
    events = {
        10000032: [(None, "GENDER//F"), ("2180-05-06 19:17:00", "HOSPITAL_ADMISSION//EW EMER."),
                   ("2180-05-07 17:15:00", "HOSPITAL_DISCHARGE//HOME"), ("2180-06-26 18:27:00", "HOSPITAL_ADMISSION//EU")],
        10000764: [(None, "GENDER//M"), ("2132-08-22 05:00:00", "LAB//50912//mg/dL")],
        11000011: [(None, "GENDER//F"), ("2160-01-01 08:00:00", "HOSPITAL_ADMISSION//URGENT")],
    }
    for shard in sorted(set(SHARDS.values())):
        rows = [(s, T(t) if t else None, c) for s, evs in events.items() if SHARDS[s] == shard for t, c in evs]
        df = pl.DataFrame({"subject_id": [r[0] for r in rows], "time": [r[1] for r in rows],
                           "code": [r[2] for r in rows], "numeric_value": [1.1 if "LAB" in r[2] else None for r in rows]},
                          schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                  "numeric_value": pl.Float32}).sort("subject_id", "time", nulls_last=False)
        (root / "data" / shard).parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(root / "data" / f"{shard}.parquet")
    (root / "metadata").mkdir()
    pl.DataFrame({"subject_id": list(SHARDS), "split": [v.split("/")[0] for v in SHARDS.values()]},
                 schema={"subject_id": pl.Int64, "split": pl.String}).write_parquet(root / "metadata" / "subject_splits.parquet")
    codes = sorted({c for evs in events.values() for _, c in evs})
    pl.DataFrame({"code": codes, "description": codes, "parent_codes": [[] for _ in codes]},
                 schema={"code": pl.String, "description": pl.String, "parent_codes": pl.List(pl.String)}
                 ).write_parquet(root / "metadata" / "codes.parquet")
    (root / "metadata" / "dataset.json").write_text('{"dataset_name": "MIMIC-IV", "etl_name": "fixture"}')
    preds = {"cxr_study": {"code": "CXR//STUDY"}, "death": {"code": "MEDS_DEATH"}}
    preds |= {f"cxr_{f.lower().replace(' ', '_')}": {"code": f"CXR//FINDING//{f.replace(' ', '_')}"} for f in FINDINGS}
    (root / "predicates.yaml").write_text(yaml.safe_dump(preds))
    return root


def write_csv_gz(path: Path, df: pl.DataFrame) -> None:
    """Write a gzipped CSV the way PhysioNet ships them (header row, empty cells for missing values)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    df.write_csv(buf)
    path.write_bytes(gzip.compress(buf.getvalue(), mtime=0))


def _labels_frame(which: int) -> pl.DataFrame:
    rows = [(sid, st[0], st[which]) for sid, st in STUDIES.items() if st[which] is not None]
    data = {"subject_id": [r[1] for r in rows], "study_id": [r[0] for r in rows]}
    data |= {f: [r[2].get(f) for r in rows] for f in FINDINGS}
    return pl.DataFrame(data, schema={"subject_id": pl.Int64, "study_id": pl.Int64} | {f: pl.Float64 for f in FINDINGS})


def write_mimic_cxr(raw: Path, *, jpgs: bool = True) -> Path:
    """A MIMIC-CXR-JPG tree: metadata, chexpert, negbio and split csv.gz files and (tiny) JPGs.

    Returns:
        raw
    """
    raw = Path(raw)
    rows = [(d, st[0], sid, view, st[1], st[2]) for sid, st in STUDIES.items() for d, view in st[3]]
    meta = pl.DataFrame({
        "dicom_id": [r[0] for r in rows], "subject_id": [r[1] for r in rows], "study_id": [r[2] for r in rows],
        "PerformedProcedureStepDescription": "CHEST (PA AND LAT)", "ViewPosition": [r[3] for r in rows],
        "Rows": 3056, "Columns": 2544, "StudyDate": [r[4] for r in rows], "StudyTime": [r[5] for r in rows],
        "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)", "ViewCodeSequence_CodeMeaning": "postero-anterior",
        "PatientOrientationCodeSequence_CodeMeaning": "Erect"})
    write_csv_gz(raw / "mimic-cxr-2.0.0-metadata.csv.gz", meta)
    write_csv_gz(raw / "mimic-cxr-2.0.0-chexpert.csv.gz", _labels_frame(4))
    write_csv_gz(raw / "mimic-cxr-2.0.0-negbio.csv.gz", _labels_frame(5))
    write_csv_gz(raw / "mimic-cxr-2.0.0-split.csv.gz", meta.select(
        "dicom_id", "study_id", "subject_id", pl.col("study_id").replace_strict(STUDY_SPLITS).alias("split")))
    if jpgs:
        for i, (d, subj, sid, *_rest) in enumerate(rows):
            p = raw / "files" / f"p{str(subj)[:2]}" / f"p{subj}" / f"s{sid}" / f"{d}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8), 10 * i, dtype=np.uint8)).save(p, format="JPEG")
    return raw


def write_mimic_note(raw: Path) -> Path:
    """A MIMIC-IV-Note 2.2 tree: note/{discharge,radiology}.csv.gz and their _detail files.

    Returns:
        raw
    """
    raw = Path(raw)
    cols = ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"]
    schema = {c: (pl.Int64 if c in ("subject_id", "hadm_id", "note_seq") else pl.String) for c in cols}
    for name, rows in (("discharge", DISCHARGE), ("radiology", RADIOLOGY)):
        write_csv_gz(raw / "note" / f"{name}.csv.gz", pl.DataFrame(rows, schema=schema, orient="row"))
        detail = pl.DataFrame({"note_id": [r[0] for r in rows], "subject_id": [r[1] for r in rows],
                               "field_name": "author", "field_value": "___", "field_ordinal": 1})
        write_csv_gz(raw / "note" / f"{name}_detail.csv.gz", detail)
    return raw
