"""`prepare mimic-iv`: raw MIMIC-IV CSVs -> a MEHR-Bench cohort through the community ETL.

Steps: check the raw layout and --out; build (once) the venv of MIMIC_IV_MEDS at the chosen version
(data_prep.etl); run it into a temp folder next to --out; keep its data/ and metadata/; keep its
train/tuning/held_out splits or write subject-level 70/15/15 ones; stamp metadata/dataset.json
(dataset_name / etl_name / etl_version); run MEHR-Bench's integrity check; then rename the temp
folder to --out. Any failure removes the temp folder, so --out is either complete or untouched.

Two generations of the ETL are supported (both tested on the MIMIC-IV demo 2.2):
- 0.2.x: `meds-extract-run spec=MIMIC-IV do_download=false input_dir=RAW output_dir=OUT`.
- 0.1.x: `MEDS_extract-MIMIC_IV`'s two steps through data_prep/mimic_iv_driver_01x.py, because
  0.1.x stops on a table with no rows (the demo's header-only icu/chartevents) and offers no flag
  to skip it; the driver drops such tables from the event config and changes nothing else.
"""

from __future__ import annotations

import gzip
import os
import time
from dataclasses import dataclass, field
from pathlib import Path


from benchmark.data.integrity import Finding
from benchmark.errors import UserError
from data_prep.etl import ensure_venv, etl_cache_root, run_in_venv
from data_prep.prepared import assemble, build_and_publish, check_out, stamp_dataset_json, write_splits

PACKAGE = "mimic-iv-meds"
ETL_NAME = "MIMIC_IV_MEDS"
DATASET_NAME = "MIMIC-IV"
SUPPORTED_VERSIONS = ("0.2.0", "0.1.3")  # each one run on the demo by tests/test_prepare_mimic.py
DEFAULT_VERSION = SUPPORTED_VERSIONS[0]  # the newest that works on the demo
# The files MIMIC-IV's ETLs cannot run without (either .csv.gz as PhysioNet ships them, or .csv).
REQUIRED_TABLES = ("hosp/patients", "hosp/admissions", "hosp/diagnoses_icd", "hosp/labevents",
                   "icu/icustays")
DRIVER_01X = Path(__file__).with_name("mimic_iv_driver_01x.py")


@dataclass
class PrepareSummary:
    """What `prepare mimic-iv` did, for the CLI to print."""
    out: Path
    etl_version: str
    n_subjects: int
    n_events: int
    split_counts: dict[str, int]
    splits_from_etl: bool
    skipped_tables: list[str]
    venv_s: float
    etl_s: float
    findings: list[Finding] = field(default_factory=list)


# ---------------------------------------------------------------------------- input checks
def find_table(raw: Path, table: str) -> Path | None:
    """The file of one raw table (`hosp/patients` -> hosp/patients.csv.gz or .csv), or None."""
    for ext in (".csv.gz", ".csv"):
        if (raw / f"{table}{ext}").is_file():
            return raw / f"{table}{ext}"
    return None


def check_raw(raw: Path) -> None:
    """Refuse a --raw folder that is missing or not in the MIMIC-IV layout (hosp/, icu/ tables).

    Raises:
        UserError: naming the first missing file.
    """
    if not raw.is_dir():
        raise UserError("folder not found", file=raw, field="--raw",
                        fix="pass the folder that holds MIMIC-IV's hosp/ and icu/ folders")
    for table in REQUIRED_TABLES:
        if find_table(raw, table) is None:
            raise UserError(f"not a MIMIC-IV folder: {table}.csv.gz is missing", file=raw / f"{table}.csv.gz",
                            field="--raw", fix="pass the MIMIC-IV root as PhysioNet ships it (hosp/*.csv.gz, "
                                               "icu/*.csv.gz), e.g. .../mimic-iv-2.2 or the demo folder")


def check_version(version: str) -> None:
    """Refuse an ETL version MEHR-Bench has no driver for (neither 0.1.x nor 0.2.x)."""
    if not (version.startswith("0.1.") or version.startswith("0.2.")):
        raise UserError(f"MIMIC_IV_MEDS {version} is not supported", field="--etl-version",
                        fix=f"use one of {', '.join(SUPPORTED_VERSIONS)} (tested) or another 0.1.x / 0.2.x")


def empty_tables(raw: Path) -> list[str]:
    """Raw tables with a header and no rows (the demo's icu/chartevents placeholder).

    Returns:
        Table prefixes such as `icu/chartevents`, sorted.
    """
    empty = []
    for f in sorted(raw.glob("*/*.csv*")):
        opener = gzip.open if f.name.endswith(".gz") else open
        with opener(f, "rt", errors="replace") as fh:
            lines = [ln for ln in (fh.readline(), fh.readline()) if ln.strip()]
        if len(lines) < 2:
            empty.append(f"{f.parent.name}/{f.name.split('.')[0]}")
    return empty


