"""Run robustness (issue 12 items 4-6, model names of 8): a failing cell never ends the grid, console
text is never read as markup, an unwritable results folder is refused before any work, a failed
result write is reported and the grid goes on, concurrent runs on one results folder and cache both
succeed, atomic writes leave no temp files, and model / task names cannot leave --results."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from benchmark import registry
from benchmark.errors import UserError

REPO = Path(__file__).resolve().parents[1]
TASK = "oncology/mortality_1y"
TWO_TASKS = "oncology/mortality_1y,oncology/transfusion_1y"


def _temp_files(*roots: Path) -> list[Path]:
    """Files or folders left by an atomic write (their names carry '.tmp')."""
    return [p for r in roots if r.exists() for p in r.rglob("*") if ".tmp" in p.name]


def _flat(text: str) -> str:
    """Console output with rich's line wrapping undone."""
    return " ".join(text.split())


def _spec(name: str, factory, kinds=("binary",)) -> registry.ModelSpec:
    return registry.ModelSpec(name=name, kind="baseline", description="test model", modalities=("structured",),
                              task_kinds=kinds, n_parameters=None, training_data="none", license="none",
                              reference="none", authors="tests", factory=factory)


class _MarkupBoom:
    """Fails like polars does: the message holds a path in square brackets."""

    def fit(self, data):
        raise RuntimeError("could not read [/tmp/cohort/data] ([bold]no such file[/bold])")

    def predict(self, data, split):  # pragma: no cover - never reached
        raise AssertionError


# ---------------------------------------------------------------------------- item 4: markup, failing cells
def test_error_text_with_markup_does_not_end_the_grid(small_cohort, tmp_path, cache, with_models, capsys):
    """Before: rich.errors.MarkupError on '[/tmp/cohort/data]' ended the grid; the second cell and the
    summary table were lost."""
    from benchmark.runner import run_grid

    with_models["boom"] = _spec("boom", lambda budget, seed: _MarkupBoom())
    rc = run_grid("boom,logistic_regression", TASK, small_cohort, tmp_path / "res", budget="smoke")
    out = _flat(capsys.readouterr().out)
    assert rc == 1
    assert "could not read [/tmp/cohort/data] ([bold]no such file[/bold])" in out  # verbatim, not markup
    assert "results in" in out and "logistic_regression" in out  # the summary table
    good = json.loads((tmp_path / "res/logistic_regression" / TASK / "seed0.json").read_text())
    assert good["status"] == "ok"
    bad = json.loads((tmp_path / "res/boom" / TASK / "seed0.json").read_text())
    assert bad["status"] == "failed" and "[/tmp/cohort/data]" in bad["error"]


def test_skip_message_with_markup_is_printed_verbatim(small_cohort, tmp_path, cache, monkeypatch, capsys):
    """A task whose predicate name looks like a closing tag is skipped with its name as written."""
    from benchmark.runner import run_grid

    tasks = tmp_path / "tasks" / "fam"
    tasks.mkdir(parents=True)
    (tasks / "t.yaml").write_text(textwrap.dedent("""\
        version: 1
        kind: binary
        description: predicate with brackets
        index: {predicate: "[/oops]"}
        label: {outcome: death, window: {start: "0", end: 365d}}
        metrics: [auroc]
        main_metric: auroc
        """))
    monkeypatch.setenv("MEHR_BENCH_TASKS", str(tmp_path / "tasks"))
    rc = run_grid("logistic_regression", "fam/t", small_cohort, tmp_path / "res", budget="smoke")
    out = _flat(capsys.readouterr().out)
    assert rc == 0
    assert "does not map [/oops]" in out and "results in" in out


def test_a_cell_raising_outside_run_cell_is_recorded(small_cohort, tmp_path, cache, monkeypatch, capsys):
    """Even an error outside the cell's own guard (here: building its work folder) fails only that cell."""
    from benchmark import runner

    real = runner.task_data
    calls = []

    def flaky(task, cohort, seed, labels, *rest):
        calls.append(task.name)
        if len(calls) == 1:
            raise OSError(errno.EACCES, "Permission denied", "[/cache/work]")
        return real(task, cohort, seed, labels, *rest)

    monkeypatch.setattr(runner, "task_data", flaky)
    rc = runner.run_grid("logistic_regression", TWO_TASKS, small_cohort, tmp_path / "res", budget="smoke")
    out = _flat(capsys.readouterr().out)
    assert rc == 1 and "[/cache/work]" in out and "results in" in out
    ok = json.loads((tmp_path / "res/logistic_regression/oncology/transfusion_1y/seed0.json").read_text())
    assert ok["status"] == "ok"


