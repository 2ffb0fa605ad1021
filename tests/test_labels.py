"""Label extraction on hand-written cohorts whose labels are worked out by hand."""

from __future__ import annotations

import math

import polars as pl
import pytest

from benchmark.data.cohort import Cohort
from benchmark.labels import TaskNotApplicable, extract_labels
from benchmark.task_registry import load_tasks
from benchmark.taskspec import TaskSpec
from tests.cohort_factory import make_cohort

TASKS = load_tasks()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))


def labels_of(task_name: str, cohort: Cohort) -> dict:
    df = extract_labels(TASKS[task_name], cohort).labels
    return {r["subject_id"]: r for r in df.iter_rows(named=True)}


def oncology_cohort(tmp_path):
    ev = [
        # 1: treated 2020-01-01, dies 2020-06-01 -> positive
        (1, None, "GENDER/F"), (1, "1950-01-01", "MEDS_BIRTH"), (1, "2019-12-01", "ICD10CM/C34.90"),
        (1, "2020-01-01", "RXNORM/2555"), (1, "2020-06-01", "MEDS_DEATH"),
        # 2: treated, alive with follow-up past 1 year -> negative
        (2, "2019-11-01", "ICD10CM/C34.90"), (2, "2020-01-01", "RXNORM/40048"), (2, "2021-06-01", "ICD10CM/I10"),
        # 3: treated, record ends after 3 months, not dead -> censored, excluded
        (3, "2019-11-01", "ICD10CM/C34.1"), (3, "2020-01-01", "RXNORM/2555"), (3, "2020-04-01", "ICD10CM/I10"),
        # 4: no cancer diagnosis in the year before treatment -> not included
        (4, "2010-01-01", "ICD10CM/C34.90"), (4, "2020-01-01", "RXNORM/2555"), (4, "2022-01-01", "ICD10CM/I10"),
        # 5: death at 366 days -> outside the window, negative (record covers the window)
        (5, "2019-12-01", "ICD10CM/C34.90"), (5, "2020-01-01", "RXNORM/2555"), (5, "2021-01-01 00:00:01", "MEDS_DEATH"),
        # 6: second treatment later does not move the index; death 300 d after first -> positive
        (6, "2019-12-01", "ICD10CM/C34.90"), (6, "2020-01-01", "RXNORM/2555"), (6, "2020-05-01", "RXNORM/2555"),
        (6, "2020-10-27", "MEDS_DEATH"),
        # 7: death exactly at t + 365d -> positive (window end inclusive)
        (7, "2019-12-01", "ICD10CM/C34.90"), (7, "2020-01-01", "RXNORM/2555"), (7, "2020-12-31", "MEDS_DEATH"),
    ]
    return Cohort(make_cohort(tmp_path / "onc", ev))


def test_mortality_1y_hand_labels(tmp_path):
    lab = labels_of("oncology/mortality_1y", oncology_cohort(tmp_path))
    assert set(lab) == {1, 2, 5, 6, 7}
    assert {s: r["boolean_value"] for s, r in lab.items()} == {1: True, 2: False, 5: False, 6: True, 7: True}
    assert str(lab[1]["prediction_time"]) == "2020-01-01 00:00:00"


def test_labels_conform_to_meds_label_schema(tmp_path):
    import meds
    df = extract_labels(TASKS["oncology/mortality_1y"], oncology_cohort(tmp_path)).labels
    meds.LabelSchema.validate(df.to_arrow())


def test_aki_kdigo_rules(tmp_path):
    ev = [
        (1, "2019-12-01", "ICD10CM/C34.90"), (1, "2020-01-01", "RXNORM/2555"),
        (1, "2020-02-01 08:00", "LOINC/2160-0", 1.0), (1, "2020-02-02 20:00", "LOINC/2160-0", 1.31),  # +0.31 in 36 h
        (1, "2021-02-01", "ICD10CM/I10"),
        (2, "2019-12-01", "ICD10CM/C34.90"), (2, "2020-01-01", "RXNORM/2555"),
        (2, "2020-02-01 08:00", "LOINC/2160-0", 1.0), (2, "2020-02-03 20:00", "LOINC/2160-0", 1.35),  # +0.35 in 60 h: no
        (2, "2021-02-01", "ICD10CM/I10"),
        (3, "2019-12-01", "ICD10CM/C34.90"), (3, "2020-01-01", "RXNORM/2555"),
        (3, "2020-02-01 08:00", "LOINC/2160-0", 0.6), (3, "2020-02-06 08:00", "LOINC/2160-0", 0.9),  # 1.5x in 5 d
        (3, "2021-02-01", "ICD10CM/I10"),
        (4, "2019-12-01", "ICD10CM/C34.90"), (4, "2019-12-30", "LOINC/2160-0", 1.0),
        (4, "2019-12-31 12:00", "LOINC/2160-0", 1.5), (4, "2020-01-01", "RXNORM/2555"),  # AKI before t: not a label
        (4, "2021-02-01", "ICD10CM/I10"),
    ]
    lab = labels_of("oncology/aki_1y", Cohort(make_cohort(tmp_path / "aki", ev)))
    assert {s: r["boolean_value"] for s, r in lab.items()} == {1: True, 2: False, 3: True, 4: False}