# ---------------------------------------------------------------------------- the ETL
def etl_command(version: str, raw: Path, work: Path, etl_out: Path, skip: list[str]) -> list[str]:
    """The command that runs MIMIC_IV_MEDS `version` (inside its venv).

    Args:
        version: 0.1.x or 0.2.x.
        raw: the raw MIMIC-IV folder.
        work: a scratch folder for intermediate files.
        etl_out: where the ETL writes data/ and metadata/.
        skip: empty tables (0.1.x needs them removed from its event config).

    Returns:
        argv; argv[0] is a script of the venv (or its python).
    """
    if version.startswith("0.1."):
        return ["python", str(DRIVER_01X), str(raw), str(work), str(etl_out), *skip]
    return ["meds-extract-run", "spec=MIMIC-IV", "do_download=false", f"input_dir={raw}", f"output_dir={etl_out}"]


def run_etl(version: str, raw: Path, work: Path, *, log=print) -> tuple[Path, list[str], float, float]:
    """Build the venv (once) and run the ETL into work/etl_out.

    Returns:
        (ETL output folder, skipped empty tables, venv seconds, ETL seconds).
    """
    t0 = time.perf_counter()
    venv = ensure_venv(PACKAGE, version, log=log)
    t1 = time.perf_counter()
    skip = empty_tables(raw)
    if skip:
        log(f"tables with no rows (no events from them): {', '.join(skip)}")
    etl_out = work / "etl_out"
    logs = etl_cache_root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / f"{PACKAGE}-{version}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    log(f"running MIMIC_IV_MEDS {version} (log: {log_file})")
    run_in_venv(venv, etl_command(version, raw.resolve(), work, etl_out, skip), log_file,
                what=f"MIMIC_IV_MEDS {version}",
                fix="read the log; check --raw is an unmodified MIMIC-IV release, or try another "
                    f"--etl-version ({', '.join(SUPPORTED_VERSIONS)})")
    for part in ("data", "metadata"):
        if not (etl_out / part).is_dir():
            raise UserError(f"the ETL finished but wrote no {part}/ folder", file=etl_out, field=part,
                            fix=f"read the log {log_file}; try another --etl-version")
    return etl_out, skip, t1 - t0, time.perf_counter() - t1


# ---------------------------------------------------------------------------- entry point
def prepare_mimic_iv(raw: str | Path, out: str | Path, *, etl_version: str | None = None, seed: int = 0,
                     log=print) -> PrepareSummary:
    """Raw MIMIC-IV -> a validated MEHR-Bench cohort at out.

    Args:
        raw: the MIMIC-IV folder (hosp/, icu/ and, optionally, the concept-map CSVs).
        out: a new (or empty) folder.
        etl_version: the MIMIC_IV_MEDS version (None: DEFAULT_VERSION).
        seed: seed of the 70/15/15 splits, used only when the ETL wrote none usable.
        log: called with progress lines.

    Returns:
        A PrepareSummary (integrity findings included).

    Raises:
        UserError: bad --raw / --out / --etl-version, a venv that cannot be built, a failed ETL, or
            a cohort that fails the integrity check; out is left untouched.
    """
    raw, out = Path(raw).expanduser(), Path(out).expanduser()
    etl_version = etl_version or DEFAULT_VERSION
    check_version(etl_version)
    check_raw(raw)
    check_out(out)
    done: dict = {}

    def build(tmp: Path) -> Path:
        etl_out, done["skipped"], done["venv_s"], done["etl_s"] = run_etl(etl_version, raw, tmp / "work", log=log)
        cohort = tmp / "cohort"
        assemble(etl_out, cohort)
        done["kept"], done["counts"] = write_splits(cohort, seed)
        stamp_dataset_json(cohort, DATASET_NAME, ETL_NAME, etl_version)
        return cohort

    findings, n_events = build_and_publish(
        out, build, field="--etl-version",
        fix=f"try another --etl-version ({', '.join(SUPPORTED_VERSIONS)}) and report it")
    counts = done["counts"]
    return PrepareSummary(out=out, etl_version=etl_version, n_subjects=sum(counts.values()), n_events=n_events,
                          split_counts=counts, splits_from_etl=done["kept"], skipped_tables=done["skipped"],
                          venv_s=done["venv_s"], etl_s=done["etl_s"], findings=findings)
