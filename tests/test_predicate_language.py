"""The dataset predicate language: bounds with explicit inclusivity (ACES as the oracle), units and
conversions, unions, resolution through codes.parquet parent codes, and ACES / MEDS-DEV files."""

from __future__ import annotations

import math
from datetime import datetime

import polars as pl
import pytest

from benchmark.errors import UserError
from benchmark.predicate_maps import load_predicate_map
from benchmark.predicates import CodeRule, RuleUnion, resolve_descendants
from benchmark.units import canonical_unit, conversion


def _events(rows):
    return pl.DataFrame(rows, schema={"code": pl.String, "numeric_value": pl.Float32}, orient="row")


EVENTS = _events([("HR", 119.0), ("HR", 120.0), ("HR", 121.0), ("HR", 140.0), ("HR", 141.0), ("HR", None),
                  ("BP", 130.0)])


@pytest.mark.parametrize("lo_inc", [True, False])
@pytest.mark.parametrize("hi_inc", [True, False])
def test_bounds_inclusivity_matches_aces(lo_inc, hi_inc):
    from aces.config import PlainPredicateConfig
    ours = CodeRule(code="HR", value_min=120, value_max=140, value_min_inclusive=lo_inc, value_max_inclusive=hi_inc)
    aces = PlainPredicateConfig("HR", value_min=120, value_max=140, value_min_inclusive=lo_inc,
                                value_max_inclusive=hi_inc)
    got = EVENTS.select(ours.expr())["code"].to_list()
    want = EVENTS.select(aces.MEDS_eval_expr().fill_null(False))["code"].to_list()
    assert got == want
    assert sum(got) == 1 + int(lo_inc) + int(hi_inc)          # 121 always; 120 / 140 by the flags


def test_default_bounds_stay_inclusive():
    r = CodeRule(code="HR", value_min=120, value_max=140)
    assert EVENTS.select(r.expr())["code"].sum() == 3


def test_unit_conversion_fahrenheit_to_celsius_in_a_union():
    ev = _events([("CHART//223761//F", 100.4), ("CHART//223762//C", 38.0), ("CHART//223762//C", 37.0),
                  ("CHART//999//C", 39.0)])
    temp = RuleUnion(rules=(CodeRule(code="CHART//223761//F", unit="degF", to_unit="degC"),
                            CodeRule(code="CHART//223762//C", unit="Cel")))
    assert temp.final_unit == "degC"
    vals = ev.select(temp.value_expr())["numeric_value"].to_list()
    assert vals[0] == pytest.approx(38.0, abs=1e-4) and vals[1] == 38.0
    fever = RuleUnion(rules=tuple(r.model_copy(update={"value_min": 38.0}) for r in temp.rules))
    assert ev.select(fever.expr())["code"].to_list() == [True, True, False, False]
    assert ev.select(temp.code_expr())["code"].to_list() == [True, True, True, False]


def test_union_members_must_end_in_one_unit():
    with pytest.raises(ValueError, match="different units"):
        RuleUnion(rules=(CodeRule(code="a", unit="degF"), CodeRule(code="b", unit="degC")))


def test_unit_in_code_and_explicit_scale():
    ev = _events([("LAB//50912//mg/dL", 1.2), ("LAB//50912//mg/dl", 1.3), ("LAB//50912//umol/L", 106.0),
                  ("LAB//50912//UNK", 1.0)])
    mg = CodeRule(prefix="LAB//50912//", unit="mg/dL", unit_in_code=True)
    assert ev.select(mg.code_expr())["code"].to_list() == [True, True, False, False]
    um = CodeRule(prefix="LAB//50912//", unit="umol/L", unit_in_code=True, to_unit="mg/dL", scale=1 / 88.42)
    v = ev.select(um.value_expr())["numeric_value"][2]
    assert v == pytest.approx(106.0 / 88.42, rel=1e-6)
    anc = CodeRule(code="ANC", unit="K/uL", to_unit="/uL", value_max=500, value_max_inclusive=False)
    assert _events([("ANC", 0.4), ("ANC", 0.5), ("ANC", 2.0)]).select(anc.expr())["code"].to_list() == \
        [True, False, False]


def test_unit_table_closed_forms():
    assert canonical_unit("°F") == "degF" and canonical_unit("10^3/uL") == "K/uL"
    s, o = conversion("degF", "degC")
    assert 212 * s + o == pytest.approx(100.0) and 32 * s + o == pytest.approx(0.0)
    s2, o2 = conversion("degC", "degF")
    assert (37 * s2 + o2) * s + o == pytest.approx(37.0)
    with pytest.raises(ValueError, match="known units"):
        canonical_unit("furlongs")
    with pytest.raises(ValueError, match="scale"):
        conversion("mmol/L", "mg/dL")


def test_descendants_of_resolves_through_parent_codes(tmp_path):
    codes = pl.DataFrame({"code": ["ICD10CM/C78", "ICD10CM/C78.0", "ICD10CM/C78.01", "ICD10CM/C79.9", "LOINC/751-8"],
                          "parent_codes": [None, ["ICD10CM/C78"], ["ICD10CM/C78.0"], ["ICD10CM/C79"], None]},
                         schema={"code": pl.String, "parent_codes": pl.List(pl.String)})
    f = tmp_path / "codes.parquet"
    codes.write_parquet(f)
    rules = {"mets": CodeRule(descendants_of="ICD10CM/C78"), "anc": CodeRule(code="LOINC/751-8")}
    with pytest.raises(RuntimeError, match="resolve"):
        rules["mets"].code_expr()
    out = resolve_descendants(rules, f)
    assert out["mets"].any_of == ("ICD10CM/C78", "ICD10CM/C78.0", "ICD10CM/C78.01")
    assert out["anc"] is rules["anc"]
    assert resolve_descendants(rules, tmp_path / "absent.parquet")["mets"].any_of == ("ICD10CM/C78",)


