"""`prepare eicu`: raw eICU-CRD 2.0 CSVs -> a MEHR-Bench cohort through the community ETL eICU_MEDS.

Steps (as `prepare mimic-iv`, data_prep/mimic_iv.py): check the raw layout and --out; build (once)
the venv of PyPI `eicu-meds` (data_prep.etl); run `MEDS_extract-eICU` (MEDS-Extract 0.7, meds 0.4)
into a temp folder; keep its data/ and metadata/; keep its splits when usable, else seeded 70/15/15;
stamp metadata/dataset.json; run the integrity check; rename the temp folder to --out.

What eICU_MEDS 0.1.0 writes (configs/event_configs.yaml in its package):
- subject_id = patienthealthsystemstayid: one hospital stay, not one patient (eICU has no stable
  patient identity across hospitals); times are pseudo-times: the hospital discharge is put on
  12-31 of hospitaldischargeyear, every other time is an offset (minutes) from the unit admission.
- `GENDER//<gender>`, `RACE//<ethnicity>` (null time), `MEDS_BIRTH` from age ("> 89" -> 90);
  `HOSPITAL_ADMISSION//...`, `HOSPITAL_DISCHARGE//<status>//<location>`,
  `ICU_ADMISSION//<source>//<stay type>`, `ICU_DISCHARGE//<status>//<location>`;
  `MEDS_DEATH` at the hospital discharge when hospitaldischargestatus is Expired.
- `LAB//RESULT//<labname>//<unit>` (unit in the code), `VITALS//PERIODIC//TEMPERATURE` (degC, no
  unit), `MEDICATION//STARTED//<drugname>`, `DIAGNOSIS//<diagnosisstring>` whose ICD-9/ICD-10 codes
  are parent codes (`ICD9CM/...`, `ICD10CM/...`) in metadata/codes.parquet.
- It reads the 15 tables below, never nurseCharting (so no charted temperature in F).
Its console script cannot run serially here (see data_prep/eicu_driver.py), so the driver runs the
same two steps with one worker.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path


from benchmark.data.integrity import Finding
from benchmark.errors import UserError
from data_prep.etl import ensure_venv, etl_cache_root, run_in_venv
from data_prep.prepared import assemble, build_and_publish, check_out, stamp_dataset_json, write_splits

PACKAGE = "eicu-meds"
VERSION = "0.1.0"
ETL_NAME = "eICU_MEDS"
DATASET_NAME = "eICU-CRD"
# every table the ETL's event config reads (the demo's lowercase infusiondrug is accepted too)
REQUIRED_TABLES = ("patient", "hospital", "admissionDx", "allergy", "carePlanGeneral", "carePlanEOL",
                   "carePlanGoal", "carePlanInfectiousDisease", "diagnosis", "infusionDrug", "lab", "medication",
                   "treatment", "vitalAperiodic", "vitalPeriodic")
DRIVER = Path(__file__).with_name("eicu_driver.py")


@dataclass
class EicuSummary:
    """What `prepare eicu` did, for the CLI to print."""
    out: Path
    etl_version: str
    n_subjects: int
    n_events: int
    split_counts: dict[str, int]
    splits_from_etl: bool
    venv_s: float
    etl_s: float
    findings: list[Finding] = field(default_factory=list)
    etl_name: str = ETL_NAME


def check_raw(raw: Path) -> None:
    """Refuse a --raw folder that is missing or lacks one of the tables the ETL reads.

    Raises:
        UserError: naming the first missing table file.
    """
    if not raw.is_dir():
        raise UserError("folder not found", file=raw, field="--raw",
                        fix="pass the eICU-CRD folder as PhysioNet ships it (patient.csv.gz, lab.csv.gz, ...)")
    for table in REQUIRED_TABLES:
        names = {f"{table}.csv.gz", f"{table.lower()}.csv.gz"}
        if any((raw / n).is_file() for n in names):
            continue
        plain = raw / f"{table}.csv"
        fix = (f"gzip it (`gzip {plain}`): the ETL reads .csv.gz only" if plain.is_file() else
               "pass the eICU-CRD 2.0 (or demo 2.0.1) root folder with all its tables")
        raise UserError(f"not an eICU-CRD folder: {table}.csv.gz is missing", file=raw / f"{table}.csv.gz",
                        field="--raw", fix=fix)


def run_etl(raw: Path, work: Path, *, log=print) -> tuple[Path, float, float]:
    """Build the venv (once) and run eICU_MEDS (pre-MEDS + pipeline, data_prep/eicu_driver.py) under work/.

    Returns:
        (ETL output folder, venv seconds, ETL seconds).
    """
    t0 = time.perf_counter()
    venv = ensure_venv(PACKAGE, VERSION, log=log)
    t1 = time.perf_counter()
    logs = etl_cache_root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / f"{PACKAGE}-{VERSION}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    log(f"running eICU_MEDS {VERSION} (log: {log_file})")
    work.mkdir(parents=True, exist_ok=True)
    etl_out = work / "MEDS_output"
    run_in_venv(venv, ["python", str(DRIVER), str(raw.resolve()), str(work), str(etl_out)], log_file,
                what=f"eICU_MEDS {VERSION}",
                fix="read the log; check --raw is an unmodified eICU-CRD release")
    return etl_out, t1 - t0, time.perf_counter() - t1


def prepare_eicu(raw: str | Path, out: str | Path, *, seed: int = 0, log=print) -> EicuSummary:
    """Raw eICU-CRD -> a validated MEHR-Bench cohort at out.

    Args:
        raw: the eICU-CRD folder (<table>.csv.gz).
        out: a new (or empty) folder.
        seed: seed of the 70/15/15 splits, used only when the ETL wrote none usable.
        log: called with progress lines.

    Returns:
        An EicuSummary (integrity findings included).

    Raises:
        UserError: bad --raw / --out, a venv that cannot be built, a failed ETL, or a cohort that
            fails the integrity check; out is left untouched.
    """
    raw, out = Path(raw).expanduser(), Path(out).expanduser()
    check_raw(raw)
    check_out(out)
    done: dict = {}

    def build(tmp: Path) -> Path:
        etl_out, done["venv_s"], done["etl_s"] = run_etl(raw, tmp / "work", log=log)
        cohort = tmp / "cohort"
        assemble(etl_out, cohort)
        done["kept"], done["counts"] = write_splits(cohort, seed)
        stamp_dataset_json(cohort, DATASET_NAME, ETL_NAME, VERSION)
        return cohort

    findings, n_events = build_and_publish(out, build, field="--raw",
                                           fix="check --raw is an unmodified eICU-CRD release and report it")
    counts, kept, venv_s, etl_s = done["counts"], done["kept"], done["venv_s"], done["etl_s"]
    return EicuSummary(out=out, etl_version=VERSION, n_subjects=sum(counts.values()), n_events=n_events,
                       split_counts=counts, splits_from_etl=kept, venv_s=venv_s, etl_s=etl_s, findings=findings)
