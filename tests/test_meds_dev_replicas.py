"""Our MEDS-DEV replica tasks (tasks/meds_dev/) give ACES's labels row for row.

Oracle: ACES (es-aces 0.7.3) runs MEDS-DEV's OWN task config with MEDS-DEV's OWN MIMIC-IV predicates
file (copies in tests/aces/meds_dev/, meds-dev 0.0.14); our extractor runs the replica task with the
mimic_iv dataset profile's predicate map. Data: MEDS built from the MIMIC-IV demo (100 patients) with two
ETL versions (MIMIC_IV_MEDS 0.1.3 and 0.2.0). Equal = same (subject_id, prediction_time, boolean_value)
rows. A hand-written cohort adds the window-edge cases the demo may not contain.

MEDS-DEV's abnormal_lab tasks have no replica: its MIMIC-IV predicates name labs as
`LAB//<itemid>//<unit>`, which match no code of either demo build (they write `LAB//RESULT//...`);
`test_meds_dev_lab_predicates_match_nothing_on_the_demo` keeps that claim honest.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from benchmark.data.cohort import Cohort
from benchmark.data.profiles import available_profiles, load_profile, read_dataset_json
from benchmark.labels import extract_labels
from benchmark.task_registry import load_tasks
from tests.aces.aces_bridge import row_diff, run_aces
from tests.cohort_factory import make_cohort

MEDS_DEV = Path(__file__).parent / "aces" / "meds_dev"
MEDS_DEV_PREDICATES = MEDS_DEV / "MIMIC-IV_predicates.yaml"
REPLICAS = {  # our task -> MEDS-DEV's config
    "meds_dev/mortality_in_icu_first_24h": MEDS_DEV / "mortality_in_icu_first_24h.yaml",
    "meds_dev/readmission_30d": MEDS_DEV / "readmission_30d.yaml",
}
COLS = ["subject_id", "prediction_time", "boolean_value"]
TASKS = load_tasks()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))


def mimic_cohort(meds: Path) -> Cohort:
    """A MIMIC-IV MEDS folder read with the mimic_iv profile's predicate map (no user-written map)."""
    profile = load_profile(available_profiles()["mimic_iv"])
    return Cohort(meds, predicates_file=profile.predicates_file(read_dataset_json(meds)))


def demo_meds(request, version: str) -> Path:
    """The demo MEDS of one ETL version: the shared fixture (tests/conftest_mimic.py) when registered,
    else $MEHR_BENCH_MIMIC_MEDS (a MEDS folder of that version, or a folder with <version>/ in it)."""
    fixture = {"0.2.0": "mimic_meds_020", "0.1.3": "mimic_meds_013"}[version]
    try:
        return Path(request.getfixturevalue(fixture))
    except pytest.FixtureLookupError:
        pass
    env = os.environ.get("MEHR_BENCH_MIMIC_MEDS")
    if not env:
        pytest.skip(f"no MIMIC-IV demo MEDS: set MEHR_BENCH_MIMIC_MEDS (or provide fixture {fixture})")
    for cand in (Path(env) / version, Path(env)):
        if read_dataset_json(cand).get("etl_version") == version:
            return cand
    pytest.skip(f"MEHR_BENCH_MIMIC_MEDS={env} holds no MIMIC_IV_MEDS {version} build")


def aces_labels(config: Path, cohort: Cohort) -> pl.DataFrame:
    """ACES's labels with MEDS-DEV's task config and MEDS-DEV's MIMIC-IV predicates file."""
    from aces.config import TaskExtractorConfig

    return run_aces(TaskExtractorConfig.load(config, MEDS_DEV_PREDICATES), cohort.data_files())


def compare(task: str, cohort: Cohort) -> pl.DataFrame:
    ours = extract_labels(TASKS[task], cohort, use_cache=False).labels.select(COLS)
    aces = aces_labels(REPLICAS[task], cohort)
    assert ours.equals(aces), f"{task}\n" + row_diff(ours, aces)
    assert_frame_equal(ours, aces)
    return ours


# ---------------------------------------------------------------------------- the demo (both ETLs)
# rows / positives measured on the demo (both ETL versions give the same)
EXPECTED = {"meds_dev/mortality_in_icu_first_24h": (74, 9), "meds_dev/readmission_30d": (218, 48)}