def test_label_extraction_crash_fails_one_task_only(small_cohort, tmp_path, cache, monkeypatch, capsys):
    """A polars error while extracting one task's labels is printed verbatim; the other task runs."""
    import polars as pl

    from benchmark import planning, runner

    real = planning.extract_labels

    def flaky(task, cohort, **kw):
        if task.name == "oncology/mortality_1y":
            raise pl.exceptions.ComputeError("cannot read [/data/train/0.parquet]")
        return real(task, cohort, **kw)

    monkeypatch.setattr(planning, "extract_labels", flaky)  # task_labels moved to benchmark.planning
    rc = runner.run_grid("logistic_regression", TWO_TASKS, small_cohort, tmp_path / "res", budget="smoke")
    out = _flat(capsys.readouterr().out)
    assert rc == 1 and "labels of task oncology/mortality_1y: ComputeError: cannot read [/data/train/0.parquet]" in out
    ok = json.loads((tmp_path / "res/logistic_regression/oncology/transfusion_1y/seed0.json").read_text())
    assert ok["status"] == "ok"


# ---------------------------------------------------------------------------- item 6: results folder, writes
def test_results_pointing_at_a_file_is_refused_before_any_cell(small_cohort, tmp_path, cache, monkeypatch):
    """Before: NotADirectoryError traceback after the first cell's work was done."""
    from benchmark import planning, runner

    monkeypatch.setattr(runner, "run_cell", lambda *a, **k: pytest.fail("a cell ran"))
    monkeypatch.setattr(planning, "extract_labels", lambda *a, **k: pytest.fail("labels were extracted"))
    f = tmp_path / "results.txt"
    f.write_text("not a folder")
    with pytest.raises(UserError) as e:
        runner.run_grid("logistic_regression", TASK, small_cohort, f, budget="smoke")
    assert e.value.field == "--results" and "is a file" in e.value.message and e.value.fix
    assert f.read_text() == "not a folder"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes to read-only folders")
def test_read_only_results_folder_is_refused(small_cohort, tmp_path, cache):
    from benchmark.runner import run_grid

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(UserError, match="cannot write to the results folder"):
            run_grid("logistic_regression", TASK, small_cohort, ro, budget="smoke")
    finally:
        ro.chmod(0o755)


