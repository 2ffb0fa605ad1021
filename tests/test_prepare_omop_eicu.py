"""`prepare omop` / `prepare eicu`: community ETLs (meds_etl, eICU_MEDS) in their own venvs on tiny raw
fixtures in the published layouts (tests/omop_eicu_fixtures.py), and the refusals of bad input.

The ETL tests build the ETL's venv on first use (PyPI or a local wheel folder); where it cannot be
built offline they skip with the reason. Set MEHR_BENCH_ETL_CACHE to share the venvs between runs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest

from benchmark.data.cohort import Cohort
from benchmark.data.integrity import integrity_findings
from benchmark.data.profiles import resolve_profile
from benchmark.errors import UserError
from benchmark.labels import extract_labels
from benchmark.task_registry import load_tasks
from tests.omop_eicu_fixtures import EICU_EXPECTED, OMOP_EXPECTED, write_eicu, write_omop


def _venv_or_skip(build):
    """Run a venv-building prepare; skip (with pip's reason) where the venv cannot be built here."""
    try:
        return build()
    except UserError as e:
        if "could not pip install" in str(e) or "could not create the venv" in str(e):
            pytest.skip(f"ETL venv cannot be built here (offline?): {str(e).splitlines()[0]}")
        raise


def _labels(cohort_dir, task: str) -> dict[int, bool]:
    ls = extract_labels(load_tasks()[task], Cohort(cohort_dir), use_cache=False)
    df = ls.labels if hasattr(ls, "labels") else ls
    return dict(zip(df["subject_id"].to_list(), df["boolean_value"].to_list()))


# ---------------------------------------------------------------------------- OMOP
@pytest.fixture(scope="module")
def omop_cohort(tmp_path_factory):
    from data_prep.omop import prepare_omop
    root = tmp_path_factory.mktemp("omop")
    raw = write_omop(root / "raw", gz=True)
    summary = _venv_or_skip(lambda: prepare_omop(raw, root / "cohort", log=lambda _: None))
    return summary


def test_prepare_omop_gives_a_valid_cohort_recognised_by_the_omop_profile(omop_cohort):
    out = omop_cohort.out
    assert omop_cohort.n_subjects == OMOP_EXPECTED["n_subjects"]
    assert [f for f in integrity_findings(out) if f.level == "error"] == []
    meta = json.loads((out / "metadata" / "dataset.json").read_text())
    assert meta["etl_name"] == "meds_etl.omop" and meta["dataset_name"].startswith("OMOP")
    assert resolve_profile(out).name == "omop"
    splits = pl.read_parquet(out / "metadata" / "subject_splits.parquet")
    assert splits.height == OMOP_EXPECTED["n_subjects"] and set(splits["split"]) <= {"train", "tuning", "held_out"}


def test_omop_demographics_are_groups_not_vocabulary_codes(omop_cohort):
    demo = Cohort(omop_cohort.out).demographics().sort("subject_id")
    assert demo["sex"].to_list() == ["F", "M", "F", "M", "F", "M"]
    assert demo["race"].to_list() == ["WHITE", "BLACK", "WHITE", "WHITE", "ASIAN", "WHITE"]


def test_omop_codes_metadata_links_icd_to_snomed(omop_cohort):
    codes = pl.read_parquet(omop_cohort.out / "metadata" / "codes.parquet")
    row = codes.filter(pl.col("code") == "ICD10CM/C34.90").row(0, named=True)
    assert row["description"].startswith("Malignant neoplasm")
    assert {"SNOMED/93880001", "SNOMED/372087000"} <= set(row["parent_codes"])


def test_omop_mortality_1y_labels_equal_the_hand_count(omop_cohort):
    assert _labels(omop_cohort.out, "oncology/mortality_1y") == OMOP_EXPECTED["mortality_1y"]


def test_prepare_omop_refuses_a_folder_without_the_person_table(tmp_path):
    from data_prep.omop import prepare_omop
    raw = write_omop(tmp_path / "raw", omit=("person",))
    with pytest.raises(UserError) as e:
        prepare_omop(raw, tmp_path / "out")
    assert "person" in str(e.value) and "--raw" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_prepare_omop_refuses_a_non_empty_out(tmp_path):
    from data_prep.omop import prepare_omop
    raw = write_omop(tmp_path / "raw")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        prepare_omop(raw, tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_cli_prepare_omop_bad_raw_exits_2_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmark", "prepare", "omop", "--raw", str(tmp_path / "nope"),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "--raw" in proc.stderr


# ---------------------------------------------------------------------------- eICU
@pytest.fixture(scope="module")
def eicu_cohort(tmp_path_factory):
    from data_prep.eicu import prepare_eicu
    root = tmp_path_factory.mktemp("eicu")
    raw = write_eicu(root / "raw")
    return _venv_or_skip(lambda: prepare_eicu(raw, root / "cohort", log=lambda _: None))


def test_prepare_eicu_gives_a_valid_cohort_recognised_by_the_eicu_profile(eicu_cohort):
    out = eicu_cohort.out
    assert eicu_cohort.n_subjects == EICU_EXPECTED["n_subjects"]
    assert [f for f in integrity_findings(out) if f.level == "error"] == []
    assert resolve_profile(out).name == "eicu"
    demo = Cohort(out).demographics().sort("subject_id")
    assert demo["sex"].to_list() == ["F", "M", "F", "M", "M"]
    assert demo["race"].to_list() == ["WHITE", "BLACK", "WHITE", "HISPANIC/LATINO", "WHITE"]


def test_eicu_icu_mortality_24h_labels_equal_the_hand_count(eicu_cohort):
    assert _labels(eicu_cohort.out, "icu/mortality_24h") == EICU_EXPECTED["mortality_24h"]


def test_prepare_eicu_refuses_a_folder_without_the_lab_table(tmp_path):
    from data_prep.eicu import prepare_eicu
    raw = write_eicu(tmp_path / "raw", omit=("lab",))
    with pytest.raises(UserError) as e:
        prepare_eicu(raw, tmp_path / "out")
    assert "lab.csv.gz" in str(e.value) and "--raw" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_prepare_eicu_tells_to_gzip_a_plain_csv(tmp_path):
    import gzip
    import shutil as sh
    from data_prep.eicu import prepare_eicu
    raw = write_eicu(tmp_path / "raw")
    with gzip.open(raw / "patient.csv.gz", "rb") as src, open(raw / "patient.csv", "wb") as dst:
        sh.copyfileobj(src, dst)
    (raw / "patient.csv.gz").unlink()
    with pytest.raises(UserError, match="gzip"):
        prepare_eicu(raw, tmp_path / "out")
