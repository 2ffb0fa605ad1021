"""Bad task / predicates / CLI input (issue 12 item 7, the task and CLI half): each gives exit status 2,
a message naming the file, the field and the fix, no traceback, and nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.errors import UserError
from tests.test_bad_input import GOOD_TASK

REPO = Path(__file__).resolve().parents[1]

TASK = GOOD_TASK  # one valid task body for every bad-input test


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=REPO, timeout=300)


def assert_user_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    out = " ".join((r.stdout + r.stderr).split())  # undo console line wrapping
    assert r.returncode == 2, out
    assert "Traceback" not in out, out
    assert "fix:" in out, out
    for n in needles:
        assert n in out, f"{n!r} not in:\n{out}"


def tasks_dir(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    """A tasks folder holding fam/<name>.yaml for each entry."""
    root = tmp_path / "tasks"
    (root / "fam").mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (root / "fam" / f"{name}.yaml").write_bytes(body if isinstance(body, bytes) else body.encode())
    return root


def predicates_file(tmp_path: Path, cohort_root: Path, extra: str | bytes) -> Path:
    """The cohort's predicates.yaml with `extra` appended (as bytes when given bytes)."""
    p = tmp_path / "predicates.yaml"
    base = (cohort_root / "predicates.yaml").read_bytes()
    p.write_bytes(base + b"\n" + (extra if isinstance(extra, bytes) else extra.encode()))
    return p


# ---------------------------------------------------------------------------- task files
def test_non_utf8_task_file(tmp_path):
    """Before: UnicodeDecodeError traceback, exit 1."""
    root = tasks_dir(tmp_path, {"t": TASK.replace("test task", "test t\u00e2che").encode("latin-1")})
    assert_user_error(cli("tasks", env={"MEHR_BENCH_TASKS": str(root)}),
                      "fam/t.yaml", "not UTF-8", "line 3", "save the file with UTF-8 encoding")


def test_duplicate_key_in_task_file(tmp_path):
    """Before: accepted silently, the last 'kind' won."""
    root = tasks_dir(tmp_path, {"t": TASK.replace("kind: binary", "kind: binary\nkind: survival")})
    assert_user_error(cli("tasks", env={"MEHR_BENCH_TASKS": str(root)}),
                      "fam/t.yaml", "field 'kind'", "duplicate key 'kind' on line 3 (first given on line 2)")


def test_duplicate_nested_key_in_task_file(tmp_path):
    from benchmark.taskspec import load_task_file

    f = tasks_dir(tmp_path, {"t": TASK.replace('window: {start: "0", end: 365d}',
                                                'window: {start: "0", end: 365d, end: 30d}')}) / "fam/t.yaml"
    with pytest.raises(UserError) as e:
        load_task_file(f, "fam/t")
    assert e.value.field == "end" and "line 7" in e.value.message


def test_huge_duration(tmp_path):
    """Before: `tasks` accepted it and `labels` crashed with OverflowError."""
    root = tasks_dir(tmp_path, {"t": TASK.replace("365d", "99999999999999y")})
    assert_user_error(cli("tasks", env={"MEHR_BENCH_TASKS": str(root)}),
                      "fam/t.yaml", "label.window.end", "99999999999999y", "at most 1000 years", "inf")


def test_duration_limits():
    from benchmark.durations import parse_duration

    assert parse_duration("1000y") == 1000 * 365 * 86400
    assert parse_duration("-inf") == float("-inf")
    for bad in ("1001y", "99999999999999y", "9" * 400 + "d", "-400000d"):
        with pytest.raises(ValueError, match="at most 1000 years"):
            parse_duration(bad)


# ---------------------------------------------------------------------------- predicates files
def test_non_utf8_predicates_file(small_cohort, tmp_path):
    """Before: UnicodeDecodeError traceback."""
    p = predicates_file(tmp_path, small_cohort.root, b"odd: {code: \"CAF\xc9\"}\n")
    r = cli("labels", "--task", "oncology/mortality_1y", "--data", str(small_cohort.root), "--predicates", str(p),
            env={"MEHR_BENCH_CACHE": str(tmp_path / "cache")})
    assert_user_error(r, str(p), "not UTF-8", "save the file with UTF-8 encoding")


def test_duplicate_key_in_predicates(small_cohort, tmp_path):
    """Before: the second 'death' rule silently replaced the first (event rate 0.000, exit 0)."""
    p = predicates_file(tmp_path, small_cohort.root, "death: {code: NOT_DEATH}\n")
    r = cli("labels", "--task", "oncology/mortality_1y", "--data", str(small_cohort.root), "--predicates", str(p),
            env={"MEHR_BENCH_CACHE": str(tmp_path / "cache")})
    assert_user_error(r, str(p), "field 'death'", "duplicate key 'death'", "first given on line")