def test_unwritable_results_folder_cli_exit_2(small_cohort, tmp_path, monkeypatch):
    """The same through the CLI: exit 2, the message names --results and the fix, no traceback.
    (A folder that refuses the probe write is simulated: tests may run as root.)"""
    from benchmark import cli, results

    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setenv("MEHR_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(results.tempfile, "mkstemp", refuse)
    rc = cli.main(["run", "--model", "logistic_regression", "--task", TASK, "--data", str(small_cohort.root),
                   "--results", str(tmp_path / "res"), "--budget", "smoke"])
    assert rc == 2
    assert not list((tmp_path / "res").rglob("*.json"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell which file is synced")
def test_disk_full_on_one_result_write(small_cohort, tmp_path, cache, monkeypatch, capsys):
    """Before: the OSError ended the run with a traceback, skipped the rest of the grid and left the
    temp file. Now: reported, the other cell finishes, no temp files, exit 1."""
    from benchmark import results, runner

    real_fsync = os.fsync

    def full(fd):
        # The disk fills up while the first cell's JSON is written (through the real atomic writer:
        # its temp file exists at this point). Other files sync normally.
        target = os.readlink(f"/proc/self/fd/{fd}")
        if "mortality_1y" in target and "seed0.json" in target:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(results.os, "fsync", full)
    res = tmp_path / "res"
    rc = runner.run_grid("logistic_regression", TWO_TASKS, small_cohort, res, budget="smoke")
    out = _flat(capsys.readouterr().out)
    assert rc == 1
    assert "No space left on device" in out and "not written" in out and "results in" in out
    first = res / "logistic_regression/oncology/mortality_1y"
    assert not (first / "seed0.json").exists()
    assert not (first / "seed0.predictions.parquet").exists()  # no orphan predictions
    second = json.loads((res / "logistic_regression/oncology/transfusion_1y/seed0.json").read_text())
    assert second["status"] == "ok"
    assert _temp_files(res) == []


# ---------------------------------------------------------------------------- item 5: atomic writes, concurrency
def test_atomic_writes_from_many_threads_to_one_path(tmp_path):
    """Before: the temp name was '.<name>.<pid>.tmp', shared by every thread of a process, so
    concurrent writers replaced each other's temp file (FileNotFoundError) or mixed contents."""
    from benchmark.results import atomic_write_bytes

    target = tmp_path / "x.json"
    errors: list[BaseException] = []
    payloads = [(f"{i:04d}" * 4096).encode() for i in range(8)]

    def writer(data: bytes) -> None:
        try:
            for _ in range(25):
                atomic_write_bytes(target, data)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_bytes() in payloads  # one writer's whole content, never a mix
    assert _temp_files(tmp_path) == []


def test_atomic_path_removes_the_temp_file_on_error(tmp_path):
    from benchmark.results import atomic_path

    target = tmp_path / "t.parquet"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target, ".parquet") as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert target.read_text() == "old"
    assert _temp_files(tmp_path) == []


def test_two_concurrent_runs_share_results_and_cache(small_cohort, tmp_path):
    """Before: one of the two runs failed a cell (the bag-of-events cache used one temp name in every
    process, and its names JSON was written in place). Now both exit 0, every cell is ok, and no
    temp file is left in the results folder, the cache or the cohort."""
    cache, res = tmp_path / "cache", tmp_path / "res"
    env = {**os.environ, "MEHR_BENCH_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "benchmark", "run", "--model", "logistic_regression", "--task", TWO_TASKS,
           "--data", str(small_cohort.root), "--results", str(res), "--budget", "smoke"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
        assert "Traceback" not in out and "failed" not in out, out
    cells = sorted(res.rglob("seed0.json"))
    assert len(cells) == 2
    assert all(json.loads(c.read_text())["status"] == "ok" for c in cells)
    assert list(cache.rglob("bag_of_events-*.npz")) and list(cache.rglob("labels/*/*.parquet"))
    assert _temp_files(res, cache, small_cohort.root) == []


_RACE = """
import sys, time
from pathlib import Path
import numpy as np
from benchmark.data.cohort import Cohort
from benchmark.labels import extract_labels
from benchmark.runner import task_data
from benchmark.task_registry import select_tasks
from benchmark.features.bag_of_events import featurize

cohort_root, sync, me = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
real_savez = np.savez

def savez_then_wait(*args, **kwargs):
    # Hold the written temp file until the other process has written too (at most 3 s): the
    # interleaving that broke the shared temp name, made certain instead of lucky.
    real_savez(*args, **kwargs)
    (sync / f"saved-{me}").touch()
    t0 = time.time()
    while len(list(sync.glob("saved-*"))) < 2 and time.time() - t0 < 3:
        time.sleep(0.01)

np.savez = savez_then_wait
cohort = Cohort(cohort_root)
task = select_tasks("oncology/mortality_1y")[0]
data = task_data(task, cohort, 0, extract_labels(task, cohort).labels)
(sync / f"ready-{me}").touch()
while len(list(sync.glob("ready-*"))) < 2:
    time.sleep(0.005)
bag = featurize(data)
assert bag.X["train"].shape[1] == len(bag.names)
"""


def test_two_processes_build_one_bag_of_events_entry(small_cohort, tmp_path):
    """Before: both processes wrote '.bag_of_events-<key>.npz.tmp.npz' and renamed it; the second
    rename failed (FileNotFoundError). The race is forced: each writer waits for the other after
    writing its temp file. Now one builds under the lock and the other reads its entry."""
    script, sync = tmp_path / "race.py", tmp_path / "sync"
    script.write_text(_RACE)
    sync.mkdir()
    # PYTHONPATH: the script imports this checkout (a script's own folder, not the cwd, is on sys.path)
    env = {**os.environ, "MEHR_BENCH_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, str(script), str(small_cohort.root), str(sync), me], cwd=REPO,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for me in ("a", "b")]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outs)
    assert len(list((tmp_path / "cache").rglob("bag_of_events-*.npz"))) == 1
    assert _temp_files(tmp_path / "cache") == []


# ---------------------------------------------------------------------------- item 8: names cannot leave --results
def test_model_spec_with_unsafe_name_is_rejected():
    from pydantic import ValidationError

    for bad in ("../../x", "a/b", "..", ".hidden", "", "x y", "a\\b"):
        with pytest.raises(ValidationError, match="safe identifier"):
            _spec(bad, lambda budget, seed: None)
    for good in ("catboost", "mehrt-9m", "my_model.v2"):
        assert _spec(good, lambda budget, seed: None).name == good


def _plugin(tmp_path: Path, monkeypatch, module: str, spec_name: str) -> None:
    """A third-party model module on sys.path whose SPEC has `spec_name`."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(f"""\
        from benchmark.registry import ModelSpec
        SPEC = ModelSpec(name={spec_name!r}, kind="baseline", description="plugin", modalities=("structured",),
                         task_kinds=("binary",), n_parameters=None, training_data="none", license="none",
                         reference="none", authors="tests", factory=lambda budget, seed: None)
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(module, None)


def test_entry_point_with_unsafe_spec_name_is_rejected(small_cohort, tmp_path, monkeypatch):
    """Before: a spec named '../../x' registered through an entry point wrote results outside
    --results. Now: a UserError naming the entry point, before anything runs."""
    from benchmark.runner import run_grid

    _plugin(tmp_path, monkeypatch, "evil_plugin_a", "../../x")
    monkeypatch.setattr(registry, "_entry_point_modules", lambda: {"../../x": "evil_plugin_a"})
    with pytest.raises(UserError) as e:
        registry.get_model("../../x")
    assert "entry point '../../x'" in e.value.render() and "mehr_bench.models" in e.value.render()
    res = tmp_path / "deep" / "er" / "res"
    with pytest.raises(UserError):
        run_grid("../../x", TASK, small_cohort, res, budget="smoke")
    assert not (tmp_path / "deep" / "x").exists() and not (tmp_path / "x").exists()


def test_entry_point_name_differs_from_unsafe_spec_name(tmp_path, monkeypatch, capsys):
    """A safe entry-point name whose module defines an unsafe SPEC name: rejected at import, named,
    and `models` lists the other models with a warning instead of crashing."""
    _plugin(tmp_path, monkeypatch, "evil_plugin_b", "../escape")
    monkeypatch.setattr(registry, "_entry_point_modules", lambda: {"nice_name": "evil_plugin_b"})
    with pytest.raises(UserError) as e:
        registry.get_model("nice_name")
    msg = e.value.render()
    assert "entry point 'nice_name'" in msg and "evil_plugin_b" in msg and "safe identifier" in msg
    monkeypatch.setattr(registry, "_entry_point_modules", lambda: {"nice_name": "evil_plugin_b",
                                                                   "logistic_regression": "baselines.models.logistic_regression"})
    assert [s.name for s in registry.list_models()] == ["logistic_regression"]
    assert "nice_name" in capsys.readouterr().err


def test_cell_paths_never_leave_the_results_folder(tmp_path):
    from benchmark.results import cell_paths

    j, p = cell_paths(tmp_path, "mehrt-9m", "oncology/mortality_1y", 0)
    assert j.resolve().is_relative_to(tmp_path.resolve()) and p.parent == j.parent
    for model, task in (("../../x", "a/b"), ("m", "../../etc"), ("m", "/abs/t"), ("m", "a//b"), ("/abs", "t"),
                        ("m", "a/./b")):
        with pytest.raises(UserError, match="cannot name a result folder"):
            cell_paths(tmp_path, model, task, 0)


def test_task_file_with_unsafe_name_is_rejected(tmp_path):
    from benchmark.taskspec import load_task_file

    f = tmp_path / "t.yaml"
    f.write_text("version: 1\n")
    with pytest.raises(UserError) as e:
        load_task_file(f, "fam/[x] y")
    assert e.value.field == "file name" and "rename" in e.value.fix


class _NotForThisTask:
    """A model that cannot answer the task (as a zero-shot model whose outcome has no token)."""

    def fit(self, data):
        from benchmark.model_api import NotApplicable
        raise NotApplicable(f"cannot answer {data.task.name}: its outcome [death] has no token")

    def predict(self, data, split):  # pragma: no cover - never reached
        raise AssertionError


def test_a_model_that_cannot_answer_the_task_is_refused_not_failed(small_cohort, tmp_path, cache, with_models,
                                                                   capsys):
    """Before: any exception in fit made the cell "failed" (a traceback in the record) although the model
    worked as designed. Now NotApplicable gives a "refused" record with the model's reason, no
    predictions file, and the run's exit status stays 0."""
    from benchmark.runner import run_grid

    with_models["picky"] = _spec("picky", lambda budget, seed: _NotForThisTask())
    rc = run_grid("picky", TASK, small_cohort, tmp_path / "res", budget="smoke")
    assert rc == 0
    rec = json.loads((tmp_path / "res/picky" / TASK / "seed0.json").read_text())
    assert rec["status"] == "refused" and "has no token" in rec["refused"] and "[death]" in rec["refused"]
    assert not rec.get("error") and not rec.get("metrics")
    assert not list((tmp_path / "res/picky" / TASK).glob("*predictions*"))