def test_neutropenic_fever_rule(tmp_path):
    base = lambda s: [(s, "2019-12-01", "ICD10CM/C34.90"), (s, "2020-01-01", "RXNORM/2555"),  # noqa: E731
                      (s, "2021-06-01", "ICD10CM/I10")]
    ev = [
        *base(1), (1, "2020-02-01 08:00", "LOINC/751-8", 400.0), (1, "2020-02-01 20:00", "LOINC/8310-5", 38.5),
        *base(2), (2, "2020-02-01 08:00", "LOINC/751-8", 400.0), (2, "2020-02-03 08:00", "LOINC/8310-5", 38.5),
        *base(3), (3, "2020-02-01 08:00", "LOINC/8310-5", 38.4), (3, "2020-02-01 23:00", "LOINC/751-8", 450.0),
        *base(4), (4, "2020-02-01 08:00", "LOINC/751-8", 600.0), (4, "2020-02-01 09:00", "LOINC/8310-5", 39.0),
        *base(5), (5, "2020-02-01 08:00", "LOINC/751-8", 100.0), (5, "2020-02-01 09:00", "LOINC/8310-5", 38.2),
    ]
    lab = labels_of("oncology/neutropenic_fever_1y", Cohort(make_cohort(tmp_path / "nf", ev)))
    assert {s: r["boolean_value"] for s, r in lab.items()} == {1: True, 2: False, 3: True, 4: False, 5: False}


def test_icu_tasks_offset_exclusions_and_durations(tmp_path):
    ev = [
        # 1: 5-day stay, alive -> mortality False, LOS 5 d
        (1, "2020-01-01 00:00", "ICU_ADMISSION"), (1, "2020-01-06 00:00", "ICU_DISCHARGE"), (1, "2020-03-01", "ICD10CM/I10"),
        # 2: discharged after 12 h -> excluded from all 24 h tasks
        (2, "2020-01-01 00:00", "ICU_ADMISSION"), (2, "2020-01-01 12:00", "ICU_DISCHARGE"),
        # 3: dies in the ICU at 48 h (death and discharge together) -> mortality True, LOS 2 d
        (3, "2020-01-01 00:00", "ICU_ADMISSION"), (3, "2020-01-03 00:00", "MEDS_DEATH"), (3, "2020-01-03 00:00", "ICU_DISCHARGE"),
        # 4: discharged at 2 d, dies 10 days later -> in-ICU mortality False
        (4, "2020-01-01 00:00", "ICU_ADMISSION"), (4, "2020-01-03 00:00", "ICU_DISCHARGE"), (4, "2020-01-13", "MEDS_DEATH"),
        # 5: dies at 20 h -> excluded
        (5, "2020-01-01 00:00", "ICU_ADMISSION"), (5, "2020-01-01 20:00", "MEDS_DEATH"),
    ]
    c = Cohort(make_cohort(tmp_path / "icu", ev))
    mort = labels_of("icu/mortality_24h", c)
    assert {s: r["boolean_value"] for s, r in mort.items()} == {1: False, 3: True, 4: False}
    assert str(mort[1]["prediction_time"]) == "2020-01-02 00:00:00"
    los = labels_of("icu/los_days_24h", c)
    assert {s: round(r["float_value"], 4) for s, r in los.items()} == {1: 5.0, 3: 2.0, 4: 2.0}
    gt3 = labels_of("icu/los_gt3d_24h", c)
    assert {s: r["boolean_value"] for s, r in gt3.items()} == {1: True, 3: False, 4: False}


