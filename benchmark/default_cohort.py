"""The embedded default cohort: the synthetic cohort, generated once (deterministically) into the cache.

The core never imports data_prep (dependencies point one way): the generator is found through the
entry-point group `mehr_bench.cohorts` (pyproject.toml names `synthetic = "data_prep.synthetic"`),
the same door plug-in models use.
"""

from __future__ import annotations

import fcntl
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from rich.console import Console

from benchmark.errors import UserError
from benchmark.paths import DEFAULT_SEED, DEFAULT_SUBJECTS, default_cohort_dir

COHORT_GROUP = "mehr_bench.cohorts"
DEFAULT_GENERATOR = "synthetic"


def cohort_generator(name: str = DEFAULT_GENERATOR) -> ModuleType:
    """The cohort generator registered under `name` in the entry-point group mehr_bench.cohorts.

    Args:
        name: entry-point name.

    Returns:
        The generator module: `generate(out_dir, n_subjects=, seed=)` and `GENERATOR_VERSION`.

    Raises:
        UserError: no such entry point (the package's metadata is missing or stale).
    """
    found = entry_points(group=COHORT_GROUP, name=name)
    if not found:
        raise UserError(f"no cohort generator named {name!r} in the entry-point group {COHORT_GROUP!r} "
                        f"(pyproject.toml); reinstall the package (`pip install -e .` or `make setup`) "
                        f"or pass --data DIR")
    return next(iter(found)).load()


def ensure_default_cohort(n_subjects: int = DEFAULT_SUBJECTS, seed: int = DEFAULT_SEED, site: str = "a") -> Path:
    """Return the default cohort folder, generating it on first use.

    A file lock makes concurrent first runs wait for one generator instead of racing.

    Args:
        n_subjects: cohort size.
        seed: generator seed.
        site: "a" (the default cohort) or "b" (the second synthetic site, for external validation).

    Returns:
        The cohort folder.
    """
    gen = cohort_generator()
    out = default_cohort_dir(gen.GENERATOR_VERSION, n_subjects, seed, site)
    if (out / "metadata" / "subject_splits.parquet").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "metadata" / "subject_splits.parquet").exists():
            Console(stderr=True, highlight=False).print(
                f"generating the synthetic cohort ({n_subjects} subjects, seed {seed}, site {site}) into {out} ...",
                markup=False)
            gen.generate(out, n_subjects=n_subjects, seed=seed, **({} if site == "a" else {"site": site}))
    return out
