"""Where things live: the tasks folder, the cache, the embedded default cohort, results."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_SUBJECTS = 5000
DEFAULT_SEED = 0


def tasks_dir() -> Path:
    """The task YAML folder.

    Returns:
        $MEHR_BENCH_TASKS when set; else the tasks shipped as package data (`benchmark/_tasks`, a
        link to the top-level tasks/ that setuptools follows, so a plain `pip install .` has them);
        else <repo>/tasks (a source tree whose checkout did not create the link).
    """
    if "MEHR_BENCH_TASKS" in os.environ:
        return Path(os.environ["MEHR_BENCH_TASKS"])
    shipped = Path(str(resources.files("benchmark") / "_tasks"))
    return shipped if shipped.is_dir() else REPO_ROOT / "tasks"


def cache_dir() -> Path:
    """The cache root ($MEHR_BENCH_CACHE or ~/.cache/mehr-bench)."""
    p = Path(os.environ.get("MEHR_BENCH_CACHE", Path.home() / ".cache" / "mehr-bench"))
    return p


def default_cohort_dir(generator_version: str, n_subjects: int = DEFAULT_SUBJECTS, seed: int = DEFAULT_SEED,
                       site: str = "a") -> Path:
    """Folder of the embedded synthetic cohort (generated on first use, see benchmark.default_cohort).

    Args:
        generator_version: the generator's GENERATOR_VERSION (a new version gets a new folder).
        n_subjects: cohort size.
        seed: generator seed.
        site: the synthetic site ("a": the default cohort; "b": the external-validation site).

    Returns:
        cache_dir()/cohorts/synthetic-n<N>-s<seed>-g<version> (site b: with a "-siteb" suffix).
    """
    suffix = "" if site == "a" else f"-site{site}"
    return cache_dir() / "cohorts" / f"synthetic-n{n_subjects}-s{seed}-g{generator_version}{suffix}"


def default_results_dir() -> Path:
    return Path(os.environ.get("MEHR_BENCH_RESULTS", "results"))
