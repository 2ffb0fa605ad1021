"""Task-level input windows (task YAML `input_window: W`): models see timed inputs in [t - W, t] only.

Planted faults: a lab 3 days before the ICU admission that carries the label must not reach
bag-of-events features, TaskData.visible_events or a sidecar reader when the task declares a window,
and must reach them when it does not (so the test can fail). Static rows (sex, MEDS_BIRTH, a PRS
without a time) stay visible.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pytest

from benchmark.data.cohort import Cohort
from benchmark.data.leakage import visible_events, with_input_window
from benchmark.errors import UserError
from benchmark.taskspec import load_task_file
from tests.cohort_factory import SYNTHETIC_LIKE_PREDICATES, make_cohort

D = datetime


# ---------------------------------------------------------------------------- the guard itself
def test_guard_window_is_closed_at_its_start_and_keeps_static_rows():
    ev = pl.DataFrame({
        "subject_id": [1, 1, 1, 1, 1, 1],
        "time": [None, D(2020, 1, 1), D(2020, 1, 4), D(2020, 1, 4, 12), D(2020, 1, 5), D(2020, 1, 6)],
        "code": ["GENDER/F", "OLD", "AT_START", "INSIDE", "AT_T", "FUTURE"],
    }).lazy()
    samples = pl.DataFrame({"subject_id": [1], "prediction_time": [D(2020, 1, 5)]})
    seen = lambda frame: visible_events(ev, frame).collect()["code"].to_list()  # noqa: E731
    assert seen(samples) == ["GENDER/F", "OLD", "AT_START", "INSIDE", "AT_T"]          # no window
    assert seen(with_input_window(samples, 86400.0)) == ["GENDER/F", "AT_START", "INSIDE", "AT_T"]
    assert seen(with_input_window(samples, 0.0)) == ["GENDER/F"]                       # static only
    out = visible_events(ev, with_input_window(samples, 86400.0)).collect()
    assert "input_start" not in out.columns and "prediction_time" in out.columns


def test_guard_window_exempts_demographic_rows_but_not_from_the_prediction_time():
    ev = pl.DataFrame({"subject_id": [1, 1, 1, 1],
                       "time": [D(1950, 1, 1), D(2019, 1, 1), D(2019, 6, 1), D(2021, 1, 1)],
                       "code": ["MEDS_BIRTH", "RACE/WHITE", "LAB", "ETHNICITY/LATE"]}).lazy()
    samples = with_input_window(pl.DataFrame({"subject_id": [1], "prediction_time": [D(2020, 1, 1)]}), 0.0)
    exempt = pl.col("code").is_in(["MEDS_BIRTH"]) | pl.col("code").str.starts_with("RACE/") \
        | pl.col("code").str.starts_with("ETHNICITY/")
    got = visible_events(ev, samples, window_exempt=exempt).collect()["code"].to_list()
    assert got == ["MEDS_BIRTH", "RACE/WHITE"]


# ---------------------------------------------------------------------------- planted fault, end to end
ADMIT = "2020-03-10 08:00"
PREDICATES = {**SYNTHETIC_LIKE_PREDICATES, "hospital_discharge": {"code": "HOSPITAL_DISCHARGE"}}


def _icu_cohort(root):
    """40 ICU patients: even subjects die in hospital (on the ward, 3 days after ICU discharge);
    only they carry a planted lab 3 days before the ICU admission; everyone has labs in the window."""
    events, cxr = [], []
    for s in range(1, 41):
        dies = s % 2 == 0
        events += [(s, None, "GENDER/F" if s % 3 else "GENDER/M"), (s, "1950-01-01", "MEDS_BIRTH"),
                   (s, "2018-05-01", "ICD10CM/I10"),                      # old history, before the window
                   (s, "2020-03-09 20:00", "HOSPITAL_ADMISSION"),
                   (s, ADMIT, "ICU_ADMISSION"), (s, "2020-03-10 08:00", "LOINC/2160-0", 1.0 + s / 100),
                   (s, "2020-03-10 20:00", "LOINC/2160-0", 1.1), (s, "2020-03-14 10:00", "ICU_DISCHARGE")]
        if dies:
            events += [(s, "2020-03-07 08:00", "LAB/PLANTED", 9.0),         # 3 days before the ICU admission
                       (s, "2020-03-17 10:00", "MEDS_DEATH"), (s, "2020-03-17 10:00", "HOSPITAL_DISCHARGE")]
        else:
            events += [(s, "2020-03-18 10:00", "HOSPITAL_DISCHARGE"), (s, "2023-01-01", "VISIT/PRIMARY_CARE")]
        cxr += [(s, D(2020, 3, 7, 9) if dies else D(2020, 3, 7, 10), [9.0, 9.0]),   # before the window
                (s, D(2020, 3, 10, 12), [0.1 * s, 0.0]),                             # inside it
                (s, D(2020, 3, 12, 12), [5.0, 5.0])]                                 # after t
    splits = {s: ("train" if s <= 30 else "tuning" if s <= 35 else "held_out") for s in range(1, 41)}
    root = make_cohort(root, events, splits=splits, predicates=PREDICATES)
    (root / "modalities").mkdir()
    pl.DataFrame({"subject_id": [c[0] for c in cxr], "time": [c[1] for c in cxr], "embedding": [c[2] for c in cxr]},
                 schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "embedding": pl.List(pl.Float32)}
                 ).write_parquet(root / "modalities" / "cxr.parquet")
    pl.DataFrame({"subject_id": list(range(1, 41)), "time": [None] * 40, "embedding": [[float(s)] for s in range(1, 41)]},
                 schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "embedding": pl.List(pl.Float32)}
                 ).write_parquet(root / "modalities" / "prs.parquet")
    return Cohort(root)


def _task_data(task, cohort):
    from benchmark.labels import extract_labels
    from benchmark.runner import task_data
    return task_data(task, cohort, 0, extract_labels(task, cohort).labels)


def test_planted_pre_window_lab_reaches_no_model_input(tmp_path, cache):
    from benchmark.features.bag_of_events import EXTENDED, featurize  # the set with last values and counted demographic codes
    from benchmark.task_registry import load_tasks

    cohort = _icu_cohort(tmp_path / "c")
    windowed = load_tasks()["icu/in_hospital_mortality_24h"]
    assert windowed.input_window == "24h"
    open_task = windowed.model_copy(update={"input_window": None})
    results = {}
    for tag, task in (("windowed", windowed), ("open", open_task)):
        data = _task_data(task, cohort)
        assert data.labels.height == 40 and int(data.labels["boolean_value"].sum()) == 20
        feats = featurize(data, feature_set=EXTENDED)
        ev = data.visible_events(("train", "tuning", "held_out")).collect()
        cxr = data.visible_modality("cxr", ("train", "tuning", "held_out")).collect()
        prs = data.visible_modality("prs", ("train", "tuning", "held_out")).collect()
        results[tag] = (feats, ev, cxr, prs, data)

    feats, ev, cxr, prs, data = results["windowed"]
    assert not any("PLANTED" in n or "I10" in n or "HOSPITAL_ADMISSION" in n for n in feats.names), feats.names
    assert "count:ICU_ADMISSION" in feats.names and "last:LOINC/2160-0" in feats.names  # at t - 24h: visible
    assert set(ev["code"]) >= {"ICU_ADMISSION", "LOINC/2160-0", "MEDS_BIRTH", "GENDER/F"}
    assert not set(ev["code"]) & {"LAB/PLANTED", "ICD10CM/I10", "HOSPITAL_ADMISSION"}
    assert cxr.height == 40 and cxr["time"].min() == D(2020, 3, 10, 12)  # one in-window study each
    assert prs.height == 40 and prs["time"].null_count() == 40            # the static PRS stays
    # the window enters the per-task cache folder (no stale features from an unwindowed build)
    assert data.work_dir.name.endswith("@input86400s")
    # the age features still come from the birth date (demographics are not windowed)
    age = feats.block("train")[:, feats.names.index("age_at_prediction")].toarray().ravel()
    assert np.all(age > 69)

    feats_o, ev_o, cxr_o, prs_o, data_o = results["open"]  # the same task without its window sees the fault
    assert "count:LAB/PLANTED" in feats_o.names and "count:ICD10CM/I10" in feats_o.names
    assert "LAB/PLANTED" in set(ev_o["code"])
    assert cxr_o.height == 80 and prs_o.height == 40
    assert data_o.work_dir.name == "icu__in_hospital_mortality_24h"


def test_static_only_window_shows_no_timed_event(tmp_path, cache):
    from benchmark.features.bag_of_events import EXTENDED, featurize  # the set with last values and counted demographic codes
    from benchmark.task_registry import load_tasks

    cohort = _icu_cohort(tmp_path / "c")
    task = load_tasks()["icu/in_hospital_mortality_24h"].model_copy(update={"input_window": "0"})
    data = _task_data(task, cohort)
    ev = data.visible_events(("train", "tuning", "held_out")).collect()
    assert set(ev["code"]) == {"GENDER/F", "GENDER/M", "MEDS_BIRTH"}
    assert data.visible_modality("cxr", "train").collect().height == 0
    assert data.visible_modality("prs", "train").collect().height == 30
    feats = featurize(data, feature_set=EXTENDED)
    # only the static codes remain as counts; no lab, no encounter
    assert {n for n in feats.names if n.startswith(("count:", "last:"))} == {"count:GENDER/F", "count:GENDER/M"}


# ---------------------------------------------------------------------------- schema errors
BASE = """version: 1
kind: binary
description: x
index: {predicate: icu_admission, occurrence: first, offset: 24h}
label: {outcome: death, window: {start: "0", end: 30d}}
metrics: [auroc]
main_metric: auroc
"""


@pytest.mark.parametrize("value, words", [
    ("-24h", "negative"), ("inf", "unbounded"), ("24", "no unit"), ("soon", "not a duration"),
    ("{start: index}", "one duration"), ("[24h]", "one duration"), ("true", "one duration")])
def test_bad_input_window_names_file_field_and_fix(tmp_path, value, words):
    p = tmp_path / "t.yaml"
    p.write_text(BASE + f"input_window: {value}\n")
    with pytest.raises(UserError) as e:
        load_task_file(p, "x/t")
    text = str(e.value)
    assert words in text and "input_window" in text and str(p) in text
    assert "static rows only" in text  # the fix lists the accepted forms


def test_input_window_is_optional_and_out_of_the_hash_when_absent(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text(BASE)
    plain = load_task_file(p, "x/t")
    assert plain.input_window is None and plain.input_lookback_s() is None and plain.input_window_tag() == ""
    # the hash of a task without the field is the one it had before the field existed
    import hashlib
    import json
    dump = plain.model_dump(mode="json")
    dump.pop("input_window")
    dump.pop("risk_factors")                 # issue 16: absent risk_factors stay out of the hash too
    del dump["label"]["end_at_missing"]
    assert plain.content_hash() == hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()[:16]
    p.write_text(BASE + "input_window: 24h\n")
    w = load_task_file(p, "x/t")
    assert w.input_lookback_s() == 86400 and w.content_hash() != plain.content_hash()
    p.write_text(BASE + "input_window: 0\n")
    assert load_task_file(p, "x/t").input_lookback_s() == 0
