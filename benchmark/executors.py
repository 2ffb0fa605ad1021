"""Where `run`'s jobs execute when not in the driver's own loop: K local worker processes
(`run --jobs K`) or a Ray cluster (`run --executor ray [--address ADDR]`).

One interface: `execute(jobs, backend, on_done)` submits every job whose dependency has finished,
and calls on_done(job, outcome) as each one finishes, in finishing order. A job is a module-level
function and its (picklable) arguments; a job may wait for another (a model's cells for its prepare
step, benchmark.model_api): when that one fails, its dependents are not run and finish with its
error. The runner (benchmark.runner) builds the jobs; this module knows no cell.

Local workers are spawned (torch and fork do not mix), each capped at its thread share
(benchmark.parallel) before it imports anything heavy. The driver owns them: a worker that dies (OOM
killer, SIGKILL) fails only the job it was running, named, and is replaced; Ctrl-C terminates them;
a worker whose driver is killed exits within a second (no orphan finishes its cell).
Ray is optional: `import benchmark` never imports it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from benchmark.errors import UserError
from benchmark.parallel import limit_threads, threads_per_job

# Environment the workers must share with the driver (caches, task folder): a Ray worker started by
# `ray start` elsewhere does not have the driver's environment.
SHARED_ENV = ("MEHR_BENCH_CACHE", "MEHR_BENCH_TASKS", "MEHR_BENCH_RESULTS")


@dataclass
class Job:
    """One unit of work.

    Args:
        key: unique among the jobs of one execute() call.
        fn: a module-level function (pickled by reference).
        args: its arguments (picklable).
        name: how messages name the job ("ehrt on oncology/mortality_1y seed 0").
        cpus, gpus: what it needs (Ray schedules on these; the local pool runs one job per worker).
        after: the key of a job that must finish without error first, or None.
        not_before: the key of a job that must have ended (with or without error) first, or None:
            an ordering without a dependency (benchmark.registry.ModelSpec.prepare_chain).
    """

    key: Hashable
    fn: Callable[..., Any]
    args: tuple
    name: str
    cpus: int = 1
    gpus: float = 0.0
    after: Hashable | None = None
    not_before: Hashable | None = None


@dataclass
class Outcome:
    """How a job ended: value (ok) or error (one line) with its traceback."""

    ok: bool
    value: Any = None
    error: str | None = None
    traceback: str | None = None


def _call(fn: Callable[..., Any], args: tuple) -> Outcome:
    try:
        return Outcome(True, fn(*args))
    except Exception as e:  # noqa: BLE001 - the job's error goes back to the driver, named
        return Outcome(False, error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc(limit=8))


def execute(jobs: list[Job], backend: "Backend", on_done: Callable[[Job, Outcome], None]) -> None:
    """Run the jobs on the backend, each after its dependency; on_done for every job, once.

    Args:
        jobs: the jobs, in the order they should start (dependencies before their dependents).
        backend: a LocalPool or a RayCluster (closed by the caller).
        on_done: called in the driver as each job finishes (also for a job skipped because its
            dependency failed: not ok, the dependency's error).
    """
    waiting: dict[Hashable, list[Job]] = {}  # key -> the jobs waiting for it, in `jobs` order
    for j in jobs:
        if j.after is not None and j.not_before is not None:
            raise ValueError(f"job {j.name}: give `after` or `not_before`, not both")
        if j.after is not None or j.not_before is not None:
            waiting.setdefault(j.after if j.after is not None else j.not_before, []).append(j)
        else:
            backend.submit(j)

    def ended(job: Job, out: Outcome) -> None:
        on_done(job, out)
        for dep in waiting.pop(job.key, []):
            if out.ok or dep.not_before is not None:  # an ordering only: it runs whatever the first's outcome
                backend.submit(dep)
            else:
                ended(dep, Outcome(False, error=f"{job.name} failed: {out.error}", traceback=out.traceback))

    while backend.busy():
        for job, out in backend.wait():
            ended(job, out)
    for key, deps in waiting.items():  # a dependency that was never submitted: a bug, said, not hung on
        for dep in deps:
            on_done(dep, Outcome(False, error=f"internal: the job it waits for ({key}) never ran"))


@dataclass(frozen=True)
class _ParquetRef:
    path: str


_FETCHED: dict[str, Any] = {}  # per worker process: a shared frame is read once, not once per job


def fetch(handle: Any) -> Any:
    """In a job: the frame a backend's share() stored (read once per process)."""
    if isinstance(handle, _ParquetRef):
        if handle.path not in _FETCHED:
            import polars as pl
            _FETCHED[handle.path] = pl.read_parquet(handle.path)
        return _FETCHED[handle.path]
    import ray  # only a RayCluster hands out other handles
    return ray.get(handle)


class Backend:
    """submit(job) queues a job; wait() blocks until at least one finishes and returns the finished
    (job, outcome) pairs; busy() says whether any job is queued or running; share(frame) stores a
    polars frame once for many jobs (fetch() reads it in a job); close() frees workers."""

    def share(self, frame: Any) -> Any:
        raise NotImplementedError

    def submit(self, job: Job) -> None:
        raise NotImplementedError

    def wait(self) -> list[tuple[Job, Outcome]]:
        raise NotImplementedError

    def busy(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------- local processes
def _worker_main(conn, threads: int) -> None:
    """A local worker: cap threads, then run the jobs the driver sends until it sends None."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it terminates the workers
    _exit_with(os.getppid())
    limit_threads(threads)
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the driver went away
            return
        if msg is None:
            return
        fn, args = msg
        conn.send(_call(fn, args))


def _exit_with(driver: int) -> None:
    """End this worker as soon as its driver is gone (killed by a signal it cannot catch, SIGKILL or
    SIGTERM): an orphan would finish its cell unasked, write into a results folder the user may have
    cleared and reused, and hold a core. A daemon thread polls the parent pid once a second."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == driver:
            time.sleep(1.0)
        os._exit(3)

    threading.Thread(target=watch, name="driver-watch", daemon=True).start()


@dataclass
class _Worker:
    process: Any
    conn: Any
    job: Job | None = None


@dataclass
class LocalPool(Backend):
    """K spawned worker processes on this machine, each running one job at a time with
    threads_per_job(K) threads; jobs start in submission order.

    Args:
        jobs: K, the number of worker processes.
    """

    jobs: int
    queue: list[Job] = field(default_factory=list)
    workers: list[_Worker] = field(default_factory=list)
    unsent: list[tuple[Job, Outcome]] = field(default_factory=list)  # jobs that could not be pickled

    def __post_init__(self) -> None:
        import multiprocessing as mp
        import tempfile

        self.ctx = mp.get_context("spawn")
        self.threads = threads_per_job(self.jobs)
        self.tmp = tempfile.mkdtemp(prefix="mehr-bench-jobs-")  # shared frames; removed by close()

    def share(self, frame: Any) -> _ParquetRef:
        path = os.path.join(self.tmp, f"{len(os.listdir(self.tmp))}.parquet")
        frame.write_parquet(path)
        return _ParquetRef(path)

    def _spawn(self) -> _Worker:
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker_main, args=(child, self.threads), daemon=True, name="mehr-bench-worker")
        p.start()
        child.close()
        w = _Worker(p, parent)
        self.workers.append(w)
        return w

    def _dispatch(self) -> None:
        while self.queue:
            idle = next((w for w in self.workers if w.job is None), None)
            if idle is None:
                if len(self.workers) >= self.jobs:
                    return
                idle = self._spawn()
            job = self.queue.pop(0)
            try:
                idle.conn.send((job.fn, job.args))  # pickled before anything is written: the pipe stays clean
            except (pickle.PicklingError, AttributeError, TypeError) as e:
                self.unsent.append((job, Outcome(False, error=f"{job.name} cannot be sent to a worker process "
                                                             f"({type(e).__name__}: {e}); run it without --jobs")))
                continue
            idle.job = job

    def submit(self, job: Job) -> None:
        self.queue.append(job)
        self._dispatch()

    def busy(self) -> bool:
        return bool(self.queue or self.unsent) or any(w.job is not None for w in self.workers)

    def wait(self) -> list[tuple[Job, Outcome]]:
        from multiprocessing.connection import wait

        if self.unsent:
            done, self.unsent = self.unsent, []
            return done
        running = [w for w in self.workers if w.job is not None]
        ready = set(wait([w.conn for w in running] + [w.process.sentinel for w in running]))
        done = []
        for w in running:
            job = w.job
            if w.conn in ready:
                try:
                    out = w.conn.recv()
                except (EOFError, OSError):  # it died while sending
                    out = None
                if out is not None:
                    w.job = None
                    done.append((job, out))
                    continue
            if w.conn in ready or w.process.sentinel in ready:
                w.process.join(5)
                code = w.process.exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                done.append((job, Outcome(False, error=f"the worker process running {job.name} died ({how}): "
                                                       "killed (out of memory?) or crashed in native code")))
                w.conn.close()
                self.workers.remove(w)
        self._dispatch()
        return done

    def close(self) -> None:
        """Stop the workers: ask idle ones to exit, terminate busy ones (Ctrl-C, an error)."""
        for w in self.workers:
            with contextlib.suppress(OSError, ValueError):
                if w.job is None:
                    w.conn.send(None)
                else:
                    w.process.terminate()
        for w in self.workers:
            w.process.join(10)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()
        self.workers.clear()
        self.queue.clear()
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- Ray
def _ray_task(fn: Callable[..., Any], args: tuple, cpus: int) -> Outcome:
    """One Ray task: the job's thread share is its CPUs; errors come back as an Outcome."""
    limit_threads(cpus)
    return _call(fn, args)


def _unreachable(address: str) -> str | None:
    """Why nothing listens at a host:port address (None: something does, or the address is not host:port)."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return None
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            return None
    except OSError as e:
        return e.strerror or str(e)


class RayCluster(Backend):
    """A running Ray cluster: one Ray task per job, with the job's CPUs (and GPUs when the cluster
    has any; `gpus` is dropped otherwise and the job runs on CPU).

    Args:
        address: the cluster (`ray start --head` prints it; "auto": the one this machine is part of).
        say: a function taking one line of text (the console).

    Raises:
        UserError: ray is not installed, or no cluster is reachable at the address.
    """

    def __init__(self, address: str = "auto", say: Callable[[str], None] = print):
        try:
            import ray
        except ModuleNotFoundError:
            raise UserError("--executor ray needs the ray package, which is not installed", field="--executor",
                            fix="pip install 'mehr-bench[ray]' (or run with --jobs K on this machine)") from None
        self.ray = ray
        env = {k: os.environ[k] for k in SHARED_ENV if k in os.environ}
        fix = ("start one with `ray start --head` (it prints the address to pass) and check that this machine "
               "can reach it")
        why = _unreachable(address)
        if why:  # ray.init retries an address nobody listens on for minutes: refuse at once
            raise UserError(f"no Ray cluster reachable at --address {address}: {why}", field="--address", fix=fix)
        try:
            ray.init(address=address, runtime_env={"env_vars": env} if env else None,
                     log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"no Ray cluster reachable at --address {address}: {str(e).splitlines()[0]}",
                            field="--address", fix=fix) from None
        res = ray.cluster_resources()
        self.has_gpu = res.get("GPU", 0) > 0
        # a task asking more CPUs than any node has would wait forever: it gets the largest node's
        self.max_cpus = max([int(n["Resources"].get("CPU", 1)) for n in ray.nodes() if n.get("Alive")] or [1])
        say(f"ray cluster at {address}: {int(res.get('CPU', 0))} CPUs, {int(res.get('GPU', 0))} GPUs"
            + ("" if self.has_gpu else " (jobs that declare a GPU run on CPU)"))
        self.remote = ray.remote(_ray_task)
        self.pending: dict[Any, Job] = {}

    def share(self, frame: Any) -> Any:
        return self.ray.put(frame)

    def submit(self, job: Job) -> None:
        gpus, cpus = (job.gpus if self.has_gpu else 0), max(1, min(job.cpus, self.max_cpus))
        ref = self.remote.options(num_cpus=cpus, num_gpus=gpus, max_retries=0).remote(job.fn, job.args, cpus)
        self.pending[ref] = job

    def busy(self) -> bool:
        return bool(self.pending)

    def wait(self) -> list[tuple[Job, Outcome]]:
        ready, _ = self.ray.wait(list(self.pending), num_returns=1)
        done = []
        for ref in ready:
            job = self.pending.pop(ref)
            try:
                out = self.ray.get(ref)
            except Exception as e:  # noqa: BLE001 - the task's worker died (WorkerCrashedError...) or Ray failed
                out = Outcome(False, error=f"ray task for {job.name} failed: {type(e).__name__}: "
                                           f"{str(e).splitlines()[0] if str(e) else ''}")
            done.append((job, out))
        return done

    def close(self) -> None:
        for ref in self.pending:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)
        self.pending.clear()
        self.ray.shutdown()
