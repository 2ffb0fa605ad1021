"""`validate` on real-data problems (issue 14, item 4): unit plausibility of mapped lab values,
date-aware events after death, and fix hints that name the data's nearest codes.

Planted faults on tiny cohorts (tests/cohort_factory.py) and, where MEDS of the MIMIC-IV demo is
available, the same checks on it (skipped with the reason otherwise).
"""

from __future__ import annotations

import os
import shutil
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml

from benchmark.data.validate import validate_cohort
from tests.cohort_factory import make_cohort

BASE = [(1, "1960-01-01", "MEDS_BIRTH"), (2, "1960-01-01", "MEDS_BIRTH")]


def _cohort(tmp_path: Path, events: list[tuple], predicates: dict) -> Path:
    return make_cohort(tmp_path / "c", BASE + events, {1: "train", 2: "held_out"}, predicates)


def _about(findings, name: str, level: str = "warning") -> list:
    return [f for f in findings if f.field == name and f.level == level]


def _temps(code: str, values: list[float]) -> list[tuple]:
    return [(1 + i % 2, f"2020-01-{1 + i:02d} 08:00", code, v) for i, v in enumerate(values)]


F_VALUES = [98.4, 98.6, 99.1, 101.3, 97.9, 98.2, 100.4, 98.8]


def test_temperature_in_f_mapped_as_c_is_reported(tmp_path):
    """The issue's Must hold: degF values mapped as degC -> a warning naming degF and the exact fix.
    Before: validate printed nothing about it (fever on every temperature row)."""
    root = _cohort(tmp_path, _temps("CHART/TEMP", F_VALUES), {"temperature": {"code": "CHART/TEMP", "unit": "degC"}})
    found = _about(validate_cohort(root), "temperature")
    assert len(found) == 1, [f.render() for f in validate_cohort(root)]
    msg = found[0].message + found[0].fix
    assert "mapped as degC but its median is 98.7" in msg and "look like degF" in msg
    assert "set `unit: degF, to_unit: degC` on the rule in" in found[0].fix
    assert "predicates.yaml" in found[0].fix


def test_temperature_in_f_mapped_correctly_is_quiet(tmp_path):
    root = _cohort(tmp_path, _temps("CHART/TEMP", F_VALUES),
                   {"temperature": {"code": "CHART/TEMP", "unit": "degF", "to_unit": "degC"}})
    assert _about(validate_cohort(root), "temperature") == []
    assert _about(validate_cohort(root), "temperature", "info") == []


def test_temperature_union_names_the_wrong_member(tmp_path):
    events = _temps("CHART/TEMP_F", F_VALUES) + _temps("CHART/TEMP_C", [36.8, 37.0, 38.5, 36.5, 37.2])
    preds = {"temperature": [{"code": "CHART/TEMP_F", "unit": "degC"}, {"code": "CHART/TEMP_C", "unit": "degC"}]}
    found = _about(validate_cohort(_cohort(tmp_path, events, preds)), "temperature")
    assert len(found) == 1 and "(rule 1 of 2)" in found[0].message and "degF" in found[0].message


def test_anc_in_k_per_ul_mapped_as_cells_per_ul(tmp_path):
    """The issue's reproduction: ANC in K/uL read as /uL (every value < 500: neutropenic fever in 33/100)."""
    anc = [(1 + i % 2, f"2020-02-{1 + i:02d} 08:00", "LAB//RESULT//52075//K/uL", v)
           for i, v in enumerate([1.8, 6.1, 3.2, 0.4, 4.4, 2.9])]
    root = _cohort(tmp_path, anc, {"anc": {"code": "LAB//RESULT//52075//K/uL", "unit": "/uL"}})
    found = _about(validate_cohort(root), "anc")
    assert len(found) == 1 and "look like K/uL" in found[0].message
    assert "`unit: K/uL, to_unit: /uL`" in found[0].fix
    # no unit at all: the neutropenic fever task compares ANC in /uL -> warned with the same fix
    root2 = make_cohort(tmp_path / "c2", BASE + anc, {1: "train", 2: "held_out"},
                        {"anc": {"code": "LAB//RESULT//52075//K/uL"}})
    found = _about(validate_cohort(root2), "anc")
    assert len(found) == 1 and "has no unit" in found[0].message and "neutropenic_fever" in found[0].message
    assert "`unit: K/uL, to_unit: /uL`" in found[0].fix