def test_look_around_regex_is_refused_at_load(small_cohort, tmp_path):
    """Before: Python `re` accepted it at load; polars failed at scan time with a traceback."""
    p = predicates_file(tmp_path, small_cohort.root, "").read_text()
    p = p.replace("cancer_treatment: {regex: '^RXNORM/", "cancer_treatment: {regex: '^(?!RXNORM/999)RXNORM/")
    assert "(?!RXNORM/999)" in p
    f = tmp_path / "look.yaml"
    f.write_text(p)
    r = cli("run", "--model", "logistic_regression", "--task", "oncology/mortality_1y", "--data",
            str(small_cohort.root), "--predicates", str(f), "--results", str(tmp_path / "res"), "--budget", "smoke",
            env={"MEHR_BENCH_CACHE": str(tmp_path / "cache")})
    assert_user_error(r, str(f), "field 'cancer_treatment'", "look-around", "without look-around")
    assert not list((tmp_path / "res").rglob("*.json"))


def test_regex_rules_follow_the_scan_engine():
    from pydantic import ValidationError

    from benchmark.predicates import CodeRule

    assert CodeRule(regex=r"^ICD10CM/C(3[0-9]|4[0-5])").regex
    for bad in (r"(?<=ICD10CM/)C34", r"^(ICD)\1", "(unclosed"):
        with pytest.raises(ValidationError, match="linear-time regex engine"):
            CodeRule(regex=bad)


# ---------------------------------------------------------------------------- tasks a cohort cannot support
ZERO_TRAIN = TASK.replace(
    "metrics: [auroc]", "inclusion:\n  - {predicate: _any_event, start: -inf, end: \"0\", min_count: 1000000}\n"
                        "metrics: [auroc]")
ONE_CLASS = TASK.replace("outcome: death", "outcome: _any_event").replace("365d", "36500d")


@pytest.mark.parametrize("body, needle", [(ZERO_TRAIN, "no training samples (0 samples"),
                                          (ONE_CLASS, "only one class in training")])
def test_task_the_cohort_cannot_support(small_cohort, tmp_path, body, needle):
    """Before: each model failed inside its fit (polars SchemaError on 0 samples, a liblinear
    ValueError on one class), exit 1. Now the task is refused before any cell, with the counts and the
    fix, and no result file is written; the exit status is 2 (the user's task or data)."""
    root = tasks_dir(tmp_path, {"t": body})
    r = cli("run", "--model", "logistic_regression", "--task", "fam/t", "--data", str(small_cohort.root),
            "--results", str(tmp_path / "res"), "--budget", "smoke",
            env={"MEHR_BENCH_TASKS": str(root), "MEHR_BENCH_CACHE": str(tmp_path / "cache")})
    assert_user_error(r, "cannot run task fam/t", needle, "labels --task fam/t")
    assert not list((tmp_path / "res").rglob("seed*"))


def test_refused_task_does_not_stop_the_other_tasks(small_cohort, tmp_path, monkeypatch, capsys):
    """A task refused for its input is reported; the other tasks still run; exit 2 (1 if a cell crashed)."""
    from benchmark.runner import run_grid

    root = tasks_dir(tmp_path, {"t": ONE_CLASS})
    (root / "oncology").mkdir()
    (root / "oncology" / "mortality_1y.yaml").write_bytes((REPO / "tasks/oncology/mortality_1y.yaml").read_bytes())
    monkeypatch.setenv("MEHR_BENCH_TASKS", str(root))
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))
    rc = run_grid("logistic_regression", "fam/t,oncology/mortality_1y", small_cohort, tmp_path / "res",
                  budget="smoke")
    out = " ".join(capsys.readouterr().out.split())
    assert rc == 2 and "only one class in training" in out
    assert (tmp_path / "res/logistic_regression/oncology/mortality_1y/seed0.json").exists()
    assert not (tmp_path / "res/logistic_regression/fam").exists()


# ---------------------------------------------------------------------------- CLI flags
def test_model_list_without_a_name(tmp_path):
    """Before: `--model ,` ran nothing and exited 0 with an empty table."""
    r = cli("run", "--model", ",", "--task", "oncology/mortality_1y", "--results", str(tmp_path / "res"))
    assert_user_error(r, "--model", "no model named")
    assert not (tmp_path / "res").exists()


def test_task_list_without_a_name(tmp_path):
    r = cli("run", "--model", "logistic_regression", "--task", " , ", "--results", str(tmp_path / "res"))
    assert_user_error(r, "--task", "no task named")


def test_prepare_negative_seed(tmp_path):
    """Before: numpy's 'expected non-negative integer' traceback, exit 1."""
    out = tmp_path / "c"
    assert_user_error(cli("prepare", "synthetic", "--out", str(out), "--subjects", "50", "--seed", "-1",
                          "--no-images"), "--seed", "-1", "0 or more")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".tmp" in p.name]
