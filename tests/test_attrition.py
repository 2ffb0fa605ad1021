"""Attrition tables and suitability warnings on tiny hand-built cohorts (counts worked out by hand),
and `labels --export` in the MEDS LabelSchema."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from benchmark.cli import main
from benchmark.data.cohort import Cohort
from benchmark.labels import extract_labels
from benchmark.metrics.bootstrap import MIN_CI_SUBJECTS
from benchmark.task_registry import load_tasks
from tests.cohort_factory import make_cohort

TASKS = load_tasks()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))


def icu_cohort(tmp_path: Path, splits: dict[int, str] | None = None) -> Cohort:
    """icu/mortality_24h: index first ICU admission + 24 h; exclusions death in (-inf, t] and ICU
    discharge in (t-24h, t]; outcome death up to ICU discharge (open window), censoring exclude."""
    ev = [
        # 1: second admission does not make a second candidate; alive, discharged -> negative
        (1, "2020-01-01 00:00", "ICU_ADMISSION"), (1, "2020-01-05 00:00", "ICU_DISCHARGE"),
        (1, "2020-06-01 00:00", "ICU_ADMISSION"), (1, "2020-06-03 00:00", "ICU_DISCHARGE"),
        # 2: dies at 20 h -> exclusion 1 (death before t)
        (2, "2020-01-01 00:00", "ICU_ADMISSION"), (2, "2020-01-01 20:00", "MEDS_DEATH"),
        # 3: discharged at 12 h -> exclusion 2
        (3, "2020-01-01 00:00", "ICU_ADMISSION"), (3, "2020-01-01 12:00", "ICU_DISCHARGE"),
        (3, "2020-03-01 00:00", "ICD10CM/I10"),
        # 4: dies in the ICU at 48 h -> positive
        (4, "2020-01-01 00:00", "ICU_ADMISSION"), (4, "2020-01-03 00:00", "MEDS_DEATH"),
        # 5: no discharge, alive, record just stops -> end_at never occurs: dropped
        (5, "2020-01-01 00:00", "ICU_ADMISSION"), (5, "2020-01-04 00:00", "ICD10CM/I10"),
        # 6: no discharge, but the record ends in death after the stay -> kept as a negative? no:
        #    death with no discharge is in the open window -> positive
        (6, "2020-01-01 00:00", "ICU_ADMISSION"), (6, "2020-02-01 00:00", "MEDS_DEATH"),
        # 7: discharged at 3 d, alive -> negative
        (7, "2020-01-01 00:00", "ICU_ADMISSION"), (7, "2020-01-04 00:00", "ICU_DISCHARGE"),
    ]
    return Cohort(make_cohort(tmp_path / "icu", ev, splits=splits))


def steps_of(ls) -> list[tuple]:
    return [(s.name, s.rows_in, s.rows_out, s.subjects_out) for s in ls.attrition]


def test_attrition_counts_equal_the_hand_count(tmp_path):
    splits = {1: "train", 2: "train", 3: "tuning", 4: "held_out", 5: "held_out", 6: "train", 7: "held_out"}
    ls = extract_labels(TASKS["icu/mortality_24h"], icu_cohort(tmp_path, splits))
    assert steps_of(ls) == [
        ("index", 8, 7, 7),          # 8 admissions, first per subject
        ("exclusion 1", 7, 6, 6),    # subject 2 died before t
        ("exclusion 2", 6, 5, 5),    # subject 3 left the ICU before t
        ("end_at open", 5, 4, 4),    # subject 5: no discharge, alive, record ends
        ("censoring", 4, 4, 4),
        ("labels", 4, 4, 4),
    ]
    final = ls.attrition[-1]
    assert final.events_out == 2  # subjects 4 and 6
    assert final.by_split == {"held_out": 2, "train": 2}
    assert final.events_by_split == {"held_out": 1, "train": 1}
    assert ls.attrition[0].by_split == {"held_out": 3, "train": 3, "tuning": 1}
    assert ls.attrition[0].rule == "first icu_admission + 24h"
    assert ls.attrition[2].rule == "any icu_discharge in (t-24h, t]"


def test_attrition_steps_chain_and_match_the_labels(tmp_path):
    for name in ("icu/mortality_24h", "icu/los_days_24h", "icu/los_gt3d_24h"):
        ls = extract_labels(TASKS[name], icu_cohort(tmp_path / name.replace("/", "_")))
        for a, b in zip(ls.attrition, ls.attrition[1:]):
            assert a.rows_out == b.rows_in
        assert ls.attrition[-1].rows_out == ls.labels.height
        assert ls.attrition[-1].subjects_out == ls.labels["subject_id"].n_unique()


def test_attrition_planted_inclusion_and_censoring(tmp_path):
    """oncology/mortality_1y: inclusion cancer diagnosis in the year before treatment; censoring."""
    ev = [
        (1, "2019-12-01", "ICD10CM/C34.90"), (1, "2020-01-01", "RXNORM/2555"), (1, "2020-06-01", "MEDS_DEATH"),
        (2, "2019-11-01", "ICD10CM/C34.90"), (2, "2020-01-01", "RXNORM/2555"), (2, "2021-06-01", "ICD10CM/I10"),
        (3, "2019-11-01", "ICD10CM/C34.1"), (3, "2020-01-01", "RXNORM/2555"), (3, "2020-04-01", "ICD10CM/I10"),
        (4, "2010-01-01", "ICD10CM/C34.90"), (4, "2020-01-01", "RXNORM/2555"), (4, "2022-01-01", "ICD10CM/I10"),
    ]
    ls = extract_labels(TASKS["oncology/mortality_1y"], Cohort(make_cohort(tmp_path / "onc", ev)))
    got = {s.name: (s.rows_in, s.rows_out) for s in ls.attrition}
    assert got["inclusion 1"] == (4, 3)  # subject 4: diagnosis 10 years before
    assert got["censoring"] == (3, 2)    # subject 3: alive, record ends at 3 months
    assert got["labels"] == (2, 2) and ls.attrition[-1].events_out == 1


def test_attrition_is_cached_with_the_labels(tmp_path):
    c = icu_cohort(tmp_path)
    a = extract_labels(TASKS["icu/mortality_24h"], c)
    b = extract_labels(TASKS["icu/mortality_24h"], c)
    assert b.cache_file == a.cache_file and b.attrition == a.attrition and b.warnings == a.warnings


# ---------------------------------------------------------------------------- suitability warnings
def onset_cohort(tmp_path: Path, n_prevalent: int, n_new: int, n_dead_neg: int, n_alive_neg: int,
                 with_stay: bool = True) -> Cohort:
    """onset/t2d_10y: index = first record (2009-01-01) + 365 d = 2010-01-01, the admission. Prevalent
    positives have T2D coded at its discharge (2 days in); new ones 5 years later; negatives die at 1 year
    or are followed 11 years; one more subject dies in the washout (excluded; every exclusion predicate matches an event)."""
    ev, sid = [], 0
    def subject(*rows):
        nonlocal sid
        sid += 1
        ev.extend((sid, *r) for r in (("2009-01-01", "ICD10CM/I10"), *rows))
    subject(("2009-03-01", "RXNORM/6809"), ("2009-03-01", "LOINC/4548-4", 5.0), ("2009-06-01", "MEDS_DEATH"))
    for _ in range(n_prevalent):
        subject(("2010-01-01", "HOSPITAL_ADMISSION"), ("2010-01-03", "HOSPITAL_DISCHARGE"),
                ("2010-01-03", "ICD10CM/E11.9"), ("2021-06-01", "ICD10CM/I10"))
    for _ in range(n_new):
        subject(("2010-01-01", "HOSPITAL_ADMISSION"), ("2010-01-03", "HOSPITAL_DISCHARGE"),
                ("2015-01-01", "ICD10CM/E11.9"), ("2021-06-01", "ICD10CM/I10"))
    for _ in range(n_dead_neg):
        subject(("2010-01-01", "HOSPITAL_ADMISSION"), ("2010-01-03", "HOSPITAL_DISCHARGE"),
                ("2011-01-01", "MEDS_DEATH"))
    for _ in range(n_alive_neg):
        subject(("2010-01-01", "HOSPITAL_ADMISSION"), ("2010-01-03", "HOSPITAL_DISCHARGE"),
                ("2021-06-01", "ICD10CM/I10"))
    preds = {"t2d": {"prefix": "ICD10CM/E11"}, "metformin": {"code": "RXNORM/6809"},
             "hba1c": {"code": "LOINC/4548-4"}, "death": {"code": "MEDS_DEATH"}}
    if with_stay:
        preds["hospital_discharge"] = {"code": "HOSPITAL_DISCHARGE"}
        preds["hospital_admission"] = {"code": "HOSPITAL_ADMISSION"}
    splits = {s: ("held_out" if s % 3 == 0 else "train") for s in range(1, sid + 1)}
    return Cohort(make_cohort(tmp_path / "onset", ev, splits=splits, predicates=preds))


def warnings_of(task: str, cohort: Cohort) -> list[str]:
    return extract_labels(TASKS[task], cohort, announce=False).warnings


def test_prevalent_cases_warn_with_their_count(tmp_path):
    w = warnings_of("onset/t2d_10y", onset_cohort(tmp_path, n_prevalent=3, n_new=1, n_dead_neg=0, n_alive_neg=4))
    hit = [x for x in w if "prevalent cases" in x]
    assert len(hit) == 1 and "3 of 4 positives (75%)" in hit[0] and "fix:" in hit[0]


def test_a_later_stay_is_not_the_index_stay(tmp_path):
    """T2D first coded at the discharge of a stay that begins months after the prediction time is a
    new onset, not a prevalent case (only the stay containing t, or beginning within 24 h, counts)."""
    ev = []
    for sid in range(1, 7):
        ev += [(sid, "2009-01-01", "ICD10CM/I10"), (sid, "2010-06-01", "HOSPITAL_ADMISSION"),
               (sid, "2010-06-03", "HOSPITAL_DISCHARGE"), (sid, "2021-06-01", "ICD10CM/I10")]
        if sid <= 4:
            ev.append((sid, "2010-06-03", "ICD10CM/E11.9"))
    preds = {"t2d": {"prefix": "ICD10CM/E11"}, "metformin": {"code": "RXNORM/6809"}, "hba1c": {"code": "LOINC/4548-4"},
             "death": {"code": "MEDS_DEATH"}, "hospital_discharge": {"code": "HOSPITAL_DISCHARGE"},
             "hospital_admission": {"code": "HOSPITAL_ADMISSION"}}
    ev += [(7, "2009-01-01", "RXNORM/6809"), (7, "2009-01-02", "LOINC/4548-4", 5.0), (7, "2009-02-01", "MEDS_DEATH")]
    c = Cohort(make_cohort(tmp_path / "later", ev, splits={s: "train" for s in range(1, 8)}, predicates=preds))
    ls = extract_labels(TASKS["onset/t2d_10y"], c, announce=False)
    assert int(ls.labels["boolean_value"].sum()) == 4
    assert not [x for x in ls.warnings if "prevalent cases" in x]


def test_prevalent_cases_below_the_share_do_not_warn(tmp_path):
    w = warnings_of("onset/t2d_10y", onset_cohort(tmp_path, n_prevalent=1, n_new=5, n_dead_neg=0, n_alive_neg=4))
    assert not [x for x in w if "prevalent cases" in x]


def test_prevalent_needs_the_stay_predicate_for_discharge_coding(tmp_path):
    """Without a hospital_discharge predicate only codes at or before t count (none here)."""
    c = onset_cohort(tmp_path, n_prevalent=3, n_new=1, n_dead_neg=0, n_alive_neg=4, with_stay=False)
    assert not [x for x in warnings_of("onset/t2d_10y", c) if "prevalent cases" in x]


def test_negatives_that_are_all_deaths_warn(tmp_path):
    w = warnings_of("onset/t2d_10y", onset_cohort(tmp_path, n_prevalent=0, n_new=2, n_dead_neg=3, n_alive_neg=0))
    hit = [x for x in w if "record ends in death" in x]
    assert len(hit) == 1 and "3 of 3 negatives (100%)" in hit[0]
    w = warnings_of("onset/t2d_10y", onset_cohort(tmp_path / "b", n_prevalent=0, n_new=2, n_dead_neg=3,
                                                  n_alive_neg=1))
    assert not [x for x in w if "record ends in death" in x]  # 3 of 4 = 75% <= 90%


def test_few_held_out_positives_warn_with_the_ci_minimum(tmp_path):
    w = warnings_of("onset/t2d_10y", onset_cohort(tmp_path, n_prevalent=0, n_new=3, n_dead_neg=0, n_alive_neg=3))
    hit = [x for x in w if "held-out split has only" in x]
    assert len(hit) == 1 and f"at least {MIN_CI_SUBJECTS}" in hit[0] and "1 positives" in hit[0]


def test_enough_held_out_positives_do_not_warn(tmp_path):
    n = 3 * MIN_CI_SUBJECTS  # every third subject is held out: 10 positives, 10 negatives there
    w = warnings_of("onset/t2d_10y", onset_cohort(tmp_path, n_prevalent=0, n_new=n, n_dead_neg=0, n_alive_neg=n))
    assert not [x for x in w if "held-out" in x]


def test_a_split_without_samples_warns(tmp_path):
    splits = {1: "train", 2: "train", 3: "tuning", 4: "train", 5: "held_out", 6: "train", 7: "train"}
    w = warnings_of("icu/mortality_24h", icu_cohort(tmp_path, splits))  # 5, the only held-out one, is dropped
    hit = [x for x in w if "split has no samples" in x]
    assert len(hit) == 2  # held_out and tuning (3 is excluded)
    assert any("the held_out split" in x for x in hit) and any("the tuning split" in x for x in hit)


def test_run_prints_each_warning_once_per_task(tmp_path, capsys):
    c = onset_cohort(tmp_path, n_prevalent=3, n_new=1, n_dead_neg=0, n_alive_neg=4)
    args = ["run", "--model", "logistic_regression", "--task", "onset/t2d_10y", "--data", str(c.root),
            "--results", str(tmp_path / "res"), "--budget", "smoke"]
    main(args)
    out = capsys.readouterr()
    assert (out.out + out.err).count("prevalent cases") == 1
    main(args)  # cached labels: said again, once
    out = capsys.readouterr()
    assert (out.out + out.err).count("prevalent cases") == 1


# ---------------------------------------------------------------------------- CLI and export
def test_labels_cli_prints_attrition_and_exports_meds_labels(tmp_path, capsys):
    import meds
    import pyarrow.parquet as pq

    splits = {1: "train", 2: "train", 3: "tuning", 4: "held_out", 5: "held_out", 6: "train", 7: "held_out"}
    c = icu_cohort(tmp_path, splits)
    out_dir = tmp_path / "export"
    assert main(["labels", "--task", "icu/mortality_24h,icu/los_days_24h", "--data", str(c.root),
                 "--export", str(out_dir)]) == 0
    shown = capsys.readouterr()
    assert "attrition of icu/mortality_24h" in shown.out and "end_at open" in shown.out
    assert "held-out split has only" in shown.err
    for name in ("icu/mortality_24h", "icu/los_days_24h"):  # <task>/<split>/0.parquet (MEDS-DEV's layout)
        files = sorted((out_dir / name).glob("*/0.parquet"))
        assert [f.parent.name for f in files] == ["held_out", "train", "tuning"]
        for f in files:
            table = pq.read_table(f)
            meds.LabelSchema.validate(table)  # raises on a column, type or nullability mismatch
            assert table.schema.field("prediction_time").type == meds.LabelSchema.prediction_time_dtype
        ours = extract_labels(TASKS[name], c).labels
        got = pl.concat([pl.read_parquet(f) for f in files]).sort("subject_id", "prediction_time")
        assert got.equals(ours)
    assert not [p for p in out_dir.rglob("*") if p.name.startswith(".")]  # no temp files left


def test_labels_out_is_kept_as_an_alias(tmp_path):
    c = icu_cohort(tmp_path)
    assert main(["labels", "--task", "icu/mortality_24h", "--data", str(c.root), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "icu" / "mortality_24h" / "train" / "0.parquet").exists()


def test_rule_text_is_never_markup(tmp_path, capsys):
    """A predicate named like rich markup is printed as typed."""
    from benchmark.attrition import AttritionStep, rich_table
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(rich_table("t[bold]x[/bold]", [AttritionStep("index", "first [red]icu[/red]", 3, 3, 3)]))
    text = console.export_text()
    assert "first [red]icu[/red]" in text and "t[bold]x[/bold]" in text


@pytest.mark.skipif(os.name != "posix", reason="permissions")
def test_export_to_an_unwritable_folder_is_a_user_error(tmp_path, capsys):
    c = icu_cohort(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        assert main(["labels", "--task", "icu/mortality_24h", "--data", str(c.root), "--export", str(ro)]) == 2
        assert "--export" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


# ---------------------------------------------------------------------------- real data (MIMIC-IV demo)
def t2d_version_1():
    """onset/t2d_10y as published in version 1 (the issue's reproduction): index = first record,
    only T2D codes at or before it excluded, 10-year window."""
    from benchmark.taskspec import Criterion, Index, Window

    t = TASKS["onset/t2d_10y"]
    return t.model_copy(update={
        "version": 1, "predicates": {}, "index": Index(predicate="_record_start", occurrence="first"),
        "exclusion": (Criterion(predicate="t2d", start="-inf", end="0"),),
        "label": t.label.model_copy(update={"window": Window(start="0", end="3650d")})})


def test_t2d_version_1_on_mimic_warns_prevalent_onsets_and_death_negatives(mimic_meds_020):
    """The issue: most 'onsets' are diabetes coded at the discharge of the stay the record starts with
    (the issue counted 31 of 35 coded at the first discharge at all; 18 of them at the discharge of a
    stay that contains the prediction time or begins within 24 h of it, the rule used here); every
    kept negative is a death; nothing warned (the old labeler returned no such warning)."""
    ls = extract_labels(t2d_version_1(), Cohort(mimic_meds_020), announce=False)
    assert ls.labels.height == 55 and int(ls.labels["boolean_value"].sum()) == 35
    assert any("18 of 35 positives (51%)" in w for w in ls.warnings)
    assert any("20 of 20 negatives (100%)" in w for w in ls.warnings)
    assert ls.attrition[-1].rows_out == 55 and ls.attrition[-1].events_out == 35


def test_a_recurrent_outcome_with_history_is_not_called_prevalent(small_cohort):
    """Readmission's positives all had an admission before (the task requires one): that is history of
    a recurrent outcome the task does not exclude, not a prevalent onset (no warning)."""
    from benchmark.labels import extract_labels
    from benchmark.suitability import is_onset_task
    from benchmark.task_registry import select_tasks
    task = select_tasks("meds_dev/readmission_30d")[0]
    assert not is_onset_task(task)
    ls = extract_labels(task, small_cohort, use_cache=False)
    assert ls.labels["boolean_value"].sum() > 0
    assert not [w for w in ls.warnings if "prevalent" in w]
