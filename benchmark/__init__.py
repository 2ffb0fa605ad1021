"""MEHR-Bench core: CLI, Python API, task specs, MEDS data access, leakage guard, metrics, runner,
typed result records.

Python API (the CLI's `run` is a thin layer over it)::

    import benchmark
    records = benchmark.evaluate("catboost,mehrt", "oncology/mortality_1y", data="cohort/", budget="smoke")
    records[0].metrics["auroc"].value
    rec = benchmark.evaluate_predictions("oncology/mortality_1y", "preds/", "my-model", data="cohort/")

Importing this package is cheap: it never imports torch (models that need it import it lazily),
and `evaluate` / `ResultRecord` / `read_records` load the runner and pydantic only when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from benchmark.errors import UserError  # noqa: E402,F401

if TYPE_CHECKING:
    from benchmark.records import ResultRecord
    from benchmark.results import read_records
    from benchmark.external_predictions import evaluate_predictions
    from benchmark.model_check import check_model
    from benchmark.runner import evaluate

__all__ = ["ResultRecord", "UserError", "__version__", "check_model", "evaluate", "evaluate_predictions",
           "read_records"]

# name -> module that defines it, imported on first attribute access (PEP 562)
_LAZY = {"evaluate": "benchmark.runner", "evaluate_predictions": "benchmark.external_predictions",
         "ResultRecord": "benchmark.records", "read_records": "benchmark.results",
         "check_model": "benchmark.model_check"}


def __getattr__(name: str) -> Any:
    """Load the API's heavier parts on first use, so `import benchmark` stays light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'benchmark' has no attribute {name!r}")
