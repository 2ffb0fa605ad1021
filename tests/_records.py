"""Valid result records for tests: `record(**overrides)` gives the JSON dict of a ResultRecord that
the benchmark's reader accepts, so fixtures state only what they are about.

Nested blocks (provenance, compute, model_info, dataset) are merged with the defaults, so
`record(provenance={"data_fingerprint": "ab"})` keeps the other provenance fields. `schema_version=1`
gives the version-1 layout (no `dataset`: the reader derives it from provenance).
"""

from __future__ import annotations

from typing import Any

from benchmark.records import SCHEMA_VERSION, ResultRecord

_NESTED = ("provenance", "compute", "model_info", "dataset")

DEFAULTS: dict[str, Any] = {
    "schema_version": SCHEMA_VERSION, "model": "m", "task": "demo/mortality", "task_version": 1,
    "task_kind": "binary", "seed": 0, "budget": "default", "main_metric": "auroc", "status": "ok",
    "n_train": 500, "n_tuning": 100, "n_test": 200, "n_events": 50,
    "dataset": {"name": "cohort", "fingerprint": "0" * 16},
    "provenance": {"package_version": "0.1.0", "git_sha": None, "task_hash": "t" * 16,
                   "data_fingerprint": "0" * 16, "lockfile_hash": None, "hardware": {},
                   "cohort": "/data/cohort"},
    "model_info": {"kind": "baseline", "modalities": ["structured"], "reference": "none"},
    "compute": {"wall_s": 1.0, "peak_rss_mb": 10.0, "device": "cpu", "n_parameters": None},
}


def record(**overrides: Any) -> dict[str, Any]:
    """The JSON dict of a valid result record.

    Args:
        **overrides: top-level fields; a dict for a nested block is merged into its defaults.
            A v2 record's dataset fingerprint follows provenance.data_fingerprint unless given.

    Returns:
        The dict (validated: a fixture that is not a valid record fails here, not in the code under test).
    """
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in DEFAULTS.items()}
    for k, v in overrides.items():
        out[k] = {**out[k], **v} if k in _NESTED and isinstance(v, dict) else v
    if "dataset" not in overrides or "fingerprint" not in overrides["dataset"]:
        out["dataset"]["fingerprint"] = out["provenance"]["data_fingerprint"]
    if out["schema_version"] == 1:
        del out["dataset"]
    ResultRecord.from_json_dict(out)
    return out
