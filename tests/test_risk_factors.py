"""The task key `risk_factors` and the curated binarized EHR vector (benchmark.features.risk_factors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from benchmark.data.cohort import Cohort
from benchmark.errors import UserError
from benchmark.features.risk_factors import risk_factor_matrix
from benchmark.model_api import TaskData
from benchmark.task_registry import load_tasks
from benchmark.taskspec import load_task_file
from tests.cohort_factory import SYNTHETIC_LIKE_PREDICATES, T, make_cohort

PREDICATES = {**SYNTHETIC_LIKE_PREDICATES, "hypertension": {"code": "ICD10CM/I10"},
              "mi": {"prefix": ["ICD10CM/I21", "ICD10CM/I22"]}}
FACTORS = [
    {"name": "age_65_plus", "age_min": 65},
    {"name": "male", "sex": "male"},
    {"name": "hypertension", "predicate": "hypertension"},
    {"name": "htn_recent", "predicate": "hypertension", "window": {"start": "-180d", "end": "0"}},
    {"name": "creatinine_high", "predicate": "creatinine", "value_min": 1.5, "window": {"start": "-365d", "end": "0"}},
    {"name": "prior_mi", "predicate": "mi"},
    {"name": "smoking", "predicate": "smoking"},          # not in the cohort's map: a column of zeros
]
# subject 1: two samples; subject 2 sits on the window boundaries; subject 3 has no sex and no birth
EVENTS = [
    (1, None, "GENDER/M"), (1, "1949-06-01", "MEDS_BIRTH"),
    (1, "2019-06-01", "ICD10CM/I10"),
    (1, "2019-12-01", "LOINC/2160-0", 2.0), (1, "2019-12-20", "LOINC/2160-0", 1.0),   # the last value counts
    (1, "2020-01-02", "LOINC/2160-0", 3.0),                                              # after sample 1's t
    (1, "2020-02-01", "ICD10CM/I21.4"),                                                   # after sample 1's t
    (2, None, "GENDER/F"), (2, "1980-03-01", "MEDS_BIRTH"),
    (2, "2019-07-05", "ICD10CM/I10"),                 # exactly t - 180d: outside the half-open window
    (2, "2018-01-01", "ICD10CM/I21.9"),
    (2, "2019-12-31", "LOINC/2160-0", 1.6),
    (3, "2020-01-01", "ICD10CM/I10"),                 # exactly at t: inside
    (3, "2019-01-01", "LOINC/2160-0", 0.9),
]
SAMPLES = [(1, "2020-01-01"), (1, "2020-03-01"), (2, "2020-01-01"), (3, "2020-01-01")]
#                age65 male htn recent creat mi smoking
EXPECTED = np.array([[1, 1, 1, 0, 0, 0, 0],      # 1 @ 2020-01-01: 70.6 y; last creatinine 1.0; MI later
                     [1, 1, 1, 0, 1, 1, 0],      # 1 @ 2020-03-01: creatinine 3.0 and the MI are now past
                     [0, 0, 1, 0, 1, 1, 0],      # 2: 39.8 y; I10 at the window's open start
                     [0, 0, 1, 1, 0, 0, 0]],     # 3: no sex, no birth; I10 at t
                    dtype=np.float32)



def _data(root: Path, events, work: Path, factors=FACTORS) -> TaskData:
    make_cohort(root, events, predicates=PREDICATES)
    task = load_tasks()["survival/mace"]
    task = type(task).model_validate({**task.model_dump(), "risk_factors": factors})
    labels = pl.DataFrame({"subject_id": [s for s, _ in SAMPLES], "prediction_time": [T(t) for _, t in SAMPLES],
                           "float_value": [100.0] * 4, "boolean_value": [False] * 4, "split": ["train"] * 4},
                          schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"),
                                  "float_value": pl.Float32, "boolean_value": pl.Boolean, "split": pl.String})
    work.mkdir(parents=True, exist_ok=True)
    return TaskData(task=task, cohort=Cohort(root), labels=labels, seed=0, work_dir=work)


def test_hand_computed_one_hot(tmp_path, cache):
    rf = risk_factor_matrix(_data(tmp_path / "c", EVENTS, tmp_path / "w"))
    assert rf.names == [f["name"] for f in FACTORS]
    np.testing.assert_array_equal(rf.X, EXPECTED)
    assert rf.unmapped == ["smoking"]


def test_events_after_the_prediction_time_never_set_a_feature(tmp_path, cache):
    """Planted: every code, a high creatinine and an MI a year after the last prediction time."""
    future = [(s, "2021-01-01", c, v) for s in (1, 2, 3)
              for c, v in (("ICD10CM/I10", None), ("LOINC/2160-0", 9.0), ("ICD10CM/I21.4", None))]
    rf = risk_factor_matrix(_data(tmp_path / "c", EVENTS + future, tmp_path / "w"))
    np.testing.assert_array_equal(rf.X, EXPECTED)


def test_a_task_without_risk_factors_names_its_file_and_the_fix(tmp_path, cache):
    data = _data(tmp_path / "c", EVENTS, tmp_path / "w", factors=[])
    with pytest.raises(UserError) as e:
        risk_factor_matrix(data)
    text = e.value.render()
    assert "tasks/survival/mace.yaml" in text and "risk_factors" in text and "ehr_source" in text


@pytest.mark.parametrize("factor, words", [
    ({"name": "x", "predicate": "hypertension", "sex": "M"}, "exactly one of"),
    ({"name": "x"}, "exactly one of"),
    ({"name": "x", "predicate": "creatinine", "window": {"start": "-1d", "end": "1d"}}, "after the prediction time"),
    ({"name": "x", "age_min": 70, "age_max": 60}, "below age_max"),
    ({"name": "x", "sex": "M", "value_min": 1}, "only with a predicate"),
    ({"name": "x", "predicate": "creatinine", "threshold": 1}, "threshold"),
    ({"name": "bad name", "sex": "M"}, "safe name"),
])
def test_bad_risk_factors_name_the_field_and_the_fix(tmp_path, factor, words):
    raw = yaml.safe_load(Path("tasks/survival/mace.yaml").read_text())
    raw["risk_factors"] = [factor]
    f = tmp_path / "t.yaml"
    f.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError) as e:
        load_task_file(f, "survival/t")
    assert words in e.value.render() and e.value.field.startswith("risk_factors") and e.value.fix


def test_repeated_names_are_refused(tmp_path):
    raw = yaml.safe_load(Path("tasks/survival/mace.yaml").read_text())
    raw["risk_factors"] = [{"name": "m", "sex": "M"}, {"name": "m", "age_min": 50}]
    f = tmp_path / "t.yaml"
    f.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match="repeated"):
        load_task_file(f, "survival/t")


def test_tasks_without_risk_factors_keep_their_hash():
    """A task that does not use the key hashes as before the key existed (results stay matched):
    the hashes below are what the code without `risk_factors` computed."""
    tasks = load_tasks()
    assert tasks["icu/mortality_24h"].content_hash() == "dc36f249839f3a48"
    assert tasks["leak/probe"].content_hash() == "a63d3c602af544e1"


def test_paper_tasks_declare_their_curated_risk_factors():
    tasks = load_tasks()
    mace = {f.name for f in tasks["survival/mace"].risk_factors}
    assert {"hypertension", "hyperlipidemia", "diabetes", "smoking", "male", "statin", "age_70_plus"} <= mace
    pe = {f.name for f in tasks["survival/pe_mortality"].risk_factors}
    assert {"age_80_plus", "male", "cancer", "heart_failure", "chronic_lung_disease", "heart_rate_110_plus",
            "systolic_bp_below_100", "spo2_below_90"} <= pe


@pytest.fixture(scope="module")
def mace_cohort(tmp_path_factory) -> Cohort:
    """A 3000-subject synthetic cohort without images (about 600 MACE samples)."""
    from data_prep.synthetic import generate
    root = tmp_path_factory.mktemp("mace") / "cohort"
    generate(root, n_subjects=3000, seed=5, images=False)
    return Cohort(root)


def test_synthetic_mace_risk_factors_carry_the_planted_signal(mace_cohort, tmp_path, monkeypatch):
    """The synthetic MACE hazard rises with hypertension, hyperlipidaemia and age: their curated
    columns are there, and a Cox model on the curated vector alone ranks held-out risk above chance."""
    import pandas as pd
    from lifelines import CoxPHFitter

    from benchmark.labels import extract_labels
    from benchmark.metrics.survival import c_index_harrell
    from benchmark.runner import task_data
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))
    task = load_tasks()["survival/mace"]
    data = task_data(task, mace_cohort, 0, extract_labels(task, mace_cohort).labels)
    rf = risk_factor_matrix(data)
    assert rf.unmapped == []
    X = pd.DataFrame(rf.X.astype(float), columns=rf.names)
    for planted in ("hypertension", "hyperlipidemia", "age_70_plus"):
        assert 0.05 < X[planted].mean() < 0.95, planted
    y = data.task.kind_obj.targets(data.labels, 1)          # [n, 2] time, event in label order
    X = X.loc[:, X.std() > 0]
    fit = (data.labels["split"] != "held_out").to_numpy()
    cph = CoxPHFitter(penalizer=0.1).fit(X[fit].assign(T=y[fit, 0], E=y[fit, 1]), "T", "E")
    for planted in ("hypertension", "hyperlipidemia", "age_70_plus"):
        assert cph.params_[planted] > 0, planted
    c = c_index_harrell(y[~fit, 0], y[~fit, 1].astype(bool), cph.predict_partial_hazard(X[~fit]).to_numpy())
    assert c > 0.6, c
