"""`tasks import-aces`: ACES / MEDS-DEV task configs translated into our task schema.

Oracles: ACES itself (es-aces 0.7.3, run in-process by tests/aces/aces_bridge.py) on the real MIMIC-IV
demo MEDS (both ETL versions) and on hand-written cohorts; hand computation for the window edges.
MEDS-DEV's files are vendored verbatim in tests/data/meds_dev/ (MIT, meds-dev 0.0.14).
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest
import yaml

from benchmark.aces_import import format_duration, import_aces
from benchmark.durations import parse_duration
from benchmark.errors import UserError
from benchmark.labels import extract_labels
from benchmark.predicate_maps import load_predicate_map
from benchmark.predicates import CodeRule
from benchmark.task_registry import load_tasks
from benchmark.taskspec import TaskSpec
from tests.aces.aces_bridge import aces_predicate, row_diff, run_aces
from tests.cohort_factory import make_cohort

DATA = Path(__file__).parent / "data" / "meds_dev"
PREDICATES = DATA / "datasets" / "MIMIC-IV" / "predicates.yaml"
ABNORMAL = {  # our task -> MEDS-DEV config
    f"meds_dev/{p.split('/')[1]}_first_24h": DATA / "tasks" / "abnormal_lab" / p / "first_24h.yaml"
    for p in ("blood_chemistry/elevated_creatinine", "blood_chemistry/hyponatremia",
              "blood_chemistry/metabolic_acidosis", "cbc/anemia", "cbc/leukocytosis", "cbc/thrombocytopenia",
              "vital/hypotension")}
REPLICAS = {"meds_dev/mortality_in_icu_first_24h": DATA / "tasks" / "mortality" / "in_icu" / "first_24h.yaml",
            "meds_dev/readmission_30d": DATA / "tasks" / "readmission" / "general_hospital" / "30d.yaml"}
ALL = {**ABNORMAL, **REPLICAS}
COLS = ["subject_id", "prediction_time", "boolean_value"]
TASKS = load_tasks()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))


def spec(task: dict, name: str = "imported/t") -> TaskSpec:
    return TaskSpec.model_validate({**task, "name": name})


def write(tmp_path: Path, body: dict, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(body, sort_keys=False))
    return p


def base_config(**windows) -> dict:
    return {"predicates": {"adm": {"code": "ADM"}, "dis": {"code": "DIS"}, "death": {"code": "MEDS_DEATH"},
                           "lab": {"code": "LAB"}},
            "trigger": "adm",
            "windows": {"input": {"start": None, "end": "trigger + 24h", "start_inclusive": True,
                                  "end_inclusive": True, "index_timestamp": "end"},
                        "target": {"start": "input.end", "end": "start + 2 days", "start_inclusive": False,
                                   "end_inclusive": True, "label": "death"},
                        **windows}}


# ---------------------------------------------------------------------------- translation, construct by construct
def test_trigger_offset_label_window_and_pytimeparse(tmp_path):
    task, notes = import_aces(write(tmp_path, base_config()))
    assert task["index"] == {"predicate": "adm", "occurrence": "all", "offset": "24h"}
    assert task["label"] == {"outcome": "death", "window": {"start": "0", "end": "48h"}, "censoring": "negative"}
    assert task["predicates"]["death"] == {"rule": {"code": "MEDS_DEATH"}}
    assert notes == [] and spec(task).label.window.seconds() == (0.0, 172800.0)


def test_has_constraints_become_criteria_with_their_edges(tmp_path):
    cfg = base_config(gap={"start": "trigger", "end": "start + 48h", "start_inclusive": False, "end_inclusive": True,
                           "has": {"dis": "(None, 0)"}},
                      adult={"start": "end - 6570d", "end": "trigger", "start_inclusive": True,
                             "end_inclusive": False, "has": {"adm": "(2, None)"}},
                      after={"start": "target.end", "end": None, "start_inclusive": False, "end_inclusive": True,
                             "has": {"_ANY_EVENT": "(1, None)"}})
    task, _ = import_aces(write(tmp_path, cfg))
    assert task["exclusion"] == [{"predicate": "dis", "start": "-24h", "end": "24h"}]
    assert task["inclusion"] == [
        {"predicate": "adm", "start": "-6571d", "end": "-24h", "min_count": 2, "start_inclusive": True,
         "end_inclusive": False},
        {"predicate": "_any_event", "start": "48h", "end": "inf"}]
    spec(task)


def test_first_occurrence_idiom(tmp_path):
    cfg = base_config(before={"start": None, "end": "trigger", "start_inclusive": True, "end_inclusive": False,
                              "has": {"adm": "(None, 0)"}})
    task, _ = import_aces(write(tmp_path, cfg))
    assert task["index"]["occurrence"] == "first" and "exclusion" not in task


def test_or_and_code_less_range_and_end_at(tmp_path):
    cfg = base_config()
    cfg["predicates"].update({"dis_or_death": {"expr": "or(dis, death)"},
                              "high": {"code": None, "value_min": 1.3, "value_min_inclusive": False},
                              "lab_high": {"expr": "and(lab, high)"}})
    cfg["windows"]["target"].update(end="start -> dis_or_death", label="lab_high")
    task, notes = import_aces(write(tmp_path, cfg))
    assert task["predicates"]["dis_or_death"] == {"any_of_predicates": ["dis", "death"]}
    assert task["predicates"]["lab_high"] == {"of": "lab", "value_min": 1.3, "value_min_inclusive": False}
    assert task["label"] == {"outcome": "lab_high", "window": {"start": "0", "end": "inf"},
                             "end_at": "dis_or_death", "end_at_missing": "drop", "censoring": "negative"}
    assert "read per row" in notes[0]
    spec(task)


def test_placeholders_and_a_predicates_file_make_dataset_predicates(tmp_path):
    cfg = base_config()
    cfg["predicates"]["adm"] = "???"
    cfg["predicates"]["lab"] = {"code": "???"}
    cfg["windows"]["target"]["has"] = {"lab": "(1, None)"}
    task, _ = import_aces(write(tmp_path, cfg))
    t = spec(task)
    assert t.dataset_predicates() == {"adm", "lab"}
    preds = write(tmp_path, {"predicates": {"adm": {"code": {"regex": "^ADM//"}}, "death": {"code": "X"}}}, "p.yaml")
    with pytest.raises(UserError, match=r"does not map \['lab'\]"):
        import_aces(write(tmp_path, cfg), preds)


@pytest.mark.parametrize("change, field, words", [
    (lambda c: c["predicates"].update(x={"expr": "and(lab, dis)"}) or c["windows"]["target"].update(label="x"),
     "predicates.x.expr", "and(predicate, code-less range)"),
    (lambda c: c["windows"]["input"].update(has={"lab": "(1, 3)"}), "windows.input.has.lab", "count bounds (1, 3)"),
    (lambda c: c["windows"]["target"].update(start_inclusive=True), "windows.target", "(start, end]"),
    (lambda c: c["windows"].update(ev={"start": "trigger", "end": "start -> dis", "start_inclusive": False,
                                       "end_inclusive": True, "has": {"lab": "(None, 0)"}}),
     "windows.ev.has", "event-bound"),
    (lambda c: c["windows"].update(ev={"start": "trigger", "end": "start -> dis", "start_inclusive": False,
                                       "end_inclusive": True}), "windows.ev", "outside the label window"),
    (lambda c: c["predicates"].update(r={"code": None, "value_max": 3}) or c["windows"]["target"].update(label="r"),
     "windows.target.label", "code-less range"),
    (lambda c: c["predicates"]["lab"].update(unit="mg"), "predicates.lab", "other columns"),
])
def test_refusals_name_the_construct(tmp_path, change, field, words):
    cfg = base_config()
    cfg["windows"]["input"]["has"] = {"lab": "(None, 0)"}
    change(cfg)
    with pytest.raises(UserError) as e:
        import_aces(write(tmp_path, cfg))
    assert e.value.field == field and words in e.value.message


def test_static_demographics_are_refused(tmp_path):
    cfg = base_config()
    cfg["patient_demographics"] = {"male": {"code": "SEX//M"}}
    cfg["windows"]["input"]["has"] = {"male": "(1, None)"}
    with pytest.raises(UserError, match="static"):
        import_aces(write(tmp_path, cfg))


def test_format_duration_round_trips():
    for s in (0.0, 3600.0, 86400.0, 172800.0, 30 * 86400.0, -6571 * 86400.0, 90.0, 61.0, math.inf, -math.inf):
        assert parse_duration(format_duration(s)) == s


# ---------------------------------------------------------------------------- MEDS-DEV's files
def test_meds_dev_predicates_file_is_a_predicate_map():
    m = load_predicate_map(PREDICATES)
    assert m["hospital_admission"] == CodeRule(regex="^HOSPITAL_ADMISSION//.*")
    assert m["creatinine_mgdl"] == CodeRule(any_of=("LAB//50912//mg/dL", "LAB//52546//mg/dL"))


def test_aces_map_and_of_code_and_range(tmp_path):
    p = write(tmp_path, {"predicates": {"cr": {"code": {"any": ["A", "B"]}}, "hi": {"code": None, "value_min": 1.3},
                                        "cr_hi": {"expr": "and(cr, hi)"}, "either": {"expr": "or(cr, cr_hi)"}}})
    m = load_predicate_map(p)
    assert m["cr_hi"] == CodeRule(any_of=("A", "B"), value_min=1.3, value_min_inclusive=False)
    assert "hi" not in m and len(m["either"].rules) == 2
    bad = write(tmp_path, {"predicates": {"a": {"code": "A"}, "b": {"code": "B"}, "ab": {"expr": "and(a, b)"}}}, "b.yaml")
    with pytest.raises(UserError) as e:
        load_predicate_map(bad)
    assert e.value.field == "predicates.ab.expr"


@pytest.mark.parametrize("task", sorted(ABNORMAL))
def test_committed_meds_dev_tasks_are_the_importers_output(task):
    path = Path(__file__).parent.parent / "tasks" / f"{task}.yaml"
    committed = yaml.safe_load(path.read_text())
    got, _ = import_aces(ABNORMAL[task], PREDICATES, list(committed["references"]))
    # the description names the config path it was imported from
    committed.pop("description"), got.pop("description")
    assert got == committed
    assert TASKS[task].label.censoring == "negative"


def test_imported_replicas_match_the_hand_written_ones_in_structure():
    task, _ = import_aces(REPLICAS["meds_dev/mortality_in_icu_first_24h"], PREDICATES)
    t = spec(task)
    assert (t.index.predicate, t.index.occurrence, t.index.offset) == ("icu_admission", "all", "24h")
    assert t.label.end_at == "discharge_or_death" and t.label.end_at_missing == "drop"
    task, _ = import_aces(REPLICAS["meds_dev/readmission_30d"], PREDICATES)
    t = spec(task)
    assert [(c.predicate, c.start, c.end) for c in t.inclusion] == [("hospital_admission", "-inf", "0"),
                                                                    ("_any_event", "30d", "inf")]


# ---------------------------------------------------------------------------- schema extensions
def _labels(tmp_path, task: dict, events, predicates=None):
    root = make_cohort(tmp_path / "c", events, predicates=predicates or {"adm": {"code": "ADM"}, "lab": {"code": "LAB"}})
    from benchmark.data.cohort import Cohort
    return extract_labels(spec(task), Cohort(root), use_cache=False).labels


def _task(**kw) -> dict:
    t = {"version": 1, "kind": "binary", "description": "d", "index": {"predicate": "adm"},
         "label": {"outcome": "lab", "window": {"start": "0", "end": "24h"}, "censoring": "negative"},
         "metrics": ["auroc"], "main_metric": "auroc"}
    t.update(kw)
    return t


def test_criterion_edges_inclusive_and_exclusive(tmp_path):
    ev = [(1, "2020-01-01", "ADM"), (1, "2019-12-31", "LAB"),        # lab exactly at t - 24h
          (2, "2020-01-01", "ADM"), (2, "2019-12-31 00:00:01", "LAB"),
          (3, "2020-01-01", "ADM"), (3, "2020-01-01", "LAB")]        # lab exactly at t
    closed = _task(exclusion=[{"predicate": "lab", "start": "-24h", "end": "0", "start_inclusive": True,
                               "end_inclusive": False}])
    assert _labels(tmp_path, closed, ev)["subject_id"].to_list() == [3]
    default = _task(exclusion=[{"predicate": "lab", "start": "-24h", "end": "0"}])  # (t-24h, t]
    assert _labels(tmp_path / "b", default, ev)["subject_id"].to_list() == [1]


def test_exclusive_bounds_and_task_local_rule(tmp_path):
    ev = [(1, "2020-01-01", "ADM"), (1, "2020-01-01 01:00", "CR", 1.3),
          (2, "2020-01-01", "ADM"), (2, "2020-01-01 01:00", "CR", 1.31)]
    task = _task(predicates={"cr": {"rule": {"code": "CR"}},
                             "cr_hi": {"of": "cr", "value_min": 1.3, "value_min_inclusive": False}},
                 label={"outcome": "cr_hi", "window": {"start": "0", "end": "24h"}, "censoring": "negative"})
    assert spec(task).dataset_predicates() == {"adm"}
    got = _labels(tmp_path, task, ev)
    assert got["boolean_value"].to_list() == [False, True]


def test_end_at_is_searched_from_a_later_window_start(tmp_path):
    # discharge at t + 1h (before the window starts at t + 24h) and at t + 30h; death at t + 29h
    ev = [(1, "2020-01-01", "ADM"), (1, "2020-01-01 01:00", "DIS"), (1, "2020-01-02 05:00", "MEDS_DEATH"),
          (1, "2020-01-02 06:00", "DIS")]
    task = _task(label={"outcome": "death", "window": {"start": "24h", "end": "inf"}, "end_at": "dis",
                        "end_at_missing": "drop", "censoring": "negative"})
    got = _labels(tmp_path, task, ev, {"adm": {"code": "ADM"}, "dis": {"code": "DIS"}, "death": {"code": "MEDS_DEATH"}})
    assert got["boolean_value"].to_list() == [True]   # the window ends at the discharge after t + 24h


def test_new_fields_at_their_defaults_keep_the_hash():
    plain = spec(_task(exclusion=[{"predicate": "lab", "start": "-24h", "end": "0"}],
                       predicates={"x": {"of": "lab", "value_min": 1}}))
    explicit = spec(_task(exclusion=[{"predicate": "lab", "start": "-24h", "end": "0", "start_inclusive": False,
                                      "end_inclusive": True}],
                          predicates={"x": {"of": "lab", "value_min": 1, "value_min_inclusive": True}}))
    assert plain.content_hash() == explicit.content_hash()
    changed = spec(_task(exclusion=[{"predicate": "lab", "start": "-24h", "end": "0", "start_inclusive": True}],
                         predicates={"x": {"of": "lab", "value_min": 1}}))
    assert changed.content_hash() != plain.content_hash()


# ---------------------------------------------------------------------------- CLI
def test_cli_writes_a_loadable_task_and_refuses_without_writing(tmp_path, capsys):
    from benchmark.cli import main
    from benchmark.taskspec import load_task_file

    out = tmp_path / "out" / "t.yaml"
    assert main(["tasks", "import-aces", str(ABNORMAL["meds_dev/anemia_first_24h"]), "--predicates", str(PREDICATES),
                 "--out", str(out)]) == 0
    assert load_task_file(out, "meds_dev/t").label.outcome == "abnormally_low_hemoglobin_gdl"
    assert "read per row" in capsys.readouterr().out
    cfg = base_config()
    cfg["windows"]["input"]["has"] = {"lab": "(1, 3)"}
    bad = tmp_path / "bad.yaml"
    assert main(["tasks", "import-aces", str(write(tmp_path, cfg)), "--out", str(bad)]) == 2
    assert not bad.exists() and "windows.input.has.lab" in capsys.readouterr().err
    assert main(["tasks", "--json"]) == 0   # the listing still works without a sub-command


# ---------------------------------------------------------------------------- ACES on hand-written cohorts
def test_window_edges_equal_aces_on_a_small_cohort(tmp_path):
    """Imported MEDS-DEV anemia vs ACES (range folded onto the lab) on edge cases: age exactly 18 years
    before the trigger, discharge exactly at trigger + 48h, labs on the target window's edges."""
    lab = "LAB//RESULT//50811//g/dL"
    adm, dis = "HOSPITAL_ADMISSION//E", "HOSPITAL_DISCHARGE//H"
    ev = []
    for s, birth, dis_at, labs in [
        (1, "1990-01-01", "2020-01-05", [("2020-01-02 12:00", 12.0)]),        # adult, low Hb: positive
        (2, "2002-01-05", "2020-01-05", [("2020-01-02 12:00", 12.0)]),        # born exactly trigger - 6570d
        (3, "1990-01-01", "2020-01-03", [("2020-01-02 12:00", 14.0)]),        # discharge exactly at +48h
        (4, "1990-01-01", "2020-01-05", [("2020-01-02", 12.0)]),              # lab exactly at t: input
        (5, "1990-01-01", "2020-01-05", [("2020-01-03", 12.9), ("2019-01-01", 12.0)]),  # low before: out
        (6, "1990-01-01", "2020-01-05", [("2020-01-03", 13.0)]),              # 13 is not < 13: negative
    ]:
        ev += [(s, birth, "MEDS_BIRTH"), (s, "2020-01-01", adm), (s, dis_at, dis)]
        ev += [(s, t, lab, v) for t, v in labs]
    from benchmark.data.cohort import Cohort
    from benchmark.data.profiles import available_profiles, load_profile, read_dataset_json

    root = make_cohort(tmp_path / "edges", ev)
    profile = load_profile(available_profiles()["mimic_iv"])
    cohort = Cohort(root, predicates_file=profile.predicates_file(read_dataset_json(root)))
    ours, theirs = compare_folded("meds_dev/anemia_first_24h", cohort, tmp_path)
    assert {r[0]: r[2] for r in ours.iter_rows()} == {1: True, 6: False}