def test_survival_censoring_and_competing_death(tmp_path):
    ev = [
        (1, "2020-01-01", "IMAGING/CARDIAC_CT"), (1, "2021-01-01", "ICD10CM/I21.9"), (1, "2022-01-01", "ICD10CM/I10"),
        (2, "2020-01-01", "IMAGING/CARDIAC_CT"), (2, "2020-07-01", "MEDS_DEATH"),           # censored at death
        (3, "2020-01-01", "IMAGING/CARDIAC_CT"), (3, "2030-01-01", "ICD10CM/I10"),          # censored at horizon
        (4, "2020-01-01", "IMAGING/CARDIAC_CT"), (4, "2020-03-01", "ICD10CM/I10"),          # censored at record end
        (5, "2019-01-01", "ICD10CM/I63.9"), (5, "2020-01-01", "IMAGING/CARDIAC_CT"), (5, "2021-01-01", "ICD10CM/I10"),
    ]
    lab = labels_of("survival/mace", Cohort(make_cohort(tmp_path / "mace", ev)))
    assert set(lab) == {1, 2, 3, 4}  # 5 had MACE before: excluded
    got = {s: (r["boolean_value"], round(r["float_value"], 3)) for s, r in lab.items()}
    assert got == {1: (True, 366.0), 2: (False, 182.0), 3: (False, 1825.0), 4: (False, 60.0)}


def test_multilabel_bitmask(tmp_path):
    preds = {"cxr_study": {"code": "IMAGING/CXR"},
             **{f"cxr_{n}": {"code": f"CXR_FINDING/{n}"} for n in (
                 "atelectasis cardiomegaly consolidation edema enlarged_cardiomediastinum fracture lung_lesion "
                 "lung_opacity no_finding pleural_effusion pleural_other pneumonia pneumothorax support_devices").split()}}
    ev = [(1, "2020-01-01 10:00", "IMAGING/CXR"), (1, "2020-01-01 12:00", "CXR_FINDING/atelectasis"),
          (1, "2020-01-01 12:00", "CXR_FINDING/edema"),
          (1, "2020-03-01 10:00", "IMAGING/CXR"), (1, "2020-03-01 12:00", "CXR_FINDING/no_finding"),
          (2, "2020-01-01 10:00", "IMAGING/CXR"), (2, "2020-01-03 12:00", "CXR_FINDING/edema")]  # outside 24 h
    c = Cohort(make_cohort(tmp_path / "cxr", ev, predicates=preds))
    ls = extract_labels(TASKS["cxr/chexpert_multilabel"], c)
    m = ls.multilabel_matrix()
    names = TASKS["cxr/chexpert_multilabel"].label_names()
    assert m.shape == (3, 14)
    assert [names[i] for i in m[0].nonzero()[0]] == ["atelectasis", "edema"]
    assert [names[i] for i in m[1].nonzero()[0]] == ["no_finding"]
    assert m[2].sum() == 0


def test_missing_predicate_makes_task_not_applicable(tmp_path):
    c = Cohort(make_cohort(tmp_path / "x", [(1, "2020-01-01", "RXNORM/2555")], predicates={"death": {"code": "MEDS_DEATH"}}))
    with pytest.raises(TaskNotApplicable) as e:
        extract_labels(TASKS["oncology/aki_1y"], c)
    assert "creatinine" in e.value.missing and "cancer_treatment" in e.value.missing


def test_predicate_matching_nothing_warns(tmp_path):
    c = oncology_cohort(tmp_path)
    with pytest.warns(UserWarning, match="progression"):
        extract_labels(TASKS["oncology/progression_free_survival_1y"], c)


def test_cache_is_used_and_keyed_by_data(tmp_path):
    c = oncology_cohort(tmp_path)
    a = extract_labels(TASKS["oncology/mortality_1y"], c)
    b = extract_labels(TASKS["oncology/mortality_1y"], c)
    assert a.cache_file == b.cache_file and a.cache_file.exists()
    assert a.labels.equals(b.labels)
    c2 = Cohort(make_cohort(tmp_path / "other", [(1, "2019-12-01", "ICD10CM/C34.9"), (1, "2020-01-01", "RXNORM/2555"),
                                                  (1, "2020-02-01", "MEDS_DEATH")]))
    assert extract_labels(TASKS["oncology/mortality_1y"], c2).cache_file != a.cache_file


def test_record_start_index_skips_birth_only_subjects(tmp_path):
    """A subject whose only timed event is MEDS_BIRTH has no record start, hence no sample."""
    t2d = TASKS["onset/t2d_10y"]  # at the first record itself (no washout offset, no washout exclusions)
    spec = t2d.model_copy(update={
        "index": t2d.index.model_copy(update={"offset": "0"}), "predicates": {},
        "exclusion": tuple(c for c in t2d.exclusion if c.predicate == "t2d"),
        "label": t2d.label.model_copy(update={"censoring": "negative"})})
    ev = [(1, "1990-01-01", "MEDS_BIRTH"), (2, "1990-01-01", "MEDS_BIRTH"), (2, "2000-01-01", "ICD10CM/I10")]
    df = extract_labels(spec, Cohort(make_cohort(tmp_path / "b", ev))).labels
    assert df["subject_id"].to_list() == [2]
    assert df["prediction_time"].null_count() == 0
    assert str(df["prediction_time"][0]) == "2000-01-01 00:00:00"