def test_lab_predicate_without_unit_and_few_values_still_warned(tmp_path):
    root = _cohort(tmp_path, [(1, "2020-01-02", "LOINC/2160-0", 1.0)], {"creatinine": {"code": "LOINC/2160-0"}})
    found = _about(validate_cohort(root), "creatinine")
    assert len(found) == 1 and "states no unit" in found[0].message and "mg/dL" in found[0].message


def test_creatinine_in_umol_fix_gives_the_scale(tmp_path):
    cr = [(1 + i % 2, f"2020-03-{1 + i:02d}", "LOINC/2160-0", v) for i, v in enumerate([88.0, 97.0, 150.0, 70.0, 110.0])]
    root = _cohort(tmp_path, cr, {"creatinine": {"code": "LOINC/2160-0", "unit": "mg/dL"}})
    found = _about(validate_cohort(root), "creatinine")
    assert len(found) == 1 and "look like umol/L" in found[0].message
    assert "`unit: umol/L, to_unit: mg/dL, scale: 0.01131" in found[0].fix


def test_implausible_single_values_are_counted(tmp_path):
    """One BMI of 4649 among plausible ones: an info with the count; many: a warning."""
    bmi = [(1 + i % 2, (date(2020, 1, 1) + timedelta(days=i)).isoformat(), "BMI", v)
           for i, v in enumerate([24.5, 31.0, 22.1, 4649.4] + [25.0] * 200)]
    root = _cohort(tmp_path, bmi, {"bmi": {"code": "BMI", "unit": "kg/m2"}})
    findings = validate_cohort(root)
    info = _about(findings, "bmi", "info")
    assert len(info) == 1 and "1 of 204 values" in info[0].message and "4649.4" in info[0].message
    assert _about(findings, "bmi") == []
    bad = [(1, f"2021-05-{1 + i:02d}", "BMI", 4000.0) for i in range(5)]
    root2 = make_cohort(tmp_path / "c2", BASE + bmi + bad, {1: "train", 2: "held_out"},
                        {"bmi": {"code": "BMI", "unit": "kg/m2"}})
    assert len(_about(validate_cohort(root2), "bmi")) == 1


def _after_death(findings) -> list:
    return [f for f in findings if f.field == "time" and "MEDS_DEATH" in f.message]


def test_date_only_death_allows_its_whole_day(tmp_path):
    """A death at 00:00 is date-only: an event at 12:00 the next day is at most 36 h after the start
    of the death day but only 12 h after its end -> not reported (the old check reported it: it
    counted from 00:00). A timed death with an event 26 h later is reported."""
    ev = [(1, "2020-01-01 00:00", "MEDS_DEATH"), (1, "2020-01-02 12:00", "LAB/X", 1.0)]
    root = _cohort(tmp_path, ev, {"death": {"code": "MEDS_DEATH"}})
    assert _after_death(validate_cohort(root)) == []
    ev = [(1, "2020-01-01 10:00", "MEDS_DEATH"), (1, "2020-01-02 12:00", "LAB/X", 1.0),
          (2, "2020-01-01 00:00", "MEDS_DEATH"), (2, "2020-01-03 12:00", "LAB/X", 1.0)]
    root = make_cohort(tmp_path / "c2", BASE + ev, {1: "train", 2: "held_out"}, {"death": {"code": "MEDS_DEATH"}})
    found = _after_death(validate_cohort(root))
    assert len(found) == 1 and "2 events of 2 subjects" in found[0].message
    assert "1 of these subjects have a date-only death" in found[0].message and "date-only" in found[0].fix


def test_wrong_code_style_hint_names_the_data_code(tmp_path):
    """The map says LAB//50912//mg/dL, the ETL writes LAB//RESULT//50912//mg/dL: the hint names the
    data's code and its style (before: 'MEDS codes look like LOINC/2160-0', the wrong way)."""
    cr = [(1, "2020-01-02", "LAB//RESULT//50912//mg/dL", 1.0), (1, "2020-01-02", "LAB//RESULT//50971//mEq/L", 4.0)]
    root = _cohort(tmp_path, cr, {"creatinine": {"code": "LAB//50912//mg/dL", "unit": "mg/dL"}})
    found = [f for f in _about(validate_cohort(root), "creatinine") if "matches no code" in f.message]
    assert len(found) == 1
    assert "did you mean LAB//RESULT//50912//mg/dL" in found[0].message
    assert "the data writes LAB//RESULT//<itemid>//<unit>, the map LAB//<itemid>//<unit>" in found[0].message
    assert "LOINC/2160-0" not in found[0].render()


