"""Shared fixtures for speed/memory benchmarks.

Targets are ratios against a reference measured in the same run, never absolute seconds.
`make bench` runs these with timing enabled and asserts the targets; `make test` passes
`--benchmark-disable`, which runs every benchmark once on its smoke size so it cannot rot,
without asserting timing ratios (2 shared CI cores make wall-clock ratios noisy at small sizes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest


def best_of(fn: Callable[[], object], rounds: int) -> float:
    """Best wall time of `rounds` calls (seconds)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


REPO = Path(__file__).resolve().parents[2]


def fresh_interpreter(script: str, args: list[str], cache: Path, what: str, timeout: int = 1800) -> dict:
    """Run `python -c script *args` in a fresh interpreter (this repo first on PYTHONPATH, its own
    MEHR_BENCH_CACHE): a peak-RSS measurement that no earlier test's memory can spoil. Returns the
    JSON object on the script's last stdout line; `what` names the step in the failure message."""
    env = {**os.environ, "MEHR_BENCH_CACHE": str(cache),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    out = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, f"{what} failed:\n{out.stderr[-3000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def cohorts(tmp_path_factory):
    """Synthetic cohorts without images (seed 5) by size, generated once per session (the featurizer and
    integrity benchmarks share the 100k / 1M-subject ones under `make bench`): cohorts(n) -> Cohort."""
    from benchmark.data.cohort import Cohort
    from data_prep.synthetic import generate

    made: dict = {}

    def get(n: int):
        if n not in made:
            made[n] = Cohort(generate(tmp_path_factory.mktemp(f"syn{n}") / "cohort", n_subjects=n, seed=5,
                                      images=False))
        return made[n]

    return get


@pytest.fixture
def bench_enabled(benchmark) -> bool:
    """True under `make bench` (timing on), False under `make test` (--benchmark-disable)."""
    return not benchmark.disabled


@pytest.fixture
def compare(benchmark, bench_enabled):
    """Time `ours` against `reference` in the same process and check the speed-up ratio.

    Usage: ``ratio = compare(ours, reference, min_ratio=5.0, rounds=3)``.

    Args (of the returned callable):
        ours: zero-argument callable, the code under test (timed by pytest-benchmark).
        reference: zero-argument callable, the reference implementation.
        min_ratio: required reference_time / ours_time when benchmarks are enabled.
        rounds: best-of rounds for each side.

    Returns:
        The measured ratio (None when benchmarks are disabled; each side then runs once).
    """

    def run(ours: Callable[[], object], reference: Callable[[], object], *, min_ratio: float,
            rounds: int = 3, reference_rounds: int | None = None) -> float | None:
        if not bench_enabled:
            benchmark(ours)  # runs once, untimed, under --benchmark-disable
            reference()
            return None
        benchmark.pedantic(ours, rounds=rounds, iterations=1, warmup_rounds=0)
        t_ours = benchmark.stats.stats.min
        t_ref = best_of(reference, reference_rounds or rounds)
        ratio = t_ref / t_ours
        benchmark.extra_info.update(ours_s=t_ours, reference_s=t_ref, ratio=ratio, target=min_ratio)
        print(f"\n[{benchmark.name}] ours {t_ours:.4f}s  reference {t_ref:.4f}s  ratio {ratio:.2f}x "
              f"(target >= {min_ratio}x)")
        assert ratio >= min_ratio, f"speed-up {ratio:.2f}x is below the target {min_ratio}x"
        return ratio

    return run