def test_our_yaml_lists_unions_and_unknown_units(tmp_path):
    f = tmp_path / "predicates.yaml"
    f.write_text("temperature:\n  - {code: T_F, unit: degF, to_unit: degC}\n  - {code: T_C, unit: degC}\n"
                 "mi: {code: MI}\nstroke: {prefix: STROKE/}\nmace_event: {any_of_predicates: [mi, stroke]}\n")
    rules = load_predicate_map(f)
    assert isinstance(rules["temperature"], RuleUnion) and rules["temperature"].final_unit == "degC"
    assert [r.code or r.prefix for r in rules["mace_event"].rules] == ["MI", "STROKE/"]
    f.write_text("a: {any_of_predicates: [b]}\nb: {any_of_predicates: [a]}\n")
    with pytest.raises(UserError, match="cycle"):
        load_predicate_map(f)
    f.write_text("temp: {code: T, unit: kelvins}\n")
    with pytest.raises(UserError) as e:
        load_predicate_map(f)
    assert "kelvins" in str(e.value) and "temp" in str(e.value)


MEDS_DEV_MIMIC = """\
predicates:
  hospital_admission:
    code: { regex: "^HOSPITAL_ADMISSION//.*" }
  icu_admission:
    code: { regex: "^ICU_ADMISSION//.*" }
  creatinine_mgdl:
    code: { any: ["LAB//50912//mg/dL", "LAB//52546//mg/dL"] }
  high_cr:
    code: "LAB//50912//mg/dL"
    value_min: 1.5
  either:
    expr: or(icu_admission, hospital_admission)
metadata:
  description: A MEDS version of MIMIC-IV.
"""


def test_aces_meds_dev_predicates_file_is_read(tmp_path):
    """MEDS-DEV's dataset predicates file (ACES layout) loads; ACES bounds default to exclusive."""
    f = tmp_path / "predicates.yaml"
    f.write_text(MEDS_DEV_MIMIC)
    rules = load_predicate_map(f)
    assert rules["icu_admission"].regex == "^ICU_ADMISSION//.*"
    assert rules["creatinine_mgdl"].any_of == ("LAB//50912//mg/dL", "LAB//52546//mg/dL")
    assert rules["high_cr"].value_min == 1.5 and rules["high_cr"].value_min_inclusive is False
    assert isinstance(rules["either"], RuleUnion) and len(rules["either"].rules) == 2
    ev = _events([("LAB//50912//mg/dL", 1.5), ("LAB//50912//mg/dL", 1.6)])
    assert ev.select(rules["high_cr"].expr())["code"].to_list() == [False, True]
    f.write_text("predicates:\n  x:\n    expr: and(a, b)\n")
    with pytest.raises(UserError, match="and"):
        load_predicate_map(f)


def test_nan_is_never_inside_a_bound():
    r = CodeRule(code="HR", value_min=0)
    ev = _events([("HR", math.nan), ("HR", None), ("HR", 1.0)])
    assert ev.select(r.expr())["code"].to_list() == [False, False, True]


def test_value_from_text_reads_numbers_written_as_text():
    ev = pl.DataFrame({"code": ["BMI (kg/m2)"] * 4, "numeric_value": [None] * 4,
                       "text_value": ["24.5", " 31 ", "120/80", None]},
                      schema={"code": pl.String, "numeric_value": pl.Float32, "text_value": pl.String})
    bmi = CodeRule(code="BMI (kg/m2)", value_from_text=True, unit="kg/m2", value_min=30)
    assert bmi.reads_text() and not CodeRule(code="x").reads_text()
    assert ev.select(bmi.value_expr())["text_value"].to_list() == [24.5, 31.0, None, None]
    assert ev.select(bmi.expr())["code"].to_list() == [False, True, False, False]


def test_builtin_profiles_load_and_their_maps_parse():
    """Every shipped dataset profile reads, names existing predicate files, and each map parses."""
    from benchmark.data.profiles import available_profiles, load_profile
    profiles = available_profiles()
    assert {"synthetic", "mimic_iv"} <= set(profiles)
    for name, folder in profiles.items():
        prof = load_profile(folder)
        assert prof.name == name
        for v in prof.predicates:
            rules = load_predicate_map(folder / v.file)
            assert rules, name


def test_a_lab_rule_refuses_a_predicate_in_the_wrong_unit(small_cohort, tmp_path):
    """Neutropenic fever compares temperature in degC: a map that states degF without converting
    is refused with the fix; converting with to_unit is accepted and gives the same labels as the
    degC map when the values are the same temperatures."""
    from benchmark.labels import extract_labels
    from benchmark.task_registry import select_tasks
    task = select_tasks("oncology/neutropenic_fever_1y")[0]
    base = dict(small_cohort.predicate_map())
    wrong = {**base, "temperature": CodeRule(code="LOINC/8310-5", unit="degF")}
    with pytest.raises(UserError, match="to_unit: degC"):
        extract_labels(task, small_cohort, dataset_rules=wrong, use_cache=False)
    same = {**base, "temperature": CodeRule(code="LOINC/8310-5", unit="degC", to_unit="Cel")}
    a = extract_labels(task, small_cohort, dataset_rules=base, use_cache=False).labels
    b = extract_labels(task, small_cohort, dataset_rules=same, use_cache=False).labels
    assert a.equals(b) and a["boolean_value"].sum() > 0