def test_unmatched_without_near_code_are_grouped(tmp_path):
    preds = {"cxr_study": {"code": "CXR//STUDY"}, "radiology_note": {"code": "NOTE//RADIOLOGY"},
             "death": {"code": "MEDS_DEATH"}}
    root = _cohort(tmp_path, [(1, "2020-01-02", "DIAGNOSIS//ICD//10//E119")], preds)
    found = [f for f in validate_cohort(root) if "matches no code" in f.message]
    assert len(found) == 1 and "'cxr_study'" in found[0].message and "'radiology_note'" in found[0].message
    assert "DIAGNOSIS//ICD//10//E119" in found[0].fix


def test_descendants_of_rule_is_resolved_not_crashing(tmp_path):
    root = _cohort(tmp_path, [(1, "2020-01-02", "ICD10CM/E11.9")], {"t2d": {"descendants_of": "ICD10CM/E11"}})
    pl.DataFrame({"code": ["ICD10CM/E11.9"], "description": ["T2D"], "parent_codes": [["ICD10CM/E11"]]}
                 ).write_parquet(root / "metadata" / "codes.parquet")
    assert not [f for f in validate_cohort(root) if f.level == "error"]


# ---------------------------------------------------------------------------- MIMIC-IV demo MEDS
@pytest.fixture(scope="module")
def mimic_meds(request) -> Path:
    """MEDS of the MIMIC-IV demo (ETL 0.2.x): the shared fixture once it exists, else
    $MEHR_BENCH_MIMIC_MEDS (a MEDS folder, or a folder holding 0.2.0/)."""
    try:
        return Path(request.getfixturevalue("mimic_meds_020"))
    except pytest.FixtureLookupError:
        pass
    env = os.environ.get("MEHR_BENCH_MIMIC_MEDS")
    if not env:
        pytest.skip("MIMIC-IV demo MEDS not available: set MEHR_BENCH_MIMIC_MEDS")
    root = Path(env) / "0.2.0" if (Path(env) / "0.2.0").is_dir() else Path(env)
    if not (root / "data").is_dir():
        pytest.skip(f"MEHR_BENCH_MIMIC_MEDS={env} holds no MEDS data folder")
    return root


PROFILE_MAP = Path(__file__).resolve().parents[1] / "data_prep" / "datasets" / "mimic_iv" / "predicates.yaml"


def test_mimic_demo_validates_without_errors(mimic_meds):
    findings = validate_cohort(mimic_meds, PROFILE_MAP)
    assert not [f for f in findings if f.level == "error"], [f.render() for f in findings]
    # the shipped map's lab units fit the data: no unit warning on any lab predicate
    labs = ("creatinine", "anc", "hemoglobin", "platelets", "wbc", "lactate", "glucose", "hba1c", "bmi")
    assert not [f for f in findings if f.field in labs and f.level == "warning"], [f.render() for f in findings]


def test_mimic_demo_anc_as_cells_per_ul_warns(mimic_meds, tmp_path):
    """The issue's reproduction on the demo: ANC (itemid 52075, K/uL) mapped as /uL."""
    pf = tmp_path / "predicates.yaml"
    pf.write_text(yaml.safe_dump({"anc": {"regex": "^LAB//RESULT//52075//", "unit": "/uL"}}))
    found = _about(validate_cohort(mimic_meds, pf), "anc")
    assert len(found) == 1 and "look like K/uL" in found[0].message, [f.render() for f in found]


def test_mimic_demo_planted_fahrenheit(mimic_meds, tmp_path):
    """A copy of the demo MEDS with chart temperatures (degF values) mapped as degC -> reported."""
    root = tmp_path / "mimic"
    shutil.copytree(mimic_meds, root)
    shard = sorted((root / "data" / "train").glob("*.parquet"))[0]
    df = pl.read_parquet(shard)
    sid = df["subject_id"][0]
    t0 = df.filter(pl.col("subject_id") == sid)["time"].drop_nulls().max()
    rows = df.filter(pl.col("subject_id") == sid).head(len(F_VALUES)).with_columns(
        pl.lit("LAB//223762//degC").alias("code"), pl.Series("numeric_value", F_VALUES, pl.Float32),
        pl.lit(t0).alias("time"))
    pl.concat([df, rows]).sort("subject_id", "time", nulls_last=False, maintain_order=True).write_parquet(shard)
    found = _about(validate_cohort(root, PROFILE_MAP), "temperature")
    assert len(found) == 1 and "look like degF" in found[0].message, [f.render() for f in found]
