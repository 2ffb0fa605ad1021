"""Shared fixtures: the embedded default cohort (generated once per cache) and a small cohort."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.data.cohort import Cohort

pytest_plugins = ["tests.conftest_mimic"]  # mimic_meds_020 / mimic_meds_013 (real MIMIC-IV demo MEDS)

# Tests that build a community ETL's venv or run it (real MIMIC-IV demo, OMOP / eICU fixtures) take
# minutes on a fresh machine: they are `slow`, run by `make test-slow` (CI's second step), not `make test`.
ETL_FIXTURES = {"mimic_meds_020", "mimic_meds_013", "mimic", "mimic_meds", "omop_cohort", "eicu_cohort"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if ETL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def default_cohort() -> Cohort:
    """The embedded default synthetic cohort (5000 subjects, seed 0), as `run` uses it."""
    from benchmark.default_cohort import ensure_default_cohort
    return Cohort(ensure_default_cohort())


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory) -> Cohort:
    """A 600-subject synthetic cohort without images, for fast end-to-end tests."""
    from data_prep.synthetic import generate
    root = tmp_path_factory.mktemp("small") / "cohort"
    generate(root, n_subjects=600, seed=1, images=False)
    return Cohort(root)


@pytest.fixture
def torch_one_thread():
    """Two shared cores: torch on one thread for the test, restored afterwards (torch imported lazily,
    so test modules that do not use torch do not load it)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A private MEHR_BENCH_CACHE folder for one test (labels, features, integrity verdicts, locks)."""
    d = tmp_path / "cache"
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(d))
    return d


@pytest.fixture
def with_models(monkeypatch):
    """Register extra model specs for the runner (name -> spec), as an entry point would."""
    from benchmark import registry
    extra: dict = {}
    real = registry.get_model
    monkeypatch.setattr("benchmark.runner.get_model", lambda n: extra[n] if n in extra else real(n))
    return extra


@pytest.fixture(scope="session")
def lr_binary_survival_run(tmp_path_factory) -> dict:
    """logistic_regression (smoke budget) run on a binary and a survival task of a 2000-subject cohort,
    shared by the prediction-file tests (tests/test_meds_evaluation.py, tests/test_evaluate_external.py).

    Returns:
        {"base": the folder, "cohort": the Cohort, "results": the run's results folder,
         "recs": task name -> ResultRecord}; the run's cache is base/"cache".
    """
    import os

    from data_prep.synthetic import generate
    from benchmark import runner

    base = tmp_path_factory.mktemp("lr_binary_survival")
    old = os.environ.get("MEHR_BENCH_CACHE")
    os.environ["MEHR_BENCH_CACHE"] = str(base / "cache")
    try:
        cohort = Cohort(generate(base / "cohort", n_subjects=2000, seed=3, images=False))
        recs = runner.evaluate("logistic_regression", "oncology/mortality_1y,survival/mace", data=cohort,
                               results=base / "run", budget="smoke")
    finally:
        os.environ.pop("MEHR_BENCH_CACHE") if old is None else os.environ.__setitem__("MEHR_BENCH_CACHE", old)
    assert [r.status for r in recs] == ["ok", "ok"]
    return {"base": base, "cohort": cohort, "results": base / "run", "recs": {r.task: r for r in recs}}
