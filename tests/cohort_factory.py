"""Build tiny hand-written MEDS cohorts for tests (exact, hand-checkable labels)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import yaml

SYNTHETIC_LIKE_PREDICATES = {
    "death": {"code": "MEDS_DEATH"},
    "cancer_diagnosis": {"prefix": "ICD10CM/C34"},
    "cancer_treatment": {"any_of": ["RXNORM/2555", "RXNORM/40048"]},
    "metastasis": {"prefix": ["ICD10CM/C77", "ICD10CM/C78", "ICD10CM/C79"]},
    "progression": {"code": "ONCOLOGY/PROGRESSION"},
    "creatinine": {"code": "LOINC/2160-0"},
    "anc": {"code": "LOINC/751-8"},
    "temperature": {"code": "LOINC/8310-5"},
    "transfusion": {"prefix": "ICD10PCS/30233"},
    "icu_admission": {"code": "ICU_ADMISSION"},
    "icu_discharge": {"code": "ICU_DISCHARGE"},
    "t2d": {"prefix": "ICD10CM/E11"},
    "cardiac_ct": {"code": "IMAGING/CARDIAC_CT"},
    "mace_event": {"prefix": ["ICD10CM/I21", "ICD10CM/I63"]},
    "mi": {"prefix": ["ICD10CM/I21", "ICD10CM/I22"]},
    "ischemic_stroke": {"prefix": "ICD10CM/I63"},
    "heart_failure_event": {"regex": "^ICD10CM/I50\\.[234][13]$"},
    "cardiac_death": {"regex": "^DEATH_CAUSE/I(2[0-5]|4[6-9]|50)(\\.|$)"},
    "ctpa": {"code": "IMAGING/CTPA"},
    "pe_diagnosis": {"prefix": "ICD10CM/I26"},
    "leak_outcome": {"code": "SYNTH/LEAK_OUTCOME"},
}


def T(s: str) -> datetime:
    """'2020-01-01 10:00' -> datetime."""
    return datetime.fromisoformat(s)


def make_cohort(root: Path, events: list[tuple], splits: dict[int, str] | None = None,
                predicates: dict | None = None, numeric_dtype=pl.Float32) -> Path:
    """Write a one-shard MEDS cohort.

    Args:
        root: folder to create.
        events: (subject_id, time str | None, code, numeric_value | None) tuples.
        splits: subject -> split (default: all train).
        predicates: predicates.yaml content (default SYNTHETIC_LIKE_PREDICATES).
        numeric_dtype: dtype of numeric_value (tests of bad input use Float64).

    Returns:
        root
    """
    root = Path(root)
    (root / "data" / "train").mkdir(parents=True)
    (root / "metadata").mkdir()
    df = pl.DataFrame(
        {"subject_id": [e[0] for e in events],
         "time": [T(e[1]) if e[1] else None for e in events],
         "code": [e[2] for e in events],
         "numeric_value": [e[3] if len(e) > 3 else None for e in events]},
        schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String, "numeric_value": numeric_dtype},
    ).sort("subject_id", "time", nulls_last=False)
    df.write_parquet(root / "data" / "train" / "0.parquet")
    subjects = sorted(set(df["subject_id"].to_list()))
    splits = splits or {s: "train" for s in subjects}
    pl.DataFrame({"subject_id": list(splits), "split": list(splits.values())},
                 schema={"subject_id": pl.Int64, "split": pl.String}).write_parquet(root / "metadata" / "subject_splits.parquet")
    codes = sorted(set(df["code"].to_list()))
    pl.DataFrame({"code": codes, "description": codes, "parent_codes": [[] for _ in codes]},
                 schema={"code": pl.String, "description": pl.String, "parent_codes": pl.List(pl.String)}
                 ).write_parquet(root / "metadata" / "codes.parquet")
    (root / "metadata" / "dataset.json").write_text('{"dataset_name": "test"}')
    (root / "predicates.yaml").write_text(yaml.safe_dump(predicates or SYNTHETIC_LIKE_PREDICATES))
    return root
