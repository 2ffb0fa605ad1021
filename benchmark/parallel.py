"""Parallel `run`: the worker thread budget and the deterministic split of the grid into shards.

`run --jobs K` gives each of its K worker processes max(1, C // K) threads on C cores (so K cells do
not oversubscribe the machine); a worker reads its share with `thread_budget()`. `run --shard i/N`
keeps cell j of the grid (in grid order: model, task, seed, point) when j % N == i: the split does
not depend on which cells are already finished, on the labels, or on the machine, so N Slurm array
jobs each own a fixed, disjoint 1/N of the grid.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Sequence, TypeVar

from benchmark.errors import UserError

T = TypeVar("T")

THREADS_ENV = "MEHR_BENCH_THREADS"
# The thread pools of the numeric libraries read these once, when loaded: a worker sets them first.
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "POLARS_MAX_THREADS")


def cpu_count() -> int:
    """The cores this process may use (its CPU affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """max(1, cores // jobs): the threads of one of `jobs` concurrent cells on `cores` cores."""
    return max(1, (cores or cpu_count()) // max(1, jobs))


def thread_budget() -> int:
    """The threads the current cell may use: $MEHR_BENCH_THREADS in a worker of `run --jobs K` (or
    a Ray task: its CPUs), else every core of this process.

    Returns:
        A positive thread count.
    """
    try:
        return max(1, int(os.environ[THREADS_ENV]))
    except (KeyError, ValueError):
        return cpu_count()


def limit_threads(n: int) -> None:
    """Cap this process at n threads: the environment the numeric libraries read when loaded (call
    it before importing them), and torch's pool if torch is already imported.

    Args:
        n: the thread count (thread_budget() reads it back).
    """
    n = max(1, int(n))
    os.environ[THREADS_ENV] = str(n)
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0 <= index < count)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def parse_shard(text: str) -> Shard:
    """`--shard i/N` -> Shard(i, N).

    Raises:
        UserError: not two integers i/N with N >= 1 and 0 <= i < N.
    """
    m = _SHARD.fullmatch(text or "")
    fix = ("pass i/N with 0 <= i < N, e.g. --shard 0/8 ... --shard 7/8 "
           "(in a Slurm array: --shard ${SLURM_ARRAY_TASK_ID}/8 with --array=0-7)")
    if not m:
        raise UserError(f"--shard {text!r} is not i/N (two non-negative integers)", field="--shard", fix=fix)
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or i >= n:
        raise UserError(f"--shard {text!r}: shard index {i} is not in 0..{n - 1}" if n >= 1
                        else f"--shard {text!r}: the number of shards must be at least 1", field="--shard", fix=fix)
    return Shard(i, n)


def shard_of(items: Sequence[T], shard: Shard | None) -> list[T]:
    """The items shard `shard` owns: item j when j % count == index (all of them for None).

    Args:
        items: the whole grid, in grid order.
        shard: the shard, or None.

    Returns:
        Its items, in grid order.
    """
    if shard is None:
        return list(items)
    return [x for j, x in enumerate(items) if j % shard.count == shard.index]


EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Placement:
    """Where a run's cells execute: `jobs` local processes (1: the driver's own loop) or a Ray
    cluster at `address`; `shard`: the part of the grid this run owns (None: all of it)."""

    jobs: int = 1
    executor: str = "local"
    address: str | None = None
    shard: Shard | None = None

    @property
    def parallel(self) -> bool:
        """Whether cells leave the driver's process."""
        return self.executor == "ray" or self.jobs > 1


def placement(jobs: int = 1, executor: str = "local", address: str | None = None,
              shard: str | Shard | None = None) -> Placement:
    """Check `run`'s --jobs / --executor / --address / --shard and return the Placement.

    Raises:
        UserError: --jobs below 1, an unknown executor, --jobs or --address with the wrong executor,
            a bad --shard.
    """
    if executor not in EXECUTORS:
        raise UserError(f"unknown --executor {executor!r}", field="--executor", fix="use local or ray")
    if not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"--jobs {jobs} must be at least 1", field="--jobs", fix="pass --jobs 1 or more")
    if executor == "ray" and jobs > 1:
        raise UserError("--jobs sets local worker processes; a Ray cluster schedules by each model's resources",
                        field="--jobs", fix="drop --jobs with --executor ray (or use --executor local --jobs K)")
    if address is not None and executor != "ray":
        raise UserError("--address names a Ray cluster", field="--address", fix="add --executor ray, or drop --address")
    s = parse_shard(shard) if isinstance(shard, str) else shard
    return Placement(jobs=jobs, executor=executor, address=address, shard=s)
