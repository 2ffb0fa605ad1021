"""`run --jobs K`, `run --shard i/N`, `run --executor ray` (issue 19, item 1): the same results as
the serial run, a deterministic partition of the grid, a killed worker as a failed cell, the
models' prepare step once per (model, seed)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest

from benchmark.errors import UserError
from benchmark.registry import get_model
from benchmark.parallel import Shard, parse_shard, placement, shard_of, threads_per_job
from benchmark.results import cell_paths, read_records

REPO = Path(__file__).resolve().parents[1]
TASKS2 = "oncology/mortality_1y,icu/mortality_24h"
TASKS3 = "oncology/mortality_1y,oncology/transfusion_1y,icu/mortality_24h"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache of the module's own (labels and features computed once, shared by all the runs)."""
    old = os.environ.get("MEHR_BENCH_CACHE")
    os.environ["MEHR_BENCH_CACHE"] = str(tmp_path_factory.mktemp("grid-cache"))
    yield os.environ["MEHR_BENCH_CACHE"]
    os.environ.pop("MEHR_BENCH_CACHE") if old is None else os.environ.__setitem__("MEHR_BENCH_CACHE", old)


def _evaluate(cohort, out, models, tasks, **kw):
    from benchmark.runner import run_evaluation
    return run_evaluation(models, tasks, cohort, out, budget="smoke", **kw)


def _outputs(results: Path) -> dict:
    """(model, task, seed) -> (main metrics' value/ci_low/ci_high, the predictions frame) of every cell."""
    out = {}
    for r in read_records(results):
        metrics = {k: (m.value, m.ci_low, m.ci_high) for k, m in r.metrics.items()} if r.metrics else None
        pred = pl.read_parquet(cell_paths(results, r.model, r.task, r.seed, r.task_kind)[1])
        out[r.model, r.task, r.seed] = (r.status, metrics, pred)
    return out


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for k in a:
        assert a[k][:2] == b[k][:2], k
        assert a[k][2].equals(b[k][2]), k  # same rows, same values, same dtypes


# ---------------------------------------------------------------------------- flags and the split
@pytest.mark.parametrize("text", ["3/2", "2/2", "a/b", "-1/2", "1/0", "1", "", "0/2/4"])
def test_bad_shard_is_a_user_error_naming_the_flag(text):
    with pytest.raises(UserError) as e:
        parse_shard(text)
    assert e.value.field == "--shard" and "SLURM_ARRAY_TASK_ID" in e.value.fix


def test_shard_flags_on_the_command_line(tmp_path, capsys):
    from benchmark.cli import main
    for flags, field in ((["--shard", "3/2"], "--shard"), (["--shard", "a/b"], "--shard"), (["--jobs", "0"], "--jobs"),
                         (["--address", "127.0.0.1:1"], "--address"),
                         (["--executor", "ray", "--jobs", "2"], "--jobs")):
        code = main(["run", "--model", "logistic_regression", "--task", "oncology/mortality_1y",
                     "--data", str(tmp_path / "never-read"), "--results", str(tmp_path / "r"), *flags])
        err = capsys.readouterr().err
        assert code == 2 and field in err and "fix:" in err and "Traceback" not in err, (flags, err)
        assert not (tmp_path / "r").exists()  # refused before the cohort or the results folder is touched


def test_shards_partition_the_grid_deterministically():
    grid = [(m, t, s) for m in "abc" for t in range(5) for s in range(3)]
    for n in range(1, 7):
        parts = [shard_of(grid, Shard(i, n)) for i in range(n)]
        assert sorted(x for p in parts for x in p) == sorted(grid)  # every cell in exactly one shard
        assert sum(map(len, parts)) == len(grid)
        assert parts == [shard_of(list(grid), parse_shard(f"{i}/{n}")) for i in range(n)]  # same split twice
        assert max(map(len, parts)) - min(map(len, parts)) <= 1  # balanced
    assert shard_of(grid, None) == grid
    assert placement(shard="1/2").shard == Shard(1, 2) and not placement().parallel
    assert threads_per_job(2, cores=2) == 1 and threads_per_job(3, cores=16) == 5 and threads_per_job(4, cores=2) == 1


