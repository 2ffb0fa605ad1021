"""The embedded default cohort: the synthetic cohort, generated once (deterministically) into the cache."""

from __future__ import annotations

import fcntl
from pathlib import Path

from benchmark.paths import DEFAULT_SEED, DEFAULT_SUBJECTS, default_cohort_dir


def ensure_default_cohort(n_subjects: int = DEFAULT_SUBJECTS, seed: int = DEFAULT_SEED) -> Path:
    """Return the default cohort folder, generating it on first use.

    A file lock makes concurrent first runs wait for one generator instead of racing.
    """
    out = default_cohort_dir(n_subjects, seed)
    if (out / "metadata" / "subject_splits.parquet").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "metadata" / "subject_splits.parquet").exists():
            from rich.console import Console
            from data_prep.synthetic import generate
            Console(stderr=True, highlight=False).print(
                f"generating the default synthetic cohort ({n_subjects} subjects, seed {seed}) into {out} ...",
                markup=False)
            generate(out, n_subjects=n_subjects, seed=seed)
    return out
