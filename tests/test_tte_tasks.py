"""The two time-to-event use cases as "Fusion is not one-size-fits-all: Cross-Modal Representation
Alignment for Time-to-Event Modeling" defines them (survival/mace v2, survival/pe_mortality v2), on
hand-written cohorts with hand-computed labels, plus the per-study sample plumbing (several samples
per subject: splits and folds keep a subject on one side)."""

from __future__ import annotations

import numpy as np
import polars as pl

from benchmark.data.cohort import Cohort
from benchmark.labels import extract_labels
from benchmark.learn.folds import make_folds
from benchmark.task_registry import load_tasks
from tests.cohort_factory import make_cohort

TASKS = load_tasks()


def _labels(task: str, cohort: Cohort) -> dict[tuple[int, str], tuple[bool, float]]:
    df = extract_labels(TASKS[task], cohort).labels
    return {(r["subject_id"], str(r["prediction_time"])[:10]): (r["boolean_value"], round(r["float_value"], 3))
            for r in df.iter_rows(named=True)}


def test_mace_v2_counts_heart_failure_and_cardiac_death_and_censors_other_deaths(tmp_path):
    ev = [
        # 1: acute heart failure admission 200 d after the CT -> event (v1: censored at the record end)
        (1, "2020-01-01", "IMAGING/CARDIAC_CT"), (1, "2020-07-19", "ICD10CM/I50.21"), (1, "2021-01-01", "ICD10CM/I10"),
        # 2: sudden cardiac death (cause I46.9) -> event at the death; v1: censored there
        (2, "2020-01-01", "IMAGING/CARDIAC_CT"), (2, "2020-04-10", "MEDS_DEATH"), (2, "2020-04-10", "DEATH_CAUSE/I46.9"),
        # 3: cancer death -> censored at the death
        (3, "2020-01-01", "IMAGING/CARDIAC_CT"), (3, "2020-03-01", "MEDS_DEATH"), (3, "2020-03-01", "DEATH_CAUSE/C80.1"),
        # 4: chronic heart failure I50.9 is a risk factor, not an event; ischemic stroke I63.5x is
        (4, "2020-01-01", "IMAGING/CARDIAC_CT"), (4, "2020-02-01", "ICD10CM/I50.9"), (4, "2021-01-01", "ICD10CM/I63.50"),
        # 5: two CTs -> two samples; the MI after the second ends both; a third CT after the MI is excluded
        (5, "2020-01-01", "IMAGING/CARDIAC_CT"), (5, "2021-01-01", "IMAGING/CARDIAC_CT"), (5, "2021-07-01", "ICD10CM/I21.4"),
        (5, "2022-01-01", "IMAGING/CARDIAC_CT"), (5, "2023-01-01", "ICD10CM/I10"),
    ]
    c = Cohort(make_cohort(tmp_path / "mace", ev))
    assert _labels("survival/mace", c) == {
        (1, "2020-01-01"): (True, 200.0), (2, "2020-01-01"): (True, 100.0), (3, "2020-01-01"): (False, 60.0),
        (4, "2020-01-01"): (True, 366.0), (5, "2020-01-01"): (True, 547.0), (5, "2021-01-01"): (True, 181.0)}
    # the old definition: MI / stroke only, first CT per patient
    assert _labels("survival/mace_mi_stroke_first_ct", c) == {
        (1, "2020-01-01"): (False, 366.0), (2, "2020-01-01"): (False, 100.0), (3, "2020-01-01"): (False, 60.0),
        (4, "2020-01-01"): (True, 366.0), (5, "2020-01-01"): (True, 547.0)}


def test_pe_v2_is_per_positive_ctpa_study_with_a_one_year_horizon(tmp_path):
    ev = [
        # 1: PE (CTPA + I26 together), alive at 2 years -> censored at 365 d; a repeat PE 400 d later -> 2nd sample,
        #    death 500 d after the first study = 100 d after the second
        (1, "2020-01-01 10:00", "IMAGING/CTPA"), (1, "2020-01-01 10:00", "ICD10CM/I26.99"),
        (1, "2021-02-04 10:00", "IMAGING/CTPA"), (1, "2021-02-04 12:00", "ICD10CM/I26.09"),
        (1, "2021-05-15 10:00", "MEDS_DEATH"),
        # 2: negative CTPA (no PE code within 24 h) -> no sample; a PE two days later with its CTPA -> sample
        (2, "2020-01-01 10:00", "IMAGING/CTPA"), (2, "2020-01-03 10:00", "IMAGING/CTPA"),
        (2, "2020-01-03 10:00", "ICD10CM/I26.99"), (2, "2020-03-13 10:00", "MEDS_DEATH"),
        # 3: a PE code without a CTPA is not a sample (v1: it is)
        (3, "2020-01-01 10:00", "ICD10CM/I26.99"), (3, "2024-01-01", "ICD10CM/I10"),
    ]
    c = Cohort(make_cohort(tmp_path / "pe", ev))
    assert _labels("survival/pe_mortality", c) == {
        (1, "2020-01-01"): (False, 365.0), (1, "2021-02-04"): (True, 100.0), (2, "2020-01-03"): (True, 70.0)}
    task = TASKS["survival/pe_mortality"]
    assert task.version == 2 and task.horizon_days() == 365
    old = _labels("survival/pe_mortality_5y_first", c)
    assert set(old) == {(1, "2020-01-01"), (2, "2020-01-03"), (3, "2020-01-01")}


def test_several_samples_per_subject_never_straddle_folds():
    subjects = np.repeat(np.arange(40), 3)                # three studies per subject
    y = np.column_stack([np.linspace(1, 300, subjects.size), np.arange(subjects.size) % 2])
    for train, valid in make_folds("survival", y, subjects, 5, seed=0):
        assert not set(subjects[train]) & set(subjects[valid])


def test_task_versions_and_references():
    assert TASKS["survival/mace"].version == 2 and TASKS["survival/mace"].index.occurrence == "all"
    assert TASKS["survival/mace_mi_stroke_first_ct"].version == 1
    assert TASKS["survival/pe_mortality_5y_first"].version == 1
    for name in ("survival/mace", "survival/pe_mortality", "survival/mace_mi_stroke_first_ct",
                 "survival/pe_mortality_5y_first"):
        assert TASKS[name].references[0].startswith("adapted from Fusion is not one-size-fits-all"), name


def test_default_cohort_splits_keep_a_subject_on_one_side(small_cohort):
    lab = extract_labels(TASKS["survival/pe_mortality"], small_cohort).labels
    per_subject = lab.group_by("subject_id").len()
    assert per_subject["len"].max() >= 2                  # repeat PE episodes give several samples
    split = lab.join(small_cohort.splits, on="subject_id").group_by("subject_id").agg(pl.col("split").n_unique())
    assert split["split"].max() == 1
