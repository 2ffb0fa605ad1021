"""A cohort directory: MEDS data shards + metadata + multimodal sidecar, read lazily with polars.

Layout (DESIGN.md)::

    <cohort>/data/<split>/<shard>.parquet      subject_id, time, code, numeric_value, text_value
    <cohort>/metadata/codes.parquet            code, description, parent_codes
    <cohort>/metadata/subject_splits.parquet   subject_id, split
    <cohort>/metadata/dataset.json
    <cohort>/modalities/<name>.parquet         subject_id, time, embedding | path, item columns
    <cohort>/predicates.yaml                   predicate name -> code rule (optional)

How to read the dataset (predicate map, demographics, code hierarchy, note codes) comes from its
dataset profile (benchmark.data.profiles): `--dataset NAME`, or the profile that recognises
metadata/dataset.json. Without a profile the cohort must carry its own predicates.yaml, and
demographics are read from the static codes GENDER/, RACE/, ETHNICITY/ and MEDS_BIRTH.

Nothing here loads the whole dataset into memory: `scan()` returns a LazyFrame over all shards.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.artifacts import cached_artifact
from benchmark.data.findings import Collector, read_footer
from benchmark.data.leakage import drop_nonstatic_nulls
from benchmark.data.profiles import (DEFAULT_DEMOGRAPHICS, DEFAULT_TRUNCATE, DatasetProfile, available_profiles,
                                     read_dataset_json, read_demographics, resolve_profile)
from benchmark.data.shard_checks import check_shard_footer, nonstatic_null_codes, scan_shards
from benchmark.data.sidecar_checks import inside_root
from benchmark.errors import UserError

CORE_COLUMNS = ("subject_id", "time", "code", "numeric_value", "text_value")


class Cohort:
    """Lazy access to a cohort directory.

    Args:
        root: the cohort folder.
        predicates_file: overrides <root>/predicates.yaml and the profile's map (``--predicates``).
        dataset: a dataset profile name or folder (``--dataset``); None = recognised from dataset.json.
    """

    def __init__(self, root: str | Path, predicates_file: str | Path | None = None,
                 dataset: str | Path | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError("cohort folder not found", file=self.root, field="--data",
                            fix="pass a MEDS cohort folder, or create one with "
                                "`python -m benchmark prepare synthetic --out DIR`")
        self._explicit_predicates = Path(predicates_file) if predicates_file else None
        self.dataset = dataset
        if dataset is not None:
            _ = self.profile  # an unknown --dataset fails here, before any work

    @cached_property
    def profile(self) -> DatasetProfile | None:
        """The cohort's dataset profile (``--dataset`` or recognised from dataset.json), or None."""
        return resolve_profile(self.root, self.dataset)

    @cached_property
    def predicates_file(self) -> Path:
        """The predicate map in use: ``--predicates`` > <root>/predicates.yaml > the profile's map for
        this dataset.json. When there is none, <root>/predicates.yaml (which does not exist)."""
        own = self.root / "predicates.yaml"
        if self._explicit_predicates is not None:
            return self._explicit_predicates
        if own.exists() or self.profile is None:
            return own
        return self.profile.predicates_file(read_dataset_json(self.root)) or own

    @property
    def code_truncation(self) -> dict[str, int]:
        """Code prefix -> characters of the category kept after it (ICD truncation; the profile's
        hierarchy.truncate, else ICD10CM/ and ICD10PCS/ to 3 as before profiles)."""
        return dict(self.profile.hierarchy.truncate) if self.profile else dict(DEFAULT_TRUNCATE)

    @property
    def note_codes(self) -> tuple[str, ...] | None:
        """The MEDS codes whose text_value is a note (the profile's ``notes``), or None when unknown."""
        notes = self.profile.notes if self.profile else {}
        return tuple(notes.values()) or None

    def __repr__(self) -> str:
        return f"Cohort({str(self.root)!r})"

    # ------------------------------------------------------------------ files
    def data_files(self) -> list[Path]:
        """All data shards (data/**/*.parquet), sorted."""
        files = sorted((self.root / "data").rglob("*.parquet"))
        if not files:
            raise UserError("no data shards found", file=self.root / "data",
                            fix="a MEDS cohort has data/<split>/<shard>.parquet files")
        return files

    @cached_property
    def _checked_files(self) -> list[Path]:
        """data_files() after a footer check of each (required columns and types; once per Cohort)."""
        files = self.data_files()
        c = Collector(self.root)
        for f in files:
            check_shard_footer(c, f)
        c.raise_first_error()
        return files

    @cached_property
    def _schemas(self) -> dict[Path, "pa.Schema"]:
        """Footer schema of each checked shard (read once per Cohort)."""
        return {f: pq.read_schema(f) for f in self._checked_files}

    @cached_property
    def nonstatic_null_codes(self) -> dict[str, dict]:
        """Codes whose null-time rows are not static facts (see shard_checks.nonstatic_null_codes).

        Their null-time rows are dropped by `scan`, so they never reach a model input.
        """
        return nonstatic_null_codes(self._checked_files, self.predicates_file)

    def scan(self, columns: tuple[str, ...] = ("subject_id", "time", "code", "numeric_value"),
             files: list[Path] | None = None, timed_only: bool = False,
             rows: tuple[int, int] | None = None) -> pl.LazyFrame:
        """Lazy scan over all shards (or `files`) with the requested core columns (extra columns are ignored).

        numeric_value is read as Float32 and time as microsecond Datetime whatever the shard's
        MEDS version wrote, so downstream code sees one schema. A shard without a required column
        (shard_checks.REQUIRED_COLUMNS) raises UserError naming it; only the optional text_value is
        read as null when absent. NaN/inf numeric values are read as null (no value), and null-time
        rows of codes that are not static facts are dropped (the null-time rule of DESIGN.md).
        timed_only: keep only rows with a time (the label extractor's view); the null-time rule is
        then moot, so its whole-cohort scan (nonstatic_null_codes) is skipped.
        rows: (offset, length) of the files' rows to read, before any row is dropped (polars reads
        only the row groups that hold them): a shard in batches.
        """
        all_files = self._checked_files
        if files is None:
            files = all_files
        else:
            files = [Path(f) for f in files]
            known = set(all_files)
            unknown = [f for f in files if f not in known]
            if unknown:
                raise ValueError(f"{unknown[0]} is not a data shard of {self}")
        lf = scan_shards(files, tuple(dict.fromkeys([*columns, "time", "code"])), self._schemas)
        if rows is not None:
            lf = lf.slice(*rows)
        if "numeric_value" in columns:
            v = pl.col("numeric_value")
            lf = lf.with_columns(pl.when(v.is_finite()).then(v).otherwise(None).alias("numeric_value"))
        if timed_only:
            lf = lf.filter(pl.col("time").is_not_null())
        elif blocked := self.nonstatic_null_codes:
            lf = drop_nonstatic_nulls(lf, blocked)
        return lf.select(list(columns))

    @cached_property
    def splits(self) -> pl.DataFrame:
        """subject_id -> split, from metadata/subject_splits.parquet."""
        p = self.root / "metadata" / "subject_splits.parquet"
        fix = "write metadata/subject_splits.parquet with subject_id (int64), split (string)"
        if not p.exists():
            raise UserError("subject splits file not found", file=p, fix=fix)
        c = Collector(self.root)
        schema = read_footer(c, p, "subject splits file")
        c.raise_first_error()
        for col in ("subject_id", "split"):
            if col not in schema.names:
                raise UserError("required column is missing", file=p, field=col, fix=fix)
        try:
            return pl.read_parquet(p, columns=["subject_id", "split"]).with_columns(
                pl.col("subject_id").cast(pl.Int64), pl.col("split").cast(pl.String))
        except pl.exceptions.PolarsError as e:
            raise UserError(f"cannot be read ({str(e).splitlines()[0]})", file=p, fix=fix) from None

    def subjects(self, split: str | None = None) -> pl.Series:
        """Subject ids, optionally of one split."""
        s = self.splits
        if split is not None:
            s = s.filter(pl.col("split") == split)
        return s["subject_id"]

    def codes(self) -> pl.DataFrame:
        """metadata/codes.parquet (code, description, parent_codes); empty if absent."""
        p = self.root / "metadata" / "codes.parquet"
        if not p.exists():
            return pl.DataFrame(schema={"code": pl.String, "description": pl.String})
        return pl.read_parquet(p)

    def dataset_metadata(self) -> dict:
        p = self.root / "metadata" / "dataset.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def modality_names(self) -> list[str]:
        d = self.root / "modalities"
        return sorted(p.stem for p in d.glob("*.parquet")) if d.is_dir() else []

    def modality(self, name: str) -> pl.LazyFrame:
        """Lazy scan of modalities/<name>.parquet (UserError if it is not a readable parquet file)."""
        p = self.root / "modalities" / f"{name}.parquet"
        if not p.exists():
            raise UserError(f"modality {name!r} not found", file=p,
                            fix=f"available modalities: {', '.join(self.modality_names()) or 'none'}")
        c = Collector(self.root)
        read_footer(c, p, "modality file")
        c.raise_first_error()
        return pl.scan_parquet(p)

    def sidecar_file(self, rel: str, modality: str) -> Path:
        """The file a sidecar `path` value names, confined to the cohort folder.

        Raises:
            UserError: for an absolute path or one that leads outside the cohort (e.g. '../../etc/passwd').
        """
        p = inside_root(self.root, rel)
        if p is None:
            raise UserError(f"path {rel!r} is absolute or leads outside the cohort folder; it is not opened",
                            file=self.root / "modalities" / f"{modality}.parquet", field="path",
                            fix="store each path relative to the cohort folder, inside it (no leading '/', no '..')")
        return p

    # ------------------------------------------------------------------ derived
    def predicate_map(self):
        """The dataset's predicate name -> rule map (see `predicates_file`), with ``descendants_of``
        resolved through metadata/codes.parquet.

        Raises:
            UserError: no map at all (no --predicates, no <cohort>/predicates.yaml, no profile), with the fix.
        """
        from benchmark.predicate_maps import load_predicate_map
        from benchmark.predicates import resolve_descendants
        pf = self.predicates_file
        if not pf.exists() and self._explicit_predicates is None and self.profile is None:
            installed = ", ".join(sorted(available_profiles())) or "(none installed)"
            raise UserError(f"no predicate map for cohort {self.root}: no predicates.yaml in it and no dataset "
                            "profile recognises its metadata/dataset.json", file=pf, field="--dataset",
                            fix=f"pass --dataset NAME (installed profiles: {installed}), --predicates FILE, "
                                "or write predicates.yaml into the cohort folder")
        return resolve_descendants(load_predicate_map(pf), self.root / "metadata" / "codes.parquet")

    def fingerprint(self) -> str:
        """Content hash of data, metadata, sidecars, the predicate map in use and the dataset profile's
        dataset.yaml (images excluded).

        Cached in <root>/.fingerprint keyed by file sizes and mtimes so it is computed once.
        """
        files = [*self.data_files(), *sorted((self.root / "metadata").glob("*")),
                 *sorted((self.root / "modalities").glob("*.parquet"))]
        if self.predicates_file.exists():
            files.append(self.predicates_file)
        if self.profile is not None and self.profile.folder is not None:
            # how the dataset is read (demographics, code hierarchy) is part of what a result depends on
            files.append(self.profile.folder / "dataset.yaml")
        stamp = hashlib.sha256()
        for f in files:
            st = f.stat()
            stamp.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        key = stamp.hexdigest()

        def read(path: Path) -> str:
            cached = json.loads(path.read_text())
            if cached.get("key") != key:
                raise ValueError("stale fingerprint")  # files changed since: recompute
            return cached["fingerprint"]

        # No lock file in the user's cohort folder: the hash is idempotent, so two concurrent runs
        # may both compute it; each write is atomic. A read-only cohort is hashed each time.
        return cached_artifact(self.root / ".fingerprint", lambda: self._content_hash(files), read=read,
                               write=lambda tmp, fp: tmp.write_text(json.dumps({"key": key, "fingerprint": fp})),
                               lock=False, best_effort=True)

    def _content_hash(self, files: list[Path]) -> str:
        """16 hex digits of sha256 over the files' relative names and contents."""
        h = hashlib.sha256()
        for f in files:
            h.update(f.relative_to(self.root).as_posix().encode() if f.is_relative_to(self.root)
                     else f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        return h.hexdigest()[:16]

    def demographics(self) -> pl.DataFrame:
        """One row per subject: subject_id, sex, race, ethnicity, birth_time (nulls where absent).

        Read as the profile's ``demographics`` says (benchmark.data.profiles.read_demographics); without a
        profile from the static codes GENDER/*, RACE/*, ETHNICITY/* and MEDS_BIRTH. Read once per Cohort
        (a scan of every shard, which featurization and the fairness report both ask for).
        """
        return self._demographics

    @cached_property
    def _demographics(self) -> pl.DataFrame:
        spec = self.profile.demographics if self.profile else DEFAULT_DEMOGRAPHICS
        return read_demographics(self, spec)