@pytest.mark.slow  # real MIMIC-IV demo MEDS (built through the community ETL)
@pytest.mark.parametrize("version", ["0.1.3", "0.2.0"])
@pytest.mark.parametrize("task", sorted(REPLICAS))
def test_replica_equals_aces(task, version, request):
    ours = compare(task, mimic_cohort(demo_meds(request, version)))
    assert (ours.height, int(ours["boolean_value"].sum())) == EXPECTED[task]


@pytest.mark.slow  # real MIMIC-IV demo MEDS (built through the community ETL)
@pytest.mark.parametrize("version", ["0.1.3", "0.2.0"])
def test_profile_predicates_match_meds_devs_codes(version, request):
    """Every dataset predicate a replica uses selects the same codes on the demo under the mimic_iv
    profile as under MEDS-DEV (its task config's own rule, e.g. death = regex MEDS_DEATH.*, else its
    MIMIC-IV predicates file)."""
    cohort = mimic_cohort(demo_meds(request, version))
    codes = pl.concat([pl.read_parquet(f, columns=["code"]) for f in cohort.data_files()]).unique()
    ours = cohort.predicate_map()
    theirs = yaml.safe_load(MEDS_DEV_PREDICATES.read_text())["predicates"]
    for task, config in REPLICAS.items():
        local = yaml.safe_load(config.read_text())["predicates"]
        for name in TASKS[task].dataset_predicates():
            rule = local.get(name)
            code = (rule if isinstance(rule, dict) and rule.get("code") != "???" else theirs[name])["code"]
            expr = pl.col("code").str.contains(code["regex"]) if isinstance(code, dict) else pl.col("code") == code
            want = set(codes.filter(expr)["code"])
            assert want, f"{name}: MEDS-DEV's rule matches no code"
            assert set(codes.filter(ours[name].code_expr())["code"]) == want, f"{task}: {name}"


@pytest.mark.slow  # real MIMIC-IV demo MEDS (built through the community ETL)
@pytest.mark.parametrize("version", ["0.1.3", "0.2.0"])
def test_meds_dev_lab_predicates_match_nothing_on_the_demo(version, request):
    cohort = mimic_cohort(demo_meds(request, version))
    codes = set(pl.concat([pl.read_parquet(f, columns=["code"]) for f in cohort.data_files()])["code"])
    labs = {n: r["code"] for n, r in yaml.safe_load(MEDS_DEV_PREDICATES.read_text())["predicates"].items()
            if isinstance(r["code"], dict) and "any" in r["code"]}
    assert labs, "MEDS-DEV's predicates file changed: re-check its lab codes"
    assert all(c.startswith("LAB//") for v in labs.values() for c in v["any"])
    assert not codes & {c for v in labs.values() for c in v["any"]}
    assert any(re.match(r"LAB//RESULT//50912//", c) for c in codes)  # creatinine is there, in another style


# ---------------------------------------------------------------------------- window edges
def edge_events() -> list[tuple]:
    """ICU stays on MEDS-DEV's window edges (admission a; gap (a, a+48h]; target to discharge-or-death)."""
    adm, dis = "ICU_ADMISSION//MICU", "ICU_DISCHARGE//MICU"
    lab = "LAB//RESULT//50912//mg/dL"
    return [
        (1, "2020-01-01", adm), (1, "2020-01-03", dis),                            # discharge at a+48h: out
        (2, "2020-01-01", adm), (2, "2020-01-03 00:00:01", dis),                   # just after: negative
        (3, "2020-01-01", adm), (3, "2020-01-05", "MEDS_DEATH"), (3, "2020-01-05", dis),  # death at discharge
        (4, "2020-01-01", adm), (4, "2020-01-05", dis), (4, "2020-01-05 00:00:01", "MEDS_DEATH"),  # after: neg
        (5, "2020-01-01", adm), (5, "2020-01-02", adm), (5, "2020-01-06", dis),    # 2nd admission in gap: 1 out
        (6, "2020-01-01", "MEDS_DEATH"), (6, "2020-01-01", adm), (6, "2020-01-09", lab),  # no end: no row
        (7, "2020-01-01", adm), (7, "2020-02-01", lab),                            # never discharged: no row
        (8, "2020-01-01", adm), (8, "2020-01-04", dis), (8, "2020-01-04", adm), (8, "2020-01-09", dis),
    ]


