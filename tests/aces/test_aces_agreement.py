"""Our label extractor agrees with ACES (es-aces 0.7.3) on every binary task ACES can express.

The ACES task configs are hand-written next to this test (tests/aces/configs/<task>.yaml; each names the
task and version it mirrors in its `metadata:` block). Both extractors run on the same MEDS data with the
same predicate map (converted to ACES predicates by aces_bridge.py) on:
  (a) the synthetic cohort (data_prep.synthetic, images off),
  (b) meds-testing-helpers data: its static sample dataset and a seeded random dataset from its generator,
      with small test tasks written for their codes (tests/aces/mth_tasks/),
  (c) a hand-written cohort of window-boundary cases (tests/cohort_factory.py).

One difference is by design. Our `censoring: exclude` drops a negative sample whose record ends before the
end of its label window, unless the subject has a MEDS_DEATH event; ACES has no form for this (its label
window has no "record must cover it" rule), so it keeps those rows as negatives. For such tasks we check
  ours == ACES rows minus the censored negatives,
where the censored negatives are recomputed here from the raw shards (record end and death per subject);
`check` returns how many rows that removed, and the static-sample test pins one such row by hand.
With `censoring: negative` the rows must be identical.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from benchmark.data.cohort import Cohort
from benchmark.durations import parse_duration, to_timedelta
from benchmark.labels import extract_labels
from benchmark.task_registry import load_tasks
from benchmark.taskspec import TaskSpec, load_task_file
from tests.aces.aces_bridge import CONFIG_DIR, config_metadata, config_path, load_config, row_diff, run_aces
from tests.cohort_factory import SYNTHETIC_LIKE_PREDICATES, make_cohort

HERE = Path(__file__).parent
MTH_TASK_DIR = HERE / "mth_tasks"
KEYS = ["subject_id", "prediction_time"]
COLS = [*KEYS, "boolean_value"]

TASKS = load_tasks()

# Binary tasks in tasks/ without an ACES mirror, and why ACES cannot express them.
NOT_EXPRESSIBLE = {
    "oncology/aki_1y": "KDIGO AKI compares each creatinine with the minimum over the previous 48 h / 7 d; "
                       "ACES predicates test one event's code and value",
    "oncology/neutropenic_fever_1y": "pairs an ANC < 500 with a temperature >= 38.3 C within 24 h of each "
                                     "other; ACES derived predicates combine columns of one timestamp only",
    "icu/los_gt3d_24h": "the label is a duration threshold (duration_to) with its own censoring rule; an "
                        "ACES label counts a predicate in a window (at best the negation, LOS <= 3 d)",
}
# Tasks imported from MEDS-DEV configs (`tasks import-aces`): their ACES oracle is MEDS-DEV's own config,
# run by tests/test_aces_import.py (demo MEDS and an edge cohort); the synthetic map lacks their lab names.
IMPORTED = {n for n, t in TASKS.items() if any(r.startswith("adapted from MEDS-DEV abnormal_lab/") for r in t.references)}
NOT_EXPRESSIBLE.update({n: "imported from MEDS-DEV; compared with ACES in tests/test_aces_import.py" for n in IMPORTED})
ACES_TASKS = sorted(n for n, t in TASKS.items() if t.kind == "binary" and n not in NOT_EXPRESSIBLE)


def mth_task(name: str) -> TaskSpec:
    """One of our test tasks for meds-testing-helpers data ('mth/<file stem>')."""
    return load_task_file(MTH_TASK_DIR / f"{name.removeprefix('mth/')}.yaml", name)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))


# ---------------------------------------------------------------------------- the comparison
@dataclass
class Agreement:
    ours: pl.DataFrame
    aces: pl.DataFrame
    censored: int  # ACES negatives that ours drops as censored


def censored_negatives(task: TaskSpec, cohort: Cohort, rows: pl.DataFrame) -> pl.DataFrame:
    """The rows among `rows` that `censoring: exclude` drops: negative, no MEDS_DEATH for the subject, and
    the record (last timed event) ends before the label window's end (an open-ended window is never covered).

    Recomputed from the raw shards, independently of benchmark.labels.
    """
    raw = (pl.concat([pl.read_parquet(f, columns=["subject_id", "time", "code"]) for f in cohort.data_files()],
                     how="vertical_relaxed")
           .with_columns(pl.col("subject_id").cast(pl.Int64), pl.col("time").cast(pl.Datetime("us")))
           .filter(pl.col("time").is_not_null()))  # static rows are not part of the timeline
    bounds = raw.group_by("subject_id").agg(pl.col("time").max().alias("record_end"),
                                            (pl.col("code") == "MEDS_DEATH").any().alias("dead"))
    lab = task.label
    end = parse_duration(lab.window.end)
    nominal = (pl.col("prediction_time") + to_timedelta(end)) if np.isfinite(end) else pl.lit(None, pl.Datetime("us"))
    r = rows.join(bounds, on="subject_id", how="left").with_columns(nominal.alias("w_end"))
    if lab.end_at:
        # the window closes at the first end_at event after t (inclusive), if that comes before its nominal end
        rule = cohort.predicate_map()[lab.end_at]
        ends = raw.filter(rule.code_expr()).select("subject_id", pl.col("time").alias("end_at"))
        first = (r.select(KEYS).join(ends, on="subject_id").filter(pl.col("end_at") > pl.col("prediction_time"))
                 .group_by(KEYS).agg(pl.col("end_at").min()))
        r = r.join(first, on=KEYS, how="left").with_columns(pl.min_horizontal("w_end", "end_at").alias("w_end"))
    uncovered = pl.col("w_end").is_null() | (pl.col("record_end") < pl.col("w_end"))
    return r.filter(~pl.col("boolean_value") & ~pl.col("dead") & uncovered).select(COLS)


def check(task: TaskSpec, cohort: Cohort, aces_config: Path, workdir: Path) -> Agreement:
    """Run both extractors and assert they agree (up to our censoring rule, see the module docstring)."""
    ours = extract_labels(task, cohort, use_cache=False).labels.select(COLS)
    aces = run_aces(load_config(aces_config, cohort.predicate_map(), workdir, task), cohort.data_files())
    assert aces.select(KEYS).is_duplicated().sum() == 0, "ACES returned duplicate (subject, time) rows"
    expected, n_censored = aces, 0
    if task.label.censoring == "exclude":
        censored = censored_negatives(task, cohort, aces)
        expected = aces.join(censored, on=KEYS, how="anti")
        n_censored = censored.height
    assert ours.height == expected.height and ours.equals(expected), (
        f"{task.name}: ours vs ACES{' minus censored negatives' if n_censored else ''}\n"
        + row_diff(ours, expected))
    assert_frame_equal(ours, expected)
    return Agreement(ours, aces, n_censored)


def assert_informative(a: Agreement, name: str) -> None:
    """The comparison was not vacuous: samples of both classes came out."""
    assert a.ours.height > 0, f"{name}: no samples"
    assert set(a.ours["boolean_value"].to_list()) == {True, False}, f"{name}: only one class"


# ---------------------------------------------------------------------------- configs are in sync
def test_every_binary_task_has_an_aces_mirror_or_a_reason():
    binary = {n for n, t in TASKS.items() if t.kind == "binary"}
    missing = sorted(n for n in binary - set(NOT_EXPRESSIBLE) if not config_path(n).exists())
    assert not missing, f"binary tasks without tests/aces/configs/<task>.yaml: {missing}"
    stale = sorted(n for n in NOT_EXPRESSIBLE if n not in binary or config_path(n).exists())
    assert not stale, f"NOT_EXPRESSIBLE entries that are not binary tasks or do have a config: {stale}"
    assert {"oncology/mortality_1y", "icu/mortality_24h", "onset/t2d_10y"} <= set(ACES_TASKS)


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.rglob("*.yaml")), ids=lambda p: p.relative_to(CONFIG_DIR).as_posix())
def test_aces_config_mirrors_current_task_version(path):
    name = path.relative_to(CONFIG_DIR).with_suffix("").as_posix()
    meta = config_metadata(path)
    task = mth_task(name) if name.startswith("mth/") else TASKS.get(name)
    assert task is not None, f"{path} mirrors no task"
    assert meta.get("mirrors") == name
    # A task change bumps its version; the mirror must then be reviewed and its version bumped too.
    assert meta.get("task_version") == task.version, f"{path} mirrors version {meta.get('task_version')}, " \
                                                     f"task {name} is at version {task.version}"
    assert meta.get("censoring") == task.label.censoring


# ---------------------------------------------------------------------------- (a) synthetic cohort
@pytest.fixture(scope="module")
def synthetic_cohort(tmp_path_factory) -> Cohort:
    from data_prep.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic") / "cohort"
    generate(out, n_subjects=1000, seed=11, images=False)
    return Cohort(out)


@pytest.mark.parametrize("name", ACES_TASKS)
def test_synthetic_cohort_agrees_with_aces(name, synthetic_cohort, tmp_path):
    a = check(TASKS[name], synthetic_cohort, config_path(name), tmp_path)
    assert_informative(a, name)
    print(f"{name}: {a.ours.height} rows agree ({int(a.ours['boolean_value'].sum())} positive); "
          f"ACES kept {a.censored} censored negatives that ours drops")


# ---------------------------------------------------------------------------- (b) meds-testing-helpers
@pytest.fixture(scope="module")
def mth_static_cohort(tmp_path_factory) -> Cohort:
    from meds_testing_helpers.dataset import MEDSDataset
    from meds_testing_helpers.static_sample_data import exported_yamls

    out = tmp_path_factory.mktemp("mth_static") / "cohort"
    MEDSDataset.from_yaml(exported_yamls["SIMPLE_STATIC_SHARDED_BY_SPLIT_WITH_TASKS"]).write(out)
    return Cohort(out, predicates_file=MTH_TASK_DIR / "static_predicates.yaml")


def test_mth_static_sample_tachycardia(mth_static_cohort, tmp_path):
    a = check(mth_task("mth/static_tachycardia_2h"), mth_static_cohort,
              config_path("mth/static_tachycardia_2h"), tmp_path)
    # HR 170.2 and 142.0 at the admission itself do not count: the window starts strictly after t.
    assert dict(a.ours.select("subject_id", "boolean_value").iter_rows()) == {
        68729: False, 239684: True, 754281: False, 814703: False, 1195293: True, 1500733: False}


def test_mth_static_sample_fever_with_censoring(mth_static_cohort, tmp_path):
    a = check(mth_task("mth/static_fever_1h"), mth_static_cohort, config_path("mth/static_fever_1h"), tmp_path)
    # 814703's record ends 07:02:30, before t + 1h = 07:25:39: ACES keeps it as a negative, ours drops it.
    assert a.censored == 1 and 814703 in a.aces["subject_id"].to_list()
    assert dict(a.ours.select("subject_id", "boolean_value").iter_rows()) == {
        68729: False, 239684: False, 754281: False, 1195293: True, 1500733: True}


@pytest.fixture(scope="module")
def mth_random_cohort(tmp_path_factory) -> Cohort:
    from meds_testing_helpers.dataset_generator import (
        DatetimeGenerator, MEDSDataDFGenerator, MEDSDatasetGenerator, PositiveIntGenerator,
        PositiveTimeDeltaGenerator, ProportionGenerator)

    with warnings.catch_warnings():  # its date parsing warns about time zones; dates here are naive
        warnings.simplefilter("ignore", UserWarning)
        gen = MEDSDataDFGenerator(
            birth_datetime_per_subject=DatetimeGenerator([np.datetime64("1950-01-01", "us"),
                                                          np.datetime64("1975-06-15", "us")]),
            start_data_datetime_per_subject=DatetimeGenerator([np.datetime64("2010-01-01", "us")]),
            time_between_birth_and_data_per_subject=PositiveTimeDeltaGenerator(
                [np.timedelta64(40 * 365, "D"), np.timedelta64(55 * 365, "D")]),
            time_between_data_and_death_per_subject=PositiveTimeDeltaGenerator(
                [np.timedelta64(30, "D"), np.timedelta64(400, "D")]),
            time_between_data_events_per_subject=PositiveTimeDeltaGenerator(
                [np.timedelta64(3, "D"), np.timedelta64(12, "D"), np.timedelta64(30, "D")]),
            num_events_per_subject=PositiveIntGenerator([5, 20, 60]),
            num_measurements_per_event=PositiveIntGenerator([1, 2, 3]),
            num_static_measurements_per_subject=PositiveIntGenerator([1]),
            frac_dynamic_code_occurrences_with_value=ProportionGenerator([0, 0.5, 1.0]),
            frac_static_code_occurrences_with_value=ProportionGenerator([0]),
            static_vocab_size=4, dynamic_vocab_size=12, frac_subjects_with_death=0.5)
        ds = MEDSDatasetGenerator(data_generator=gen, shard_size=100, dataset_name="mth_random").sample(
            400, np.random.default_rng(20240))
    out = tmp_path_factory.mktemp("mth_random") / "cohort"
    ds.write(out)
    return Cohort(out, predicates_file=MTH_TASK_DIR / "random_predicates.yaml")


@pytest.mark.parametrize("name", ["mth/random_all", "mth/random_first_offset", "mth/random_last"])
def test_mth_random_dataset_agrees_with_aces(name, mth_random_cohort, tmp_path):
    a = check(mth_task(name), mth_random_cohort, config_path(name), tmp_path)
    assert_informative(a, name)
    if name == "mth/random_all":  # several samples per subject
        assert a.ours["subject_id"].n_unique() < a.ours.height


# ---------------------------------------------------------------------------- (c) boundary cases
# the boundary cohort's map: the factory's synthetic-like codes plus what onset/t2d_10y v2 excludes on
BOUNDARY_PREDICATES = {**SYNTHETIC_LIKE_PREDICATES, "hba1c": {"code": "LOINC/4548-4", "unit": "%"},
                       "metformin": {"code": "RXNORM/6809"}}


def boundary_events() -> list[tuple]:
    """Hand-written events that sit on window edges (t = 2020-01-01 unless noted; 2020 is a leap year)."""
    rx, dx, tail = "RXNORM/2555", "ICD10CM/C34.90", "ICD10CM/I10"
    return [
        # oncology (index: first cancer_treatment; inclusion dx in (t-365d, t]; exclusion death (-inf, t])
        (1, "2019-01-01", dx), (1, "2020-01-01", rx), (1, "2021-06-01", tail),                  # dx at t-365d: out
        (2, "2019-01-01 00:00:01", dx), (2, "2020-01-01", rx), (2, "2021-06-01", tail),         # dx just inside
        (3, "2020-01-01", dx), (3, "2020-01-01", rx), (3, "2020-01-01", "RXNORM/40048"),        # dx at t, 2 codes at t
        (3, "2020-12-31", "MEDS_DEATH"),                                                         # death at t+365d: pos
        (4, "2019-12-01", dx), (4, "2020-01-01", rx), (4, "2020-01-01", "MEDS_DEATH"),          # death at t: excluded
        (5, "2019-12-01", dx), (5, "2020-01-01", rx), (5, "2020-12-31 00:00:01", "MEDS_DEATH"),  # just after: neg
        (6, "2019-06-01", rx), (6, "2019-12-01", dx), (6, "2020-01-01", rx), (6, "2021-06-01", tail),  # 1st rx w/o dx
        (7, None, "GENDER/F"), (7, "2019-12-01", dx), (7, "2020-01-01", rx),                    # censored negative
        (7, "2020-04-01", "ICD10CM/C78.0"),                                                      # metastasis: pos
        (8, "2019-12-01", dx), (8, "2019-12-15", "ICD10CM/C79.9"), (8, "2020-01-01", rx),       # prior metastasis
        (8, "2020-03-01", "ONCOLOGY/PROGRESSION"), (8, "2021-06-01", tail),
        (9, "2019-12-01", dx), (9, "2020-01-01", rx), (9, "2020-01-01", "ICD10PCS/30233N1"),    # transfusion at t
        (9, "2020-01-02", "SYNTH/LEAK_OUTCOME"), (9, "2020-06-01", "ICD10PCS/30233N1"),
        (9, "2020-12-31 00:00:01", tail),                                                        # record just covers
        (10, "2019-12-01", dx), (10, "2020-01-01", rx), (10, "2020-12-30 23:59:59", tail),       # just too short
        # onset v2 (index: first timed event that is not MEDS_BIRTH + 365d; exclusion t2d / metformin /
        # HbA1c >= 6.5 / death at or before it; label t2d in (t, t + 3285d]; 2000-01-01 -> t = 2000-12-31,
        # t + 3285d = 2009-12-29)
        (20, None, "GENDER/M"), (20, "1990-01-01", "MEDS_BIRTH"), (20, "2000-01-01", tail),
        (20, "2000-12-31", "ICD10CM/E11.9"),                                                            # t2d at t
        (21, "1990-01-01", "MEDS_BIRTH"), (21, "2000-01-01", tail), (21, "2009-12-29", "ICD10CM/E11.9"),  # pos
        (22, "1990-01-01", "MEDS_BIRTH"), (22, "2000-01-01", tail), (22, "2009-12-29 00:00:01", "ICD10CM/E11.65"),
        (23, "1990-01-01", "MEDS_BIRTH"), (23, "2000-01-01", tail), (23, "2011-01-01", tail),            # neg
        (24, "1990-01-01", "MEDS_BIRTH"), (24, "1990-01-01", tail), (24, "1995-01-01", "ICD10CM/E11.9"),  # t = birth + 365d
        (25, "1990-01-01", "MEDS_BIRTH"),                                                                # no record
        (26, "2000-01-01", tail), (26, "2000-06-01", "LOINC/4548-4", 6.5), (26, "2005-01-01", "ICD10CM/E11.9"),
        (27, "2000-01-01", tail), (27, "2000-06-01", "LOINC/4548-4", 6.49), (27, "2005-01-01", "ICD10CM/E11.9"),
        (28, "2000-01-01", tail), (28, "2000-12-31", "RXNORM/6809"), (28, "2005-01-01", "ICD10CM/E11.9"),  # at t
        (29, "2000-01-01", tail), (29, "2000-06-01", "MEDS_DEATH"),                                        # dead at t
        # ICU (t = first admission + 24h; excl. death (-inf, t], discharge (t-24h, t]; death up to discharge)
        (30, "2020-01-01", "ICU_ADMISSION"), (30, "2020-01-02", "ICU_DISCHARGE"),              # discharge at t
        (31, "2020-01-01", "ICU_ADMISSION"), (31, "2020-01-02 00:00:01", "ICU_DISCHARGE"),     # just after t: neg
        (31, "2020-01-05", "ICU_ADMISSION"), (31, "2020-01-06", "MEDS_DEATH"),                 # 2nd stay ignored
        (32, "2020-01-01", "ICU_ADMISSION"), (32, "2020-01-03", "MEDS_DEATH"), (32, "2020-01-03", "ICU_DISCHARGE"),
        (33, "2020-01-01", "ICU_ADMISSION"), (33, "2020-01-04", "MEDS_DEATH"),                 # no discharge: pos
        (34, "2020-01-01", "ICU_ADMISSION"), (34, "2020-01-04", tail),                          # open window: out
        (35, "2020-01-01", "ICU_ADMISSION"), (35, "2020-01-02", "MEDS_DEATH"),                 # death at t: out
    ]


@pytest.mark.parametrize("name", ACES_TASKS)
def test_boundary_cases_agree_with_aces(name, tmp_path):
    cohort = Cohort(make_cohort(tmp_path / "edges", boundary_events(), predicates=BOUNDARY_PREDICATES))
    missing = TASKS[name].dataset_predicates() - set(cohort.predicate_map())
    if missing:  # e.g. the MEDS-DEV replicas' hospital codes; tests/test_meds_dev_replicas.py has their edges
        pytest.skip(f"the boundary cohort's map lacks {sorted(missing)}")
    a = check(TASKS[name], cohort, config_path(name), tmp_path)
    assert a.ours.height > 0


def test_value_bounds_and_code_matchers_agree(tmp_path):
    """Numeric values exactly on the (inclusive) bounds, prefix vs exact codes, min_count, with the random
    dataset's predicate map and test tasks. ACES bounds are exclusive unless *_inclusive: true is given,
    which aces_bridge does; a wrong conversion shows up here."""
    import yaml
    preds = yaml.safe_load((MTH_TASK_DIR / "random_predicates.yaml").read_text())
    trig, inc = "dynamic//3", "dynamic//5"
    ev = [
        # random_last: label low_value = prefix dynamic//1|dynamic//2 with -0.5 <= value <= 0.25 in (t+7d, t+90d]
        (1, "2020-01-01", trig), (1, "2020-02-01", "dynamic//1", -0.5),           # on the lower bound: pos
        (2, "2020-01-01", trig), (2, "2020-02-01", "dynamic//2", 0.25),           # on the upper bound: pos
        (3, "2020-01-01", trig), (3, "2020-02-01", "dynamic//1", 0.26),           # above: neg
        (4, "2020-01-01", trig), (4, "2020-02-01", "dynamic//12", 0.0),           # prefix matches dynamic//12
        (5, "2020-01-01", trig), (5, "2020-02-01", "dynamic//1"),                 # no value: neg
        (6, "2020-01-01", trig), (6, "2020-01-08", "dynamic//1", 0.0),            # at t + 7d: not in window
        (6, "2020-03-31", "dynamic//2", 0.0),                                      # at t + 90d: pos
        # random_all: inclusion inc_code x2 in (t-90d, t]; exclusion exc_code (dynamic//7 >= 0.5) in (t-30d, t];
        # label outcome_code (dynamic//9 or dynamic//10 exactly, value <= 0) in (t, t+60d]
        (7, "2020-01-01", inc), (7, "2020-02-01", "dynamic//6"), (7, "2020-03-01", trig),
        (7, "2020-03-02", "dynamic//10", 0.0),                                     # on the bound: pos
        (7, "2020-03-03", "dynamic//100", -1.0),                                   # regex is anchored
        (8, "2020-01-01", inc), (8, "2020-02-01", inc), (8, "2020-02-29", "dynamic//7", 0.5),
        (8, "2020-03-01", trig),                                                   # excluded (0.5 >= 0.5)
        (9, "2020-01-01", inc), (9, "2020-02-01", inc), (9, "2020-02-29", "dynamic//7", 0.49),
        (9, "2020-03-01", trig), (9, "2020-03-02", "dynamic//9", 0.01),           # kept, neg
        (9, "2020-06-01", "MEDS_DEATH"),
        (10, "2020-02-01", inc), (10, "2020-03-01", trig),                         # one inc_code only: out
    ]
    cohort = Cohort(make_cohort(tmp_path / "bounds", ev, predicates=preds))
    last = check(mth_task("mth/random_last"), cohort, config_path("mth/random_last"), tmp_path)
    assert dict(last.ours.select("subject_id", "boolean_value").iter_rows()) == {
        1: True, 2: True, 3: False, 4: True, 5: False, 6: True, 7: False, 8: False, 9: False, 10: False}
    every = check(mth_task("mth/random_all"), cohort, config_path("mth/random_all"), tmp_path)
    assert dict(every.ours.select("subject_id", "boolean_value").iter_rows()) == {7: True, 9: False}


def test_bridge_gives_the_same_rows_when_run_again(tmp_path):
    """run_aces copies the config per shard: ACES 0.7.3 shifts windows below an offset window in place
    (extract_subtree: ``endpoint_expr.offset += subtree_root_offset``), so reusing one config for a second
    shard moved icu/mortality_24h's prediction time by another 24 h per call."""
    cohort = Cohort(make_cohort(tmp_path / "edges", boundary_events(), predicates=BOUNDARY_PREDICATES))
    cfg = load_config(config_path("icu/mortality_24h"), cohort.predicate_map(), tmp_path)
    first = run_aces(cfg, cohort.data_files())
    assert first.height > 0
    assert_frame_equal(run_aces(cfg, cohort.data_files() * 2), pl.concat([first, first]).sort(KEYS))


def test_boundary_cases_hand_checked(tmp_path):
    """The boundary cohort's labels for a few tasks, worked out by hand (both sides already agree)."""
    cohort = Cohort(make_cohort(tmp_path / "edges", boundary_events(), predicates=BOUNDARY_PREDICATES))
    got = {n: dict(check(TASKS[n], cohort, config_path(n), tmp_path).ours
                   .select("subject_id", "boolean_value").iter_rows())
           for n in ("oncology/mortality_1y", "icu/mortality_24h", "onset/t2d_10y")}
    assert got["oncology/mortality_1y"] == {2: False, 3: True, 5: False, 8: False, 9: False}
    assert got["icu/mortality_24h"] == {31: False, 32: True, 33: True}
    # v2: 20, 26, 28 have diabetes by t (code, HbA1c on the bound, metformin), 29 and 3, 4, 31-35 died by t;
    # short records are censored unless the subject died later (5)
    assert got["onset/t2d_10y"] == {21: True, 22: False, 23: False, 24: True, 27: True, 5: False}