# ---------------------------------------------------------------------------- the demo (both ETLs)
def folded_aces_predicates(config: Path, rules: dict, out: Path) -> Path:
    """An ACES predicates file for `config`: the dataset's code rules for its ??? names, and each
    and(lab, code-less range) written as ONE plain predicate (the lab's codes with the range), the form
    MEDS-DEV's later configs use and ACES 0.7.3 evaluates per row."""
    raw = yaml.safe_load(config.read_text())["predicates"]
    body = {}
    for name, p in raw.items():
        if isinstance(p, dict) and "expr" in p and p["expr"].startswith("and("):
            a, b = [x.strip() for x in p["expr"][4:-1].split(",")]
            lab, rng = (a, raw[b]) if raw[b].get("code", "") is None else (b, raw[a])
            body[name] = {**aces_predicate(rules[lab]),
                          **{k: v for k, v in rng.items() if k != "code" and v is not None}}
        elif name in rules and (p == "???" or (isinstance(p, dict) and p.get("code") == "???")):
            body[name] = aces_predicate(rules[name])
    for name in ("hospital_admission", "hospital_discharge", "icu_admission", "icu_discharge"):
        body.setdefault(name, aces_predicate(rules[name]))
    out.write_text(yaml.safe_dump({"predicates": body}, sort_keys=False))
    return out


