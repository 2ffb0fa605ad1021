"""Bad input: each case gives a message naming the file, the field and the fix, exits non-zero,
prints no traceback, and writes nothing half-done."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.cohort_factory import make_cohort

REPO = Path(__file__).resolve().parents[1]
GOOD_EVENTS = [(1, None, "GENDER/F"), (1, "1950-01-01", "MEDS_BIRTH"), (1, "2019-12-01", "ICD10CM/C34.90"),
               (1, "2020-01-01", "RXNORM/2555"), (1, "2020-02-01", "LOINC/2160-0", 1.0),
               (2, "1960-01-01", "MEDS_BIRTH"), (2, "2020-01-01", "MEDS_DEATH")]
GOOD_SPLITS = {1: "train", 2: "held_out"}  # a valid cohort has a train and a held_out split


def cli(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    e = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, env=e,
                          cwd=cwd, timeout=300)


def assert_user_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "Traceback" not in out, out
    assert "fix:" in out, out
    for n in needles:
        assert n in out, f"{n!r} not in:\n{out}"


def test_valid_cohort_passes(tmp_path):
    root = make_cohort(tmp_path / "ok", GOOD_EVENTS, GOOD_SPLITS)
    r = cli("validate", "--data", str(root))
    assert r.returncode == 0, r.stdout + r.stderr


def test_missing_column(tmp_path):
    root = make_cohort(tmp_path / "c", GOOD_EVENTS)
    f = root / "data" / "train" / "0.parquet"
    pl.read_parquet(f).drop("code").write_parquet(f)
    assert_user_error(cli("validate", "--data", str(root)), "data/train/0.parquet", "'code'", "required MEDS column")


def test_float64_numeric_value(tmp_path):
    root = make_cohort(tmp_path / "c", GOOD_EVENTS, numeric_dtype=pl.Float64)
    assert_user_error(cli("validate", "--data", str(root)), "data/train/0.parquet", "'numeric_value'", "float32")


def test_subject_in_two_splits(tmp_path):
    root = make_cohort(tmp_path / "c", GOOD_EVENTS)
    pl.DataFrame({"subject_id": [1, 1, 2], "split": ["train", "held_out", "train"]},
                 schema={"subject_id": pl.Int64, "split": pl.String}).write_parquet(root / "metadata" / "subject_splits.parquet")
    assert_user_error(cli("validate", "--data", str(root)), "subject_splits.parquet", "'split'", "more than one split")


def test_unparseable_times(tmp_path):
    root = make_cohort(tmp_path / "c", GOOD_EVENTS)
    f = root / "data" / "train" / "0.parquet"
    df = pl.read_parquet(f).with_columns(pl.col("time").dt.strftime("%Y-%m-%d %H:%M:%S"))
    df = df.with_columns(pl.when(pl.col("code") == "MEDS_DEATH").then(pl.lit("31/02/2020 25:61")).otherwise(pl.col("time")).alias("time"))
    df.write_parquet(f)
    assert_user_error(cli("validate", "--data", str(root)), "data/train/0.parquet", "'time'", "cannot be parsed",
                      "31/02/2020 25:61")


def test_missing_cohort_folder(tmp_path):
    assert_user_error(cli("labels", "--data", str(tmp_path / "nope")), "nope", "--data")


def _task_dir(tmp_path: Path, body: str) -> Path:
    d = tmp_path / "tasks" / "fam"
    d.mkdir(parents=True)
    (d / "t.yaml").write_text(body)
    return tmp_path / "tasks"


GOOD_TASK = """version: 1
kind: binary
description: test task
index: {predicate: cancer_treatment, occurrence: first}
label:
  outcome: death
  window: {start: "0", end: 365d}
metrics: [auroc]
main_metric: auroc
"""


def test_good_task_file_lists(tmp_path):
    r = cli("tasks", "--json", env={"MEHR_BENCH_TASKS": str(_task_dir(tmp_path, GOOD_TASK))})
    assert r.returncode == 0 and '"fam/t"' in r.stdout, r.stderr


def test_task_unknown_key(tmp_path):
    r = cli("tasks", env={"MEHR_BENCH_TASKS": str(_task_dir(tmp_path, GOOD_TASK + "horizonn: 1y\n"))})
    assert_user_error(r, "fam/t.yaml", "'horizonn'", "remove or rename")


def test_task_bad_duration(tmp_path):
    r = cli("tasks", env={"MEHR_BENCH_TASKS": str(_task_dir(tmp_path, GOOD_TASK.replace("365d", "1 yeer")))})
    assert_user_error(r, "fam/t.yaml", "label.window.end", "1 yeer", "365d")


def test_task_unknown_kind(tmp_path):
    r = cli("tasks", env={"MEHR_BENCH_TASKS": str(_task_dir(tmp_path, GOOD_TASK.replace("kind: binary", "kind: binery")))})
    assert_user_error(r, "fam/t.yaml", "'kind'", "binary")


def test_predicate_on_code_that_never_occurs_warns(tmp_path):
    root = make_cohort(tmp_path / "c", GOOD_EVENTS, GOOD_SPLITS)
    r = cli("validate", "--data", str(root))
    assert r.returncode == 0
    assert "'metastasis'" in r.stdout and "matches no code" in r.stdout
    r = cli("labels", "--data", str(root), "--task", "oncology/metastasis_1y",
            env={"MEHR_BENCH_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "'metastasis' matches no event" in r.stderr


def test_prepare_refuses_non_empty_out(tmp_path):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert_user_error(cli("prepare", "synthetic", "--out", str(out), "--subjects", "50"), "--out")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
