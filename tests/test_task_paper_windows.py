"""The paper-defined tasks that use an input window, checked against hand-computed oracles:

- icu/in_hospital_mortality_24h (Benchmarking Foundation Models with Multimodal Public Electronic
  Health Records, arXiv 2507.14824): labels recomputed with plain polars from the default synthetic
  cohort's events, and a planted ward death after the ICU discharge (in-hospital, not in-ICU);
- onset/t2d_10y (v3) and the history variants onset/t2d_10y_hist{0m,6m,1y,3y} (Integrating Genomics
  into Multimodal EHR Foundation Models, Amar et al. 2025): planted subjects for the cohort rules
  (T2D within the history, < 5 years of data, death) and the history each variant shows a model.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest

from benchmark.data.cohort import Cohort
from benchmark.labels import extract_labels
from benchmark.task_registry import load_tasks
from tests.cohort_factory import SYNTHETIC_LIKE_PREDICATES, make_cohort

TASKS = load_tasks()
ALL = ("train", "tuning", "held_out")


# ---------------------------------------------------------------------------- in-hospital mortality
def _oracle_in_hospital(cohort: Cohort) -> pl.DataFrame:
    """Death before hospital discharge, 24 h after the first ICU admission, by hand."""
    raw = (pl.concat([pl.read_parquet(f, columns=["subject_id", "time", "code"]) for f in cohort.data_files()])
           .filter(pl.col("time").is_not_null()).with_columns(pl.col("time").cast(pl.Datetime("us"))))
    first = lambda code, name: raw.filter(pl.col("code") == code).group_by("subject_id").agg(pl.col("time").min().alias(name))  # noqa: E731
    s = first("ICU_ADMISSION", "admit").with_columns((pl.col("admit") + timedelta(hours=24)).alias("t"))
    death = first("MEDS_DEATH", "death")
    s = s.join(death, on="subject_id", how="left").filter(pl.col("death").is_null() | (pl.col("death") > pl.col("t")))
    for code in ("ICU_DISCHARGE", "HOSPITAL_DISCHARGE"):
        early = (raw.filter(pl.col("code") == code).join(s.select("subject_id", "admit", "t"), on="subject_id")
                 .filter((pl.col("time") > pl.col("admit")) & (pl.col("time") <= pl.col("t"))).select("subject_id").unique())
        s = s.join(early, on="subject_id", how="anti")
    hd = (raw.filter(pl.col("code") == "HOSPITAL_DISCHARGE").join(s.select("subject_id", "t"), on="subject_id")
          .filter(pl.col("time") > pl.col("t")).group_by("subject_id").agg(pl.col("time").min().alias("hd")))
    s = s.join(hd, on="subject_id", how="left").with_columns(
        (pl.col("death").is_not_null() & (pl.col("hd").is_null() | (pl.col("death") <= pl.col("hd")))).alias("y"))
    s = s.filter(pl.col("y") | pl.col("hd").is_not_null())  # an open window: only a death gives a label
    return s.select("subject_id", pl.col("t").alias("prediction_time"), pl.col("y").alias("boolean_value")).sort("subject_id")


def test_in_hospital_mortality_equals_a_hand_oracle_on_the_default_cohort(default_cohort, cache):
    task = TASKS["icu/in_hospital_mortality_24h"]
    ours = extract_labels(task, default_cohort, use_cache=False).labels.sort("subject_id")
    want = _oracle_in_hospital(default_cohort)
    assert ours.height == want.height > 1000
    assert ours.select("subject_id", "prediction_time", "boolean_value").equals(want)
    # measured on the default cohort (5000 subjects, seed 0): 1270 samples, 178 in-hospital deaths
    assert (ours.height, int(ours["boolean_value"].sum())) == (1262, 176)   # generator 2.1 (1.1: 1270, 178)


def test_ward_death_after_icu_discharge_is_in_hospital_not_in_icu(tmp_path, cache):
    preds = {**SYNTHETIC_LIKE_PREDICATES, "hospital_discharge": {"code": "HOSPITAL_DISCHARGE"}}
    ev = []
    for s, death in ((1, "2020-03-17 10:00"), (2, None), (3, "2020-03-25 10:00")):
        ev += [(s, "2020-03-09 20:00", "HOSPITAL_ADMISSION"), (s, "2020-03-10 08:00", "ICU_ADMISSION"),
               (s, "2020-03-14 10:00", "ICU_DISCHARGE")]
        end = death if s == 1 else "2020-03-18 10:00"
        ev += [(s, end, "HOSPITAL_DISCHARGE")] + ([(s, death, "MEDS_DEATH")] if death else [])
    # 1: dies on the ward (in hospital, after the ICU); 2: survives; 3: dies a week after discharge
    cohort = Cohort(make_cohort(tmp_path / "c", ev, predicates=preds))
    got = lambda name: dict(extract_labels(TASKS[name], cohort, use_cache=False).labels  # noqa: E731
                            .select("subject_id", "boolean_value").iter_rows())
    assert got("icu/in_hospital_mortality_24h") == {1: True, 2: False, 3: False}
    assert got("icu/mortality_24h") == {1: False, 2: False, 3: False}


def test_icu_tasks_declare_the_papers_24h_input_window():
    for name in ("icu/in_hospital_mortality_24h", "icu/mortality_24h", "icu/los_gt3d_24h", "icu/los_days_24h"):
        t = TASKS[name]
        assert t.index.offset == "24h" and t.input_window == "24h", name
    assert TASKS["icu/mortality_24h"].version == 2 and TASKS["icu/los_days_24h"].version == 2
    # the MEDS-DEV replica keeps MEDS-DEV's inputs (all history)
    assert TASKS["meds_dev/mortality_in_icu_first_24h"].input_window is None


# ---------------------------------------------------------------------------- T2D onset and history
HIST = {"onset/t2d_10y_hist0m": 0, "onset/t2d_10y_hist6m": 183, "onset/t2d_10y_hist1y": 365,
        "onset/t2d_10y_hist3y": 1095}
T0 = datetime(2000, 1, 1) + timedelta(days=1095)  # time zero: 3 years after the first record


def _t2d_cohort(root) -> Cohort:
    def life(s, end="2009-06-01"):  # sex, birth, first record, a visit at `end` (the record's length)
        return [(s, None, "GENDER/F"), (s, "1960-01-01", "MEDS_BIRTH"), (s, "2000-01-01", "VISIT/PRIMARY_CARE"),
                (s, end, "VISIT/PRIMARY_CARE")]
    ev = []
    ev += life(1) + [(1, "2001-06-01", "ICD10CM/E11.9")]                   # T2D in the history: excluded
    ev += life(2) + [(2, "2000-03-01", "LAB/OLD", 1.0),                    # 2 y 10 m before time zero
                     (2, "2002-06-01", "LAB/YEAR", 2.0),                   # 7 months before
                     (2, "2002-10-01", "LAB/RECENT", 3.0),                 # 3 months before
                     (2, "2005-01-01", "ICD10CM/E11.9")]                   # onset after 2 years: positive
    ev += life(3, end="2003-12-31")                                        # 4 years of data: excluded
    ev += life(4) + [(4, T0.isoformat(), "ICD10CM/E11.9")]                 # T2D at time zero: excluded
    ev += life(5) + [(5, (T0 + timedelta(days=1)).isoformat(), "ICD10CM/E11.9")]   # a day later: positive
    ev += life(6) + [(6, "2002-01-01", "MEDS_DEATH")]                      # died before time zero
    ev += life(7, end="2006-01-01")                                        # 6 years of data, no T2D: negative
    ev += life(8) + [(8, (T0 + timedelta(days=3651)).isoformat(), "ICD10CM/E11.9")]  # after 10 y: negative
    return Cohort(make_cohort(root, ev))


def test_t2d_history_variants_share_one_cohort_and_label(tmp_path, cache):
    cohort = _t2d_cohort(tmp_path / "c")
    want = {2: True, 5: True, 7: False, 8: False}
    for name in HIST:
        lab = extract_labels(TASKS[name], cohort, use_cache=False).labels
        assert dict(lab.select("subject_id", "boolean_value").iter_rows()) == want, name
        assert set(lab["prediction_time"].to_list()) == {T0}, name


def test_t2d_history_variants_show_exactly_their_history(tmp_path, cache):
    from benchmark.runner import task_data
    cohort = _t2d_cohort(tmp_path / "c")
    seen = {}
    for name in HIST:
        task = TASKS[name]
        data = task_data(task, cohort, 0, extract_labels(task, cohort).labels)
        ev = data.visible_events(ALL).filter(pl.col("subject_id") == 2).collect()
        seen[name] = set(ev["code"]) - {"GENDER/F", "MEDS_BIRTH"}
        assert {"GENDER/F", "MEDS_BIRTH"} <= set(ev["code"]), name  # demographics at every history length
        assert ev["time"].drop_nulls().max() <= T0
    assert seen == {"onset/t2d_10y_hist0m": set(),
                    "onset/t2d_10y_hist6m": {"LAB/RECENT"},
                    "onset/t2d_10y_hist1y": {"LAB/YEAR", "LAB/RECENT"},
                    # 3 years = the whole record: the first record (exactly t - 3 y) is inside [t - W, t]
                    "onset/t2d_10y_hist3y": {"VISIT/PRIMARY_CARE", "LAB/OLD", "LAB/YEAR", "LAB/RECENT"}}
    assert {n: TASKS[n].input_lookback_s() / 86400 for n in HIST} == HIST


@pytest.mark.parametrize("name", ["onset/t2d_10y", *HIST])
def test_t2d_tasks_declare_the_papers_inputs(name):
    t = TASKS[name]
    assert t.modalities == ("prs",) and t.label.outcome == "t2d"
    if name == "onset/t2d_10y":  # time zero: demographics and the PRS only
        assert t.version == 3 and t.input_lookback_s() == 0
    else:
        assert t.index.offset == "1095d" and t.label.window.end == "3650d" and t.label.censoring == "negative"
        assert {(c.predicate, c.start, c.end) for c in t.exclusion} == {("t2d", "-inf", "0"), ("death", "-inf", "0")}