def compare_folded(task: str, cohort, tmp_path: Path):
    """Our committed task on `cohort` (its own map) vs ACES on MEDS-DEV's config with the folded map."""
    from aces.config import TaskExtractorConfig

    rules = cohort.predicate_map()
    preds = folded_aces_predicates(ABNORMAL[task], rules, tmp_path / f"{task.split('/')[1]}_aces.yaml")
    theirs = run_aces(TaskExtractorConfig.load(ABNORMAL[task], preds), cohort.data_files())
    ours = extract_labels(TASKS[task], cohort, use_cache=False).labels.select(COLS)
    assert ours.equals(theirs), f"{task}\n" + row_diff(ours, theirs)
    return ours, theirs


# rows / positives on the demo; measured, the same for both ETL versions
EXPECTED_MEDS_DEV_MAP = {"meds_dev/mortality_in_icu_first_24h": (74, 9), "meds_dev/readmission_30d": (218, 48),
                         **{t: (0, 0) for t in ABNORMAL}}
EXPECTED_PROFILE_MAP = {  # 0 rows: the demo has no chart MAP, and 51300 (MEDS-DEV's WBC item) has 16 rows
    "meds_dev/anemia_first_24h": (10, 10), "meds_dev/elevated_creatinine_first_24h": (103, 1),
    "meds_dev/hyponatremia_first_24h": (77, 5), "meds_dev/hypotension_first_24h": (0, 0),
    "meds_dev/leukocytosis_first_24h": (0, 0), "meds_dev/metabolic_acidosis_first_24h": (68, 4),
    "meds_dev/thrombocytopenia_first_24h": (192, 63)}