def test_a_worker_thread_budget_reaches_the_libraries(monkeypatch):
    from baselines.tabular import TabularBaseline
    from benchmark.model_api import BUDGETS
    from benchmark.parallel import limit_threads, thread_budget
    for var in ("MEHR_BENCH_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "POLARS_MAX_THREADS"):
        monkeypatch.delenv(var, raising=False)  # monkeypatch restores them (limit_threads sets them)
    if "torch" in sys.modules:  # limit_threads sets torch's pool too: give it back after the test
        monkeypatch.setattr(sys.modules["torch"], "set_num_threads", lambda n: None)
    limit_threads(1)  # what a worker of `run --jobs 2` on 2 cores does first
    assert thread_budget() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    assert TabularBaseline("catboost", budget=BUDGETS["smoke"]).threads == 1  # not its own 2: no oversubscription
    monkeypatch.setenv("MEHR_BENCH_THREADS", "8")
    assert TabularBaseline("catboost", budget=BUDGETS["smoke"]).threads == 2  # capped as before


def test_a_shard_owns_the_same_cells_whatever_is_finished(small_cohort, tmp_path, cache):
    """The split is over the whole grid, not over the cells left to do: finishing some cells
    (another shard's or a serial run's) does not move a cell from one shard to another."""
    models = "logistic_regression"
    before = _evaluate(small_cohort, tmp_path / "a", models, TASKS2, shard="1/2")
    _evaluate(small_cohort, tmp_path / "b", models, TASKS2)  # b: everything finished first
    after = _evaluate(small_cohort, tmp_path / "b", models, TASKS2, shard="1/2")
    keys = [(r.model, r.task, r.seed) for r in before.records]
    assert keys == [(r.model, r.task, r.seed) for r in after.records] == [("logistic_regression", "icu/mortality_24h", 0)]


# ---------------------------------------------------------------------------- same results
def test_jobs_and_two_shards_give_the_serial_results(small_cohort, tmp_path, cache):
    """Serial vs --jobs 2 vs shards 0/2 and 1/2 into one folder: the same cells, metrics (value and
    CI) and predictions."""
    from benchmark.registry import get_model
    from tests.grid_models import PLAIN
    specs = [get_model("logistic_regression"), PLAIN]  # catboost too: the Ray test (slow) runs all four ways
    serial = _evaluate(small_cohort, tmp_path / "serial", specs, TASKS2)
    jobs = _evaluate(small_cohort, tmp_path / "jobs", specs, TASKS2, jobs=2)
    for i in range(2):
        _evaluate(small_cohort, tmp_path / "shards", specs, TASKS2, shard=f"{i}/2")
    assert serial.failed == jobs.failed == 0
    ref = _outputs(tmp_path / "serial")
    assert len(ref) == 4 and {v[0] for v in ref.values()} == {"ok"}
    _same(ref, _outputs(tmp_path / "jobs"))
    _same(ref, _outputs(tmp_path / "shards"))
    assert [r.model_dump(exclude={"compute", "provenance"}) for r in serial.records] == \
           [r.model_dump(exclude={"compute", "provenance"}) for r in jobs.records]


def test_a_killed_worker_fails_only_its_cell(small_cohort, tmp_path, cache):
    from benchmark.registry import get_model
    from tests.grid_models import KILL
    ev = _evaluate(small_cohort, tmp_path, [KILL, get_model("logistic_regression")], TASKS2, jobs=2)
    status = {(r.model, r.task): (r.status, r.error) for r in ev.records}
    assert ev.failed == 2
    for t in TASKS2.split(","):
        st, err = status["grid_kill", t]
        assert st == "failed" and "grid_kill on " + t in err and "died (signal 9)" in err, err
        assert status["logistic_regression", t] == ("ok", None)
    assert not cell_paths(tmp_path, "grid_kill", "icu/mortality_24h", 0)[0].exists()  # unfinished: rerun computes it


def test_a_model_that_cannot_reach_a_worker_fails_its_cells_not_the_run(small_cohort, tmp_path, cache):
    """A spec whose factory is a closure and that is not registered (so it cannot travel by name)."""
    from tests.grid_models import PLAIN, _Scores
    closure = PLAIN.model_copy(update={"name": "grid_closure", "factory": lambda budget, seed=0: _Scores(budget, seed)})
    ev = _evaluate(small_cohort, tmp_path, [closure, PLAIN], "oncology/mortality_1y", jobs=2)
    st = {r.model: (r.status, r.error) for r in ev.records}
    assert st["grid_plain"] == ("ok", None) and st["grid_closure"][0] == "failed"
    assert "cannot be sent to a worker process" in st["grid_closure"][1] and ev.failed == 1


# ---------------------------------------------------------------------------- the prepare step
def test_prepare_runs_once_per_model_and_seed_before_its_cells(small_cohort, tmp_path, cache, monkeypatch):
    from tests.grid_models import BAD_PREP, PLAIN, PREP
    log = tmp_path / "prepare.log"
    monkeypatch.setenv("GRID_PREPARE_LOG", str(log))
    ev = _evaluate(small_cohort, tmp_path / "r", [PREP, BAD_PREP, PLAIN], TASKS3, seeds=2, jobs=2)
    lines = log.read_text().splitlines()
    assert sorted(x.rsplit(" ", 1)[0] for x in lines) == ["grid_prep 0", "grid_prep 1"]  # once per (model, seed)
    assert {int(x.rsplit(" ", 1)[1]) for x in lines}.isdisjoint({os.getpid()})  # in a worker, not the driver
    by = {(r.model, r.task, r.seed): r for r in ev.records}
    assert len(by) == 18
    for (m, t, s), r in by.items():
        if m == "grid_bad_prep":  # its prepare failed: its cells fail with that error, named
            assert r.status == "failed" and "prepare step of grid_bad_prep failed" in r.error
            assert "planted prepare failure" in r.error
        else:
            assert r.status == "ok", (m, t, s, r.error)
    assert ev.failed == 6
    again = _evaluate(small_cohort, tmp_path / "r", [PREP, PLAIN], TASKS3, seeds=2, jobs=2)
    assert again.failed == 0 and log.read_text().splitlines() == lines  # every cell finished: no prepare


def _prepare_spans(log: Path) -> dict[str, tuple[float, float]]:
    spans: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        name, what, t = line.split()
        spans.setdefault(name, [0.0, 0.0])[what == "end"] = float(t)
    return {k: (a, b) for k, (a, b) in spans.items()}


def test_prepare_steps_of_one_chain_run_one_after_another(small_cohort, tmp_path, cache, monkeypatch):
    """The MEHRT family's prepare steps pretrain Stage 1 under one lock: started side by side, the
    second held a worker idle for the whole of the first (206 s in `make run`). One chain: in turn."""
    from tests.grid_models import CHAIN_A, CHAIN_B, UNCHAINED_A, UNCHAINED_B
    assert get_model("ehrt").prepare_chain == get_model("mehrt").prepare_chain == "mehrt-pretraining"
    assert get_model("mehrt-zeroshot-path").prepare_chain == "mehrt-pretraining"
    assert get_model("catboost").prepare_chain is None
    log = tmp_path / "chained.log"
    monkeypatch.setenv("GRID_PREPARE_LOG", str(log))
    ev = _evaluate(small_cohort, tmp_path / "r", [CHAIN_A, CHAIN_B], "oncology/mortality_1y", jobs=2)
    assert ev.failed == 0
    spans = _prepare_spans(log)
    assert spans["grid_chain_b"][0] >= spans["grid_chain_a"][1]  # B started after A ended
    # the control: unchained, two workers start both at once (so the check above can fail)
    log2 = tmp_path / "unchained.log"
    monkeypatch.setenv("GRID_PREPARE_LOG", str(log2))
    _evaluate(small_cohort, tmp_path / "r2", [UNCHAINED_A, UNCHAINED_B], "oncology/mortality_1y", jobs=2)
    spans = _prepare_spans(log2)
    assert spans["grid_chain_b"][0] < spans["grid_chain_a"][1]


def test_a_failed_prepare_step_does_not_stop_the_next_in_its_chain(small_cohort, tmp_path, cache, monkeypatch):
    from tests.grid_models import CHAIN_B, CHAIN_BAD
    monkeypatch.setenv("GRID_PREPARE_LOG", str(tmp_path / "p.log"))
    ev = _evaluate(small_cohort, tmp_path / "r", [CHAIN_BAD, CHAIN_B], TASKS2, jobs=2)
    st = {(r.model, r.task): r.status for r in ev.records}
    assert st == {("grid_bad_prep", t): "failed" for t in TASKS2.split(",")} | {("grid_chain_b", t): "ok" for t in TASKS2.split(",")}
    assert "grid_chain_b" in _prepare_spans(tmp_path / "p.log")


def test_serial_prepare_once_and_failure_is_the_models_only(small_cohort, tmp_path, cache, monkeypatch):
    from tests.grid_models import BAD_PREP, PREP
    log = tmp_path / "prepare.log"
    monkeypatch.setenv("GRID_PREPARE_LOG", str(log))
    ev = _evaluate(small_cohort, tmp_path / "r", [BAD_PREP, PREP], TASKS2, seeds=2)
    assert sorted(log.read_text().splitlines()) == [f"grid_prep 0 {os.getpid()}", f"grid_prep 1 {os.getpid()}"]
    st = {(r.model, r.task, r.seed): r.status for r in ev.records}
    assert [k for k, v in st.items() if v == "failed"] == [k for k in st if k[0] == "grid_bad_prep"] and len(st) == 8
    assert all("the prepare step of grid_bad_prep failed: RuntimeError: planted" in r.error
               for r in ev.records if r.model == "grid_bad_prep")


def test_resources_are_declared_and_listed():
    from benchmark.registry import ModelSpec, Resources, get_model
    assert ModelSpec.model_fields["resources"].default == Resources(cpus=1, gpus=0.0)
    with pytest.raises(ValueError):
        Resources(cpus=1, gpu=1)  # extra="forbid"
    with pytest.raises(ValueError):
        Resources(cpus=0)
    # `models --json` prints public_dict()
    assert get_model("logistic_regression").public_dict()["resources"] == {"cpus": 1, "gpus": 0.0}


# ---------------------------------------------------------------------------- Ray
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ray_cluster_on_loopback_gives_the_serial_results(small_cohort, tmp_path, cache):
    """A Ray head started here on 127.0.0.1; `run --executor ray --address`, `--jobs 2` and shards
    0/2 + 1/2 through the CLI, with catboost and ehrt: the serial run's cells, metrics and predictions."""
    pytest.importorskip("ray")
    ray_bin = Path(sys.executable).with_name("ray")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "RAY_USAGE_STATS_ENABLED": "0", "MEHR_BENCH_CACHE": cache}
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 characters
    # --block: the head lives in this process group, which the finalizer ends (not `ray stop`, which
    # would stop every Ray process of the user on the machine)
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                             f"--port={port}", "--num-cpus=2", "--object-store-memory=200000000",
                             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={ray_tmp}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        _wait_for_port(port, head)
        models = "logistic_regression,catboost,ehrt"  # ehrt (torch): its output is the same at 1 and 2 threads
        common = ["--model", models, "--task", TASKS3, "--data", str(small_cohort.root), "--budget", "smoke"]
        serial = subprocess.run([sys.executable, "-m", "benchmark", "run", *common, "--results", str(tmp_path / "s")],
                                capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
        assert serial.returncode == 0, serial.stdout + serial.stderr
        ways = {"r": ["--executor", "ray", "--address", f"127.0.0.1:{port}"], "j": ["--jobs", "2"],
                "sh": ["--shard", "0/2"], "sh ": ["--shard", "1/2"]}  # both shards into one folder
        for folder, flags in ways.items():
            r = subprocess.run([sys.executable, "-m", "benchmark", "run", *common, "--results",
                                str(tmp_path / folder.strip()), *flags],
                               capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
            assert r.returncode == 0, r.stdout + r.stderr
            if folder == "r":
                assert "ray cluster at 127.0.0.1" in r.stdout and "run on CPU" in r.stdout
        ref = _outputs(tmp_path / "s")
        assert len(ref) == 9
        for folder in ("r", "j", "sh"):
            _same(ref, _outputs(tmp_path / folder))
    finally:
        _end_group(head)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    import time
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, "ray start --head exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(2)  # the GCS listens before the raylet has registered
                return
        time.sleep(0.5)
    raise AssertionError(f"no Ray head on port {port} after {timeout} s")


def _end_group(proc: subprocess.Popen) -> None:
    """SIGTERM then SIGKILL to the head's process group (the Ray processes this test started)."""
    import signal
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):  # SIGKILL: whatever outlived the head
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


def test_ray_without_a_cluster_is_a_user_error(tmp_path, small_cohort, cache):
    pytest.importorskip("ray")
    r = subprocess.run([sys.executable, "-m", "benchmark", "run", "--model", "logistic_regression", "--task",
                        "oncology/mortality_1y", "--data", str(small_cohort.root), "--results", str(tmp_path / "r"),
                        "--budget", "smoke", "--executor", "ray", "--address", f"127.0.0.1:{_free_port()}"],
                       capture_output=True, text=True, cwd=REPO, timeout=300,
                       env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert r.returncode == 2 and "ray start --head" in r.stderr and "Traceback" not in r.stderr, r.stdout + r.stderr


_DRIVER = """
import sys
from benchmark.executors import Job, LocalPool, execute
from tests.grid_models import write_pid_and_sleep
pool = LocalPool(1)
execute([Job(key=0, fn=write_pid_and_sleep, args=(sys.argv[1], 300.0), name="sleeper")], pool, lambda j, o: None)
"""


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie, exited but not yet reaped by its new parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in {"Z", "X"}


def test_a_worker_exits_when_its_driver_is_killed(tmp_path):
    """Planted fault: the driver of `run --jobs` is SIGKILLed mid-cell. Its worker must not live on as
    an orphan that finishes the cell unasked (seen: it wrote a record into a results folder that had
    been cleared and reused by the next run)."""
    import signal
    import time

    pid_file = tmp_path / "worker.pid"
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER, str(pid_file)], cwd=Path(__file__).resolve().parents[1],
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        for _ in range(600):
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.1)
        worker = int(pid_file.read_text())
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        for _ in range(100):  # the watchdog polls once a second
            if not _alive(worker):
                break
            time.sleep(0.1)
        else:
            os.kill(worker, signal.SIGKILL)
            pytest.fail("the worker outlived its killed driver by 10 s")
    finally:
        if driver.poll() is None:
            driver.kill()
