"""The Python API (issue 13 item 7): `benchmark.evaluate(...)` returns typed records equal to the
files it writes, gives the same result files as `python -m benchmark run`, keeps `import benchmark`
light, and refuses bad input with a UserError before any work. The generic Budget (item 6) knows
no model family."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

import benchmark
from benchmark.errors import UserError
from benchmark.results import predictions_path

TASKS = "oncology/mortality_1y,survival/mace"


def _comparable(path: Path) -> dict:
    """A result file without what differs between two runs of the same cell (time, memory)."""
    d = json.loads(path.read_text())
    del d["compute"]["wall_s"], d["compute"]["peak_rss_mb"]
    return d


def test_evaluate_returns_the_records_on_disk(small_cohort, tmp_path, cache):
    res = tmp_path / "res"
    recs = benchmark.evaluate("logistic_regression", TASKS, data=small_cohort.root, results=res, budget="smoke")
    assert [(r.model, r.task, r.seed) for r in recs] == [("logistic_regression", t, 0) for t in TASKS.split(",")]
    assert all(isinstance(r, benchmark.ResultRecord) for r in recs)
    assert recs == benchmark.read_records(res)
    assert recs[0].status == "ok" and recs[0].main().value is not None and recs[0].budget == "smoke"
    # a second call keeps the finished cells (lists accepted too) and returns the same records
    again = benchmark.evaluate(["logistic_regression"], TASKS.split(","), data=small_cohort.root, results=res,
                               budget="smoke")
    assert again == recs


def test_evaluate_runs_on_workers_and_in_shards(small_cohort, tmp_path, cache):
    """`evaluate(jobs=, shard=)` as `run --jobs` / `--shard`: the same records as the serial call."""
    serial = benchmark.evaluate("logistic_regression", TASKS, data=small_cohort.root, results=tmp_path / "s",
                                budget="smoke")
    pooled = benchmark.evaluate("logistic_regression", TASKS, data=small_cohort.root, results=tmp_path / "j",
                                budget="smoke", jobs=2)
    halves = [benchmark.evaluate("logistic_regression", TASKS, data=small_cohort.root, results=tmp_path / "h",
                                 budget="smoke", shard=f"{i}/2") for i in range(2)]
    assert [len(h) for h in halves] == [1, 1]  # each shard returns its own cell
    strip = lambda rs: sorted(((r.model, r.task), _metric_values(r)) for r in rs)  # noqa: E731
    assert strip(pooled) == strip(serial) == strip(halves[0] + halves[1])
    with pytest.raises(UserError, match="--jobs"):
        benchmark.evaluate("logistic_regression", TASKS, data=small_cohort.root, results=tmp_path / "x", jobs=0)


def _metric_values(r) -> dict:
    return {k: (m.value, m.ci_low, m.ci_high) for k, m in r.metrics.items()}


def test_cli_and_api_write_identical_result_files(small_cohort, tmp_path, cache, capsys):
    from benchmark import cli

    a, b = tmp_path / "cli", tmp_path / "api"
    rc = cli.main(["run", "--model", "logistic_regression,catboost", "--task", TASKS, "--data",
                   str(small_cohort.root), "--results", str(a), "--budget", "smoke", "--seeds", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and "results in" in out  # the CLI still prints its table
    recs = benchmark.evaluate("logistic_regression,catboost", TASKS, data=small_cohort.root, results=b,
                              budget="smoke", seeds=2)
    assert capsys.readouterr().out == ""  # the API prints nothing
    files = sorted(p.relative_to(a) for p in a.rglob("seed*.json"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("seed*.json")) and len(files) == len(recs) == 8
    for f in files:
        assert _comparable(a / f) == _comparable(b / f), f
        kind = json.loads((a / f).read_text())["task_kind"]
        pa, pb = predictions_path(a / f, kind), predictions_path(b / f, kind)
        assert pa.exists() and pa.read_bytes() == pb.read_bytes(), f


def test_evaluate_reports_a_failed_cell_in_its_record(small_cohort, tmp_path, cache, monkeypatch):
    """No exit status in the API: a crashed cell comes back as a record with status 'failed'."""
    from benchmark import registry

    class Boom:
        def fit(self, data):
            raise RuntimeError("planted [/x] failure")

    boom = registry.ModelSpec(name="boom", kind="baseline", description="fails", modalities=("structured",),
                              task_kinds=("binary",), n_parameters=None, training_data="none", license="none",
                              reference="none", authors="tests", factory=lambda budget, seed: Boom())
    real = registry.get_model
    monkeypatch.setattr("benchmark.runner.get_model", lambda n: boom if n == "boom" else real(n))
    [rec] = benchmark.evaluate("boom", "oncology/mortality_1y", data=small_cohort, results=tmp_path, budget="smoke")
    assert rec.status == "failed" and rec.error == "RuntimeError: planted [/x] failure" and rec.metrics is None


@pytest.mark.parametrize("kw,field", [({"budget": "huge"}, "--budget"), ({"seeds": 0}, "--seeds"),
                                      ({"models": " , "}, "--model"), ({"tasks": []}, "--task")])
def test_bad_input_is_a_user_error_before_any_work(small_cohort, tmp_path, cache, kw, field):
    args = {"models": "logistic_regression", "tasks": "oncology/mortality_1y", **kw}
    with pytest.raises(UserError) as e:
        benchmark.evaluate(data=small_cohort, results=tmp_path / "res", **args)
    assert e.value.field == field and e.value.fix
    assert not (tmp_path / "res").exists()  # refused before the results folder is even created


def test_evaluate_takes_a_dataset_profile(small_cohort, tmp_path, cache):
    """`dataset=` picks the profile by name, as `run --dataset` does; an unknown one is a UserError."""
    with pytest.raises(UserError) as e:
        benchmark.evaluate("logistic_regression", "oncology/mortality_1y", data=small_cohort.root,
                           results=tmp_path / "res", budget="smoke", dataset="nope")
    assert e.value.field == "--dataset" and "synthetic" in e.value.fix
    [rec] = benchmark.evaluate("logistic_regression", "oncology/mortality_1y", data=small_cohort.root,
                               results=tmp_path / "res", budget="smoke", dataset="synthetic")
    assert rec.status == "ok"


def test_import_benchmark_stays_light():
    code = ("import sys, benchmark; heavy = [m for m in ('torch', 'polars', 'pydantic', 'rich', 'numpy') "
            "if m in sys.modules]; print(heavy); benchmark.ResultRecord; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["[]", "False"]


def test_budget_is_generic():
    """The core's Budget has no family's knobs (MEHRT maps the level name itself)."""
    from benchmark.model_api import BUDGETS, Budget

    assert [f.name for f in dataclasses.fields(Budget)] == ["name", "n_trials", "n_folds", "max_iterations", "n_boot"]
    assert {k: (b.n_trials, b.n_folds, b.max_iterations, b.n_boot) for k, b in BUDGETS.items()} == {
        "smoke": (1, 3, 60, 200), "default": (4, 5, 300, 1000), "full": (30, 5, 1500, 1000)}
    assert all(b.name == k for k, b in BUDGETS.items())
