"""MEHR-Bench core: CLI, task specs, MEDS data access, leakage guard, metrics, runner, results.

Importing this package is cheap: it never imports torch (models that need it import it lazily).
"""

__version__ = "0.1.0"

from benchmark.errors import UserError  # noqa: E402,F401