def test_window_edges_equal_aces(tmp_path):
    """Inclusive / exclusive edges and a missing window end, as MEDS-DEV's config states them. Subject 6
    (dead at admission, no discharge after it) is the case `end_at_missing: drop` exists for: with the
    default ('open') and `censoring: exclude` the dead subject is kept as a negative, ACES has no row."""
    cohort = mimic_cohort(make_cohort(tmp_path / "edges", edge_events()))
    ours = compare("meds_dev/mortality_in_icu_first_24h", cohort)
    got = {(s, t.day): y for s, t, y in ours.iter_rows()}  # (subject, day of the prediction time) -> label
    assert got == {(2, 2): False, (3, 2): True, (4, 2): False, (5, 3): False, (8, 2): False, (8, 5): False}


# ---------------------------------------------------------------------------- honest citations
# A reference naming another benchmark's task says how the task relates to it (tasks/README.md,
# "References"): "reproduces ..." (exactly; it names the test that proves it) or "adapted from ...".
BENCHMARK_WORDS = ("MEDS-DEV", "EHRSHOT", "Harutyunyan", "benchmark")
TEST_ID = re.compile(r"\b(tests/[\w/]+\.py)::(test_\w+)")


def names_a_test(test_id: str) -> bool:
    """True if 'tests/<file>.py::<test_name>' names a test function defined in that file."""
    m = TEST_ID.fullmatch(test_id)
    root = Path(__file__).parent.parent
    return bool(m) and (root / m[1]).is_file() and re.search(
        rf"^def {m[2]}\(", (root / m[1]).read_text(), re.M) is not None


@pytest.mark.parametrize("name", sorted(TASKS))
def test_references_say_reproduces_with_a_test_or_adapted_from(name):
    for ref in TASKS[name].references:
        if ref.startswith("reproduces "):
            ids = [m[0] for m in TEST_ID.finditer(ref)]
            assert ids, f"{name}: {ref!r} claims to reproduce a task but names no test (tests/<file>.py::<test>)"
            assert all(names_a_test(i) for i in ids), f"{name}: {ref!r} names a test that does not exist"
        elif any(w in ref for w in BENCHMARK_WORDS):
            assert ref.startswith("adapted from "), (
                f"{name}: {ref!r} cites another benchmark: start it with 'reproduces' (exact, with its test) "
                "or 'adapted from' (and say what differs)")


def test_reference_rule_can_fail():
    assert names_a_test("tests/test_meds_dev_replicas.py::test_replica_equals_aces")
    assert not names_a_test("tests/test_meds_dev_replicas.py::test_no_such_test")
    assert not names_a_test("tests/no_such_file.py::test_replica_equals_aces")


# ---------------------------------------------------------------------------- which datasets run which task
def coverage() -> dict:
    from benchmark.task_registry import dataset_coverage

    return dataset_coverage(TASKS, {n: load_profile(f) for n, f in available_profiles().items()})


def test_dataset_coverage_from_the_profile_maps():
    cover = coverage()
    assert all(not m for m in (cover[t]["mimic_iv"] for t in REPLICAS))
    assert cover["leak/probe"]["mimic_iv"] == ["leak_outcome"] and cover["leak/probe"]["synthetic"] == []


def test_readme_lists_exactly_the_tasks_mimic_cannot_run():
    cannot = {t: ", ".join(m["mimic_iv"]) for t, m in coverage().items() if m["mimic_iv"]}
    readme = (Path(__file__).parent.parent / "tasks" / "README.md").read_text()
    table = readme.split("MIMIC-IV (profile `mimic_iv`) cannot run:")[1]
    rows = dict(re.findall(r"^\| (\w+/\w+) \| ([\w, ]+) \|", table, re.M))
    assert rows == cannot


def test_tasks_cli_names_missing_predicates(capsys):
    import json

    from benchmark.cli import main

    assert main(["tasks", "--json", "--dataset", "mimic_iv"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["survival/mace"]["missing"] == ["cardiac_ct", "cardiac_death"]
    assert "mimic_iv" in rows["meds_dev/mortality_in_icu_first_24h"]["datasets"]
    assert main(["tasks", "--dataset", "no_such_dataset"]) == 2
    assert "--dataset" in capsys.readouterr().err
