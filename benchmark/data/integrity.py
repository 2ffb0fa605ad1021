"""Cohort integrity: the checks `validate` and `run` share (one function, two callers).

`integrity_findings(root)` returns every integrity finding (errors and warnings) of a cohort folder,
each family of checks in its own module (findings.py: Finding, Collector; shard_checks.py;
split_checks.py; sidecar_checks.py):

- data shards: readable parquet; the required MEDS columns (REQUIRED_COLUMNS) in every shard with
  the right types (never read as nulls when absent); times parseable; no null subject or code;
  codes valid UTF-8; sorted; each subject in one shard; NaN/inf numeric values (a warning: they
  are read as null, "no value", so they never reach a model);
- subject splits: readable, both columns present, each subject listed once and in one split, every
  subject with data has a split, a `train` and a `held_out` split exist;
- modality sidecars: readable parquet, required columns, embeddings of one size without NaN/inf,
  image paths relative and inside the cohort folder (and present);
- null-time rows: a row with a null time is a static fact only when its code never occurs with a
  time and no task uses it as an index, outcome or censoring event (`nonstatic_null_codes`); other
  null-time rows are reported (a warning) and the cohort reader drops them from model inputs;
- the predicate map loads.

`validate` prints all findings and adds slower, advisory checks (code metadata, events after death,
date-only times, predicates matching nothing). `run` calls `require_integrity(cohort)` before any
label extraction: any error refuses the cohort with the same messages (UserError, exit 2); a
passed check is cached by the cohort fingerprint so repeated runs do not re-scan.
"""

from __future__ import annotations

import contextlib

import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

from benchmark.data.cohort import Cohort
from benchmark.data.findings import Collector, Finding
from benchmark.data.shard_checks import check_null_time, check_shards
from benchmark.data.sidecar_checks import check_modalities
from benchmark.data.split_checks import check_splits
from benchmark.errors import UserError
from benchmark.paths import cache_dir, tasks_dir
from benchmark.artifacts import atomic_write
from benchmark.predicate_maps import load_predicate_map

CHECK_VERSION = "1"


def check_predicate_map(c: Collector, pf: Path) -> None:
    if pf.exists():
        try:
            load_predicate_map(pf)
        except UserError as e:
            c.error(pf, e.field, e.message, e.fix or "")


# ---------------------------------------------------------------------------- the shared check
def integrity_findings(root: str | Path, predicates_file: str | Path | None = None) -> list[Finding]:
    """Every integrity check on a cohort folder (the checks `run` requires to pass).

    Args:
        root: the cohort folder.
        predicates_file: overrides <root>/predicates.yaml.

    Returns:
        The findings (errors and warnings), in check order.
    """
    root = Path(root)
    c = Collector(root)
    if not root.is_dir():
        c.error(root, None, "cohort folder not found", "pass the folder that holds data/ and metadata/")
        return c.findings
    pf = Path(predicates_file) if predicates_file else root / "predicates.yaml"
    good, subjects = check_shards(c, root)
    check_splits(c, root, subjects)
    check_modalities(c, root)
    check_predicate_map(c, pf)
    if good and not c.errors():
        check_null_time(c, root, good, pf)
    return c.findings


def _tasks_digest() -> str:
    """Hash of the task files (the null-time rule depends on which predicates tasks use)."""
    h = hashlib.sha256()
    root = tasks_dir()
    for p in sorted(Path(root).rglob("*.yaml")) if Path(root).is_dir() else []:
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _cache_file(cohort: Cohort) -> Path:
    key = hashlib.sha256("|".join([CHECK_VERSION, str(cohort.root.resolve()), cohort.fingerprint(),
                                   _tasks_digest()]).encode()).hexdigest()[:20]
    return cache_dir() / "integrity" / f"{key}.json"


def require_integrity(cohort: Cohort, *, use_cache: bool = True) -> list[Finding]:
    """`run`'s gate: refuse a cohort that fails any integrity check, before any label or cell.

    Prints (plain text on stderr, once per call) how many null-time rows are dropped from model inputs.
    A passed check is cached under the cache folder, keyed by the cohort fingerprint and the task files.

    Args:
        cohort: the cohort to run on.
        use_cache: read / write the cached verdict.

    Returns:
        The warnings (the check passed).

    Raises:
        UserError: the first error, naming the file, the field and the fix (with the error count).
    """
    cohort.data_files()  # a clear error for a folder without shards
    cache = _cache_file(cohort)
    findings = None
    if use_cache:
        try:
            findings = [Finding(**d) for d in json.loads(cache.read_text())["warnings"]]
        except (OSError, ValueError, KeyError, TypeError):
            findings = None
    if findings is None:
        findings = integrity_findings(cohort.root, cohort.predicates_file)
        errors = [f for f in findings if f.level == "error"]
        if errors:
            e = errors[0]
            more = f" ({len(errors) - 1} more error(s): run `python -m benchmark validate --data {cohort.root}`)" \
                if len(errors) > 1 else ""
            raise UserError(e.message + more, file=cohort.root / e.file, field=e.field, fix=e.fix)
        if use_cache:
            with contextlib.suppress(OSError):   # a cache that cannot be written is skipped
                atomic_write(cache, json.dumps({"warnings": [asdict(f) for f in findings]}))
    for f in findings:
        if f.field == "time" and "null time" in f.message:
            print(f"warning: {cohort.root / f.file}: {f.message}", file=sys.stderr)
    return findings