@pytest.mark.slow  # real MIMIC-IV demo MEDS (built through the community ETL)
@pytest.mark.parametrize("version", ["0.1.3", "0.2.0"])
@pytest.mark.parametrize("task", sorted(ALL))
def test_imported_meds_dev_tasks_equal_aces_on_the_demo(task, version, request, tmp_path):
    """(1) The task imported from MEDS-DEV's config, with MEDS-DEV's MIMIC-IV predicates file as our map,
    equals ACES on MEDS-DEV's config and predicates file, verbatim. Its lab codes (`LAB//<itemid>//<unit>`)
    match nothing the demo ETLs write, so the 7 abnormal_lab tasks give 0 rows on both sides (0 == 0).
    (2) abnormal_lab: the committed task with the mimic_iv profile's map (which names the same item ids in
    the demo's code style) equals ACES on MEDS-DEV's config with that map, the range folded onto the lab.
    (3) mortality / readmission: the imported task gives the hand-written replica's labels."""
    from aces.config import TaskExtractorConfig

    from benchmark.data.cohort import Cohort
    from tests.test_meds_dev_replicas import demo_meds, mimic_cohort

    meds = demo_meds(request, version)
    task_dict, _ = import_aces(ALL[task], PREDICATES)
    imported = spec(task_dict, task)
    cohort = Cohort(meds, predicates_file=PREDICATES)
    ours = extract_labels(imported, cohort, use_cache=False).labels.select(COLS)
    theirs = run_aces(TaskExtractorConfig.load(ALL[task], PREDICATES), cohort.data_files())
    assert ours.equals(theirs), f"{task}\n" + row_diff(ours, theirs)
    assert (ours.height, int(ours["boolean_value"].sum())) == EXPECTED_MEDS_DEV_MAP[task]
    profiled = mimic_cohort(meds)
    if task in ABNORMAL:
        got, _ = compare_folded(task, profiled, tmp_path)
        assert (got.height, int(got["boolean_value"].sum())) == EXPECTED_PROFILE_MAP[task]
    else:
        replica = extract_labels(TASKS[task], profiled, use_cache=False).labels.select(COLS)
        mine = extract_labels(imported, profiled, use_cache=False).labels.select(COLS)
        assert mine.equals(replica), row_diff(mine, replica)
