"""Shared real-data fixtures: MEDS built from the raw MIMIC-IV demo 2.2 with each tested ETL version.

Registered in tests/conftest.py (``pytest_plugins``). `mimic_meds_020` / `mimic_meds_013` give a
MEDS cohort folder that tests must treat as READ-ONLY (copy it before changing anything), or skip
with the reason:

1. ``$MEHR_BENCH_MIMIC_MEDS`` names a folder with ``0.2.0/`` and ``0.1.3/`` MEDS builds: used as is;
2. else the MEDS is built once with `data_prep.mimic_iv.prepare_mimic_iv` from
   ``../shared/data/mimic-iv-demo-2.2`` (next to the repository) into
   ``$MEHR_BENCH_CACHE/mimic_meds/<version>`` (default: the pytest cache folder), under a file lock;
3. skipped when the raw demo is absent (a user's clone has no shared/ folder) or the ETL's venv
   cannot be built (offline).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RAW_DEMO = REPO.parent / "shared" / "data" / "mimic-iv-demo-2.2"
ENV = "MEHR_BENCH_MIMIC_MEDS"


def _cache_root(config) -> Path:
    if os.environ.get("MEHR_BENCH_CACHE") or getattr(config, "cache", None) is None:  # -p no:cacheprovider
        from benchmark.paths import cache_dir
        return cache_dir() / "mimic_meds"
    return Path(config.cache.mkdir("mimic_meds"))


def mimic_meds(version: str, config) -> Path:
    """The MEDS folder of the demo built with MIMIC_IV_MEDS `version` (see the module docstring)."""
    given = os.environ.get(ENV)
    if given:
        folder = Path(given) / version
        if not (folder / "metadata" / "dataset.json").is_file():
            pytest.skip(f"{ENV}={given} has no {version}/ MEDS build (expected {folder}/metadata/dataset.json)")
        return folder
    if not RAW_DEMO.is_dir():
        pytest.skip(f"the raw MIMIC-IV demo is not at {RAW_DEMO} (a user's clone has no shared/ folder); "
                    f"set {ENV} to a folder with 0.2.0/ and 0.1.3/ MEDS builds to run these tests")
    from filelock import FileLock

    from benchmark.errors import UserError
    from data_prep.mimic_iv import prepare_mimic_iv

    root = _cache_root(config)
    root.mkdir(parents=True, exist_ok=True)
    folder = root / version
    with FileLock(str(root / f"{version}.lock")):
        if not (folder / "metadata" / "dataset.json").is_file():
            try:
                prepare_mimic_iv(RAW_DEMO, folder, etl_version=version, log=lambda line: None)
            except UserError as e:
                pytest.skip(f"MEDS from the MIMIC-IV demo with MIMIC_IV_MEDS {version} cannot be built here "
                            f"(offline, no venv?): {e.render()[:300]}")
    return folder


@pytest.fixture(scope="session")
def mimic_meds_020(request) -> Path:
    """READ-ONLY MEDS of the MIMIC-IV demo, MIMIC_IV_MEDS 0.2.0 (RACE// codes)."""
    return mimic_meds("0.2.0", request.config)


@pytest.fixture(scope="session")
def mimic_meds_013(request) -> Path:
    """READ-ONLY MEDS of the MIMIC-IV demo, MIMIC_IV_MEDS 0.1.3 (race as a column)."""
    return mimic_meds("0.1.3", request.config)
