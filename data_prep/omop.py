"""`prepare omop`: an OMOP CDM 5.3 / 5.4 extract -> a MEHR-Bench cohort through meds_etl's converter.

Steps (as `prepare mimic-iv`, data_prep/mimic_iv.py): check the raw layout and --out; build (once)
the venv of PyPI `meds_etl` (data_prep.etl); run its `meds_etl_omop RAW OUT` into a temp folder;
keep its data/ and metadata/; write seeded subject-level 70/15/15 splits (meds_etl writes none);
fill metadata/codes.parquet from the OMOP concept table; stamp metadata/dataset.json; run the
integrity check; rename the temp folder to --out. --out is either complete or untouched.

What meds_etl 0.3.11 writes (read from its source, checked on tests/omop_eicu_fixtures.py):
- codes `<vocabulary_id>/<concept_code>` of the concept table: `LOINC/2160-0`, `ICD10CM/C34.90`
  (with the dot), `SNOMED/44054006`, `RxNorm/40048`, `Gender/F`, `Race/5`, `Ethnicity/Not Hispanic`,
  `Visit/IP`, `Visit/OMOP4822460` (visit_detail 32037 Intensive Care), and `MEDS_BIRTH`, `MEDS_DEATH`.
  A row's `*_source_concept_id` wins over its standard `*_concept_id` when non-zero, so conditions
  coded from ICD-10-CM keep their ICD code and others come as SNOMED: maps list both.
- person rows (birth, gender, race, ethnicity) at the birth time, not null-time static rows.
- a date without a time becomes 23:59:59 of that day (death_date too): no event precedes its day.
- visits: the visit code at the start, `discharged_to_concept_id` at the end (when non-zero); other
  end times (visit_detail, so ICU stays) only in the extra `end` column: no ICU discharge event.
- units: an extra `unit` column = unit_source_value, else `UCUM/<code>` of unit_concept_id; codes
  carry no unit.
- MEDS 0.3.3 (its `meds` pin): data/data_<k>.parquet, numeric_value float32, no subject_splits,
  an empty codes.parquet (it lists custom concepts > 2e9 only). MEHR-Bench reads that layout as it
  is (a flat data/ folder is valid MEDS); this step adds the splits and the code descriptions.
It leaves polars unpinned and uses APIs polars 2 removed, so its venv pins `polars<2`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from benchmark.data.integrity import Finding
from benchmark.errors import UserError
from data_prep.etl import ensure_venv, etl_cache_root, run_in_venv
from data_prep.prepared import assemble, build_and_publish, check_out, stamp_dataset_json, write_splits

PACKAGE = "meds-etl"
VERSION = "0.3.11"
CONSTRAINTS = ("polars>=1.22,<2",)  # meds_etl 0.3.11 calls pl.read_csv_batched (removed in polars 2)
ETL_NAME = "meds_etl.omop"           # what meds_etl writes as etl_name; the profile recognises it
# Tables without which meds_etl silently writes (almost) nothing: no person -> no subjects, no
# concept -> every code unmapped and dropped.
REQUIRED_TABLES = ("person", "concept")
EVENT_TABLES = ("visit_occurrence", "visit_detail", "condition_occurrence", "drug_exposure",
                "procedure_occurrence", "measurement", "observation", "death", "device_exposure", "note")
NUM_SHARDS = 100  # meds_etl's default; a subject never spans shards


@dataclass
class OmopSummary:
    """What `prepare omop` did, for the CLI to print."""
    out: Path
    etl_version: str
    n_subjects: int
    n_events: int
    split_counts: dict[str, int]
    tables: list[str]
    venv_s: float
    etl_s: float
    findings: list[Finding] = field(default_factory=list)
    etl_name: str = "meds_etl"


def table_files(raw: Path, table: str) -> list[Path]:
    """The files of one OMOP table: <table>.csv / .csv.gz / .parquet, or a <table>/ folder of them."""
    folder = raw / table
    if folder.is_dir():
        return sorted(p for p in folder.iterdir() if p.name.endswith((".csv", ".csv.gz", ".parquet")))
    return [raw / f"{table}{ext}" for ext in (".csv", ".csv.gz", ".parquet") if (raw / f"{table}{ext}").is_file()]


def check_raw(raw: Path) -> list[str]:
    """Refuse a --raw folder that is missing or has no person / concept table.

    Returns:
        The OMOP tables found (required and event tables), for the summary.

    Raises:
        UserError: naming the first missing table file.
    """
    if not raw.is_dir():
        raise UserError("folder not found", file=raw, field="--raw",
                        fix="pass the folder that holds the OMOP CDM tables (person.csv, concept.csv, ...)")
    for table in REQUIRED_TABLES:
        if not table_files(raw, table):
            raise UserError(f"not an OMOP CDM folder: the {table} table is missing", file=raw / f"{table}.csv",
                            field="--raw", fix=f"export the {table} table (with the vocabulary tables) as "
                                               f"{table}.csv, {table}.csv.gz, {table}.parquet or a {table}/ folder")
    return [t for t in (*REQUIRED_TABLES, *EVENT_TABLES) if table_files(raw, t)]


def run_etl(raw: Path, work: Path, *, log=print) -> tuple[Path, float, float]:
    """Build the venv (once) and run meds_etl_omop into work/etl_out.

    Returns:
        (ETL output folder, venv seconds, ETL seconds).
    """
    t0 = time.perf_counter()
    venv = ensure_venv(PACKAGE, VERSION, log=log, constraints=CONSTRAINTS)
    t1 = time.perf_counter()
    etl_out = work / "etl_out"
    logs = etl_cache_root() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_file = logs / f"{PACKAGE}-{VERSION}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    log(f"running meds_etl_omop {VERSION} (log: {log_file})")
    work.mkdir(parents=True, exist_ok=True)
    run_in_venv(venv, ["meds_etl_omop", str(raw.resolve()), str(etl_out), "--num_shards", str(NUM_SHARDS),
                       "--num_proc", "1"], log_file, what=f"meds_etl_omop {VERSION}",
                fix="read the log; check the tables follow the OMOP CDM 5.3/5.4 column names")
    if not (etl_out / "data").is_dir() or not any((etl_out / "data").glob("*.parquet")):
        raise UserError("the ETL finished but wrote no data", file=etl_out / "data", field="--raw",
                        fix=f"read the log {log_file}; check person and the event tables have rows whose "
                            "concept ids are in the concept table")
    return etl_out, t1 - t0, time.perf_counter() - t1


def _read_table(raw: Path, table: str, columns: list[str]) -> pl.DataFrame:
    """All rows of one OMOP table, the given columns as strings (names matched case-insensitively)."""
    parts = []
    for f in table_files(raw, table):
        df = pl.read_parquet(f) if f.name.endswith(".parquet") else pl.read_csv(f, infer_schema=False)
        df = df.rename({c: c.lower() for c in df.columns})
        parts.append(df.select(pl.col(c).cast(pl.String) for c in columns))
    return pl.concat(parts) if parts else pl.DataFrame(schema={c: pl.String for c in columns})


def write_codes(raw: Path, cohort: Path) -> int:
    """metadata/codes.parquet: every code of the data with its concept_name and, as parent codes, its
    OMOP ancestors (concept_ancestor, all levels) and the standard concepts it `Maps to` with their
    ancestors. Ancestors of every level (not only direct parents) let a `descendants_of` rule on
    SNOMED/372087000 or RxNorm/40048 find ICD-coded rows and clinical drugs in one hop, although
    the intermediate concepts are not rows of codes.parquet.

    Returns:
        The number of codes described.
    """
    concept = _read_table(raw, "concept", ["concept_id", "vocabulary_id", "concept_code", "concept_name"])
    concept = concept.select("concept_id", code=pl.col("vocabulary_id") + "/" + pl.col("concept_code"),
                             description=pl.col("concept_name")).unique("concept_id")
    rel = _read_table(raw, "concept_relationship", ["concept_id_1", "concept_id_2", "relationship_id"])
    maps = (rel.filter((pl.col("relationship_id") == "Maps to") & (pl.col("concept_id_1") != pl.col("concept_id_2")))
            .select(child="concept_id_1", parent="concept_id_2"))
    anc = (_read_table(raw, "concept_ancestor", ["descendant_concept_id", "ancestor_concept_id"])
           .filter(pl.col("descendant_concept_id") != pl.col("ancestor_concept_id"))
           .select(child="descendant_concept_id", parent="ancestor_concept_id"))
    via_maps = maps.join(anc.rename({"child": "parent", "parent": "grand"}), on="parent").select(
        "child", parent="grand")
    edges = pl.concat([maps, anc, via_maps]).unique()
    parents = (edges.join(concept.select(child="concept_id", code="code"), on="child")
               .join(concept.select(parent="concept_id", parent_code="code"), on="parent")
               .group_by("code").agg(pl.col("parent_code").unique().sort().alias("parent_codes")))
    used = pl.scan_parquet(sorted((cohort / "data").rglob("*.parquet"))).select("code").unique().collect()
    codes = (used.join(concept.select("code", "description").unique("code"), on="code", how="left")
             .join(parents, on="code", how="left")
             .with_columns(pl.col("parent_codes").fill_null(pl.lit([], dtype=pl.List(pl.String))))
             .sort("code"))
    codes.select("code", "description", "parent_codes").write_parquet(cohort / "metadata" / "codes.parquet")
    return codes.height


def omop_dataset_name(cohort: Path) -> str:
    """`OMOP`, or `OMOP: <source>` with the CDM source name meds_etl read from cdm_source (the omop
    profile recognises the `OMOP` prefix and etl_name meds_etl.omop)."""
    p = cohort / "metadata" / "dataset.json"
    source = (json.loads(p.read_text()).get("dataset_name") or "") if p.is_file() else ""
    return source if source.startswith("OMOP") else "OMOP" + (f": {source}" if source else "")


def prepare_omop(raw: str | Path, out: str | Path, *, seed: int = 0, log=print) -> OmopSummary:
    """An OMOP CDM extract -> a validated MEHR-Bench cohort at out.

    Args:
        raw: the folder of OMOP tables (csv, csv.gz, parquet, or one folder per table).
        out: a new (or empty) folder.
        seed: seed of the subject-level 70/15/15 splits.
        log: called with progress lines.

    Returns:
        An OmopSummary (integrity findings included).

    Raises:
        UserError: bad --raw / --out, a venv that cannot be built, a failed ETL, or a cohort that
            fails the integrity check; out is left untouched.
    """
    raw, out = Path(raw).expanduser(), Path(out).expanduser()
    tables = check_raw(raw)
    check_out(out)
    done: dict = {}

    def build(tmp: Path) -> Path:
        etl_out, done["venv_s"], done["etl_s"] = run_etl(raw, tmp / "work", log=log)
        cohort = tmp / "cohort"
        assemble(etl_out, cohort)
        _, done["counts"] = write_splits(cohort, seed)
        write_codes(raw, cohort)
        stamp_dataset_json(cohort, omop_dataset_name(cohort), ETL_NAME, VERSION)
        return cohort

    findings, n_events = build_and_publish(out, build, field="--raw",
                                           fix="check the OMOP tables (person ids, dates) and report it")
    counts, venv_s, etl_s = done["counts"], done["venv_s"], done["etl_s"]
    return OmopSummary(out=out, etl_version=VERSION, n_subjects=sum(counts.values()), n_events=n_events,
                       split_counts=counts, tables=tables, venv_s=venv_s, etl_s=etl_s, findings=findings)
