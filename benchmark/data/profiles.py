"""Dataset profiles: how a real dataset plugs in without hand-written glue.

A profile is a folder ``<name>/`` with ``dataset.yaml`` (how to recognise and read the dataset) and
one or more predicate maps (predicate name -> code rule, benchmark.predicates). Built-in profiles live
in data_prep/datasets/ and are found, like any outside package's, through the entry-point group
``mehr_bench.datasets`` (each entry point names a folder that holds profile folders); the core never
imports data_prep.

Which profile a cohort uses, first match wins:
    1. ``--dataset NAME`` (or a profile folder's path);
    2. the profile whose ``recognise`` rules match the cohort's metadata/dataset.json;
    3. none: the cohort must carry its own predicates.yaml.
Which predicate map: ``--predicates FILE``, else ``<cohort>/predicates.yaml``, else the profile's map
for the cohort's ETL (the first ``predicates`` variant whose ``when`` matches dataset.json).

dataset.yaml::

    name: mimic_iv
    description: ...
    recognise: {dataset_name: '^MIMIC-IV', etl_name: 'MIMIC_IV'}   # regexes on dataset.json fields
    predicates:                                                      # first match wins
      - {when: {etl_version: '^0\\.1\\.'}, file: predicates_etl01.yaml}
      - {file: predicates.yaml}
    demographics:
      sex: {code_prefix: 'GENDER//'}              # the value is the code after the prefix
      race: [{code_prefix: 'RACE//'}, {column: race}]   # or an extra column; a list is tried in order
      ethnicity: {code_prefix: 'ETHNICITY//'}
      birth: {code: MEDS_BIRTH}
      values: {race: {'WHITE - RUSSIAN': WHITE}}  # optional value -> group map (exact), per attribute
      value_patterns: {race: {'^WHITE': WHITE}}   # optional regex -> group map, tried in order
    hierarchy:                                    # code prefix -> characters kept after the prefix
      truncate: {'DIAGNOSIS//ICD//10//': 3}
"""

from __future__ import annotations

import json
import re
import warnings
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from benchmark.errors import UserError
from benchmark.strict_yaml import read_yaml_file

DATASETS_GROUP = "mehr_bench.datasets"
DEMOGRAPHIC_ATTRIBUTES = ("sex", "race", "ethnicity")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_regex(v: str) -> str:
    from benchmark.strict_yaml import check_regex
    check_regex(v)
    return v


class Source(_Strict):
    """Where one demographic attribute is read: a static code family or an extra column."""

    code_prefix: str | None = None
    column: str | None = None
    code: str | None = None           # birth: the code whose time is the birth time

    @model_validator(mode="after")
    def _one(self) -> "Source":
        given = [k for k in ("code_prefix", "column", "code") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of code_prefix, column, code (got {given or 'none'})")
        return self


class Demographics(_Strict):
    """Where sex, race, ethnicity and birth are read; a list of sources is tried in order (the first
    that gives a subject a value wins), e.g. race as a RACE// code (one ETL) or a column (another)."""

    sex: tuple[Source, ...] = ()
    race: tuple[Source, ...] = ()
    ethnicity: tuple[Source, ...] = ()
    birth: tuple[Source, ...] = (Source(code="MEDS_BIRTH"),)
    values: dict[Literal["sex", "race", "ethnicity"], dict[str, str]] = Field(default_factory=dict)
    value_patterns: dict[Literal["sex", "race", "ethnicity"], dict[str, str]] = Field(default_factory=dict)

    @field_validator("sex", "race", "ethnicity", "birth", mode="before")
    @classmethod
    def _listify(cls, v):
        return [v] if isinstance(v, dict) else v

    @field_validator("value_patterns")
    @classmethod
    def _patterns(cls, v):
        for pats in v.values():
            for p in pats:
                _check_regex(p)
        return v

    def group(self, attribute: str, value: str | None) -> str | None:
        """The fairness group of a raw value (exact map, then patterns, else the value itself)."""
        if value is None:
            return None
        exact = self.values.get(attribute, {})
        if value in exact:
            return exact[value]
        for pat, grp in self.value_patterns.get(attribute, {}).items():
            if re.search(pat, value):
                return grp
        return value


class PredicateVariant(_Strict):
    when: dict[str, str] = Field(default_factory=dict)   # dataset.json field -> regex
    file: str

    @field_validator("when")
    @classmethod
    def _regexes(cls, v):
        for p in v.values():
            _check_regex(p)
        return v

    @field_validator("file")
    @classmethod
    def _relative(cls, v: str) -> str:
        if Path(v).is_absolute() or ".." in Path(v).parts:
            raise ValueError("file must be a name inside the profile folder")
        return v


class Hierarchy(_Strict):
    truncate: dict[str, int] = Field(default_factory=dict)


class DatasetProfile(_Strict):
    """A parsed dataset.yaml plus the folder it came from."""

    name: str
    description: str = ""
    recognise: dict[str, str] = Field(default_factory=dict)
    predicates: tuple[PredicateVariant, ...] = ()
    demographics: Demographics = Demographics()
    hierarchy: Hierarchy = Hierarchy()
    notes: dict[str, str] = Field(default_factory=dict)
    folder: Path | None = None

    @field_validator("recognise")
    @classmethod
    def _regexes(cls, v):
        for p in v.values():
            _check_regex(p)
        return v

    def matches(self, meta: dict) -> bool:
        """True if every `recognise` regex matches its dataset.json field (and there is at least one)."""
        return bool(self.recognise) and all(re.search(p, str(meta.get(k, ""))) for k, p in self.recognise.items())

    def predicates_file(self, meta: dict) -> Path | None:
        """The predicate map for a cohort with this dataset.json (first matching variant)."""
        for v in self.predicates:
            if all(re.search(p, str(meta.get(k, ""))) for k, p in v.when.items()):
                return (self.folder / v.file) if self.folder else Path(v.file)
        return None


def load_profile(folder: Path) -> DatasetProfile:
    """Read ``<folder>/dataset.yaml``.

    Raises:
        UserError: naming the file, the field and the fix.
    """
    folder = Path(folder)
    f = folder / "dataset.yaml"
    raw = read_yaml_file(f) if f.exists() else None
    if not isinstance(raw, dict):
        raise UserError("not a dataset profile (no dataset.yaml mapping)", file=f,
                        fix="a profile folder holds dataset.yaml and its predicates file(s)")
    try:
        prof = DatasetProfile.model_validate({**raw, "folder": folder})
    except ValidationError as e:
        err = e.errors()[0]
        raise UserError(err["msg"].removeprefix("Value error, "), file=f,
                        field=".".join(str(x) for x in err["loc"]),
                        fix="see benchmark/data/profiles.py for the dataset.yaml fields") from None
    for v in prof.predicates:
        if not (folder / v.file).exists():
            raise UserError(f"predicates file {v.file!r} named by the profile does not exist", file=f,
                            field="predicates.file", fix=f"add {folder / v.file} or fix the name")
    return prof


@lru_cache(maxsize=1)
def _registered() -> tuple[tuple[str, str], ...]:
    out = []
    for ep in entry_points(group=DATASETS_GROUP):
        root = Path(ep.load())
        for d in sorted(p for p in root.iterdir() if (p / "dataset.yaml").exists()):
            out.append((d.name, str(d)))
    return tuple(out)


def available_profiles() -> dict[str, Path]:
    """Profile name -> folder, over every folder registered in ``mehr_bench.datasets``."""
    return {name: Path(folder) for name, folder in _registered()}


def _loadable(profiles: dict[str, Path]) -> list[DatasetProfile]:
    """The profiles that load; a broken one is named in a warning, so one bad installed profile
    does not stop every other dataset from being recognised."""
    out = []
    for folder in profiles.values():
        try:
            out.append(load_profile(folder))
        except UserError as e:
            warnings.warn(f"dataset profile skipped: {e.render()}", stacklevel=3)
    return out


def read_dataset_json(root: Path) -> dict:
    """metadata/dataset.json of a cohort ({} when absent or unreadable)."""
    f = Path(root) / "metadata" / "dataset.json"
    try:
        meta = json.loads(f.read_text())
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def resolve_profile(root: Path, dataset: str | Path | None = None) -> DatasetProfile | None:
    """The profile a cohort uses (see the module docstring), or None.

    Args:
        root: the cohort folder.
        dataset: a profile name or a profile folder (``--dataset``); None = recognise from dataset.json.

    Raises:
        UserError: an explicit profile that does not exist, or two profiles that both recognise it.
    """
    profiles = available_profiles()
    if dataset is not None:
        if str(dataset) in profiles:
            return load_profile(profiles[str(dataset)])
        if Path(dataset).is_dir():
            return load_profile(Path(dataset))
        raise UserError(f"no dataset profile {str(dataset)!r}", field="--dataset",
                        fix=f"use one of: {', '.join(sorted(profiles)) or '(none installed)'}, or a profile folder")
    meta = read_dataset_json(root)
    hits = [p for p in _loadable(profiles) if p.matches(meta)]
    if len(hits) > 1:
        raise UserError(f"several dataset profiles recognise this cohort: {', '.join(p.name for p in hits)}",
                        file=Path(root) / "metadata" / "dataset.json", fix="pick one with --dataset NAME")
    return hits[0] if hits else None


# ---------------------------------------------------------------------------- defaults (no profile)
# What a cohort without a profile gets: today's conventions (static GENDER/, RACE/, ETHNICITY/ codes;
# ICD-10-CM/PCS truncated to 3 characters), so old cohorts read as before.
DEFAULT_DEMOGRAPHICS = Demographics(sex=(Source(code_prefix="GENDER/"),), race=(Source(code_prefix="RACE/"),),
                                    ethnicity=(Source(code_prefix="ETHNICITY/"),))
DEFAULT_TRUNCATE: dict[str, int] = {"ICD10CM/": 3, "ICD10PCS/": 3}


# ---------------------------------------------------------------------------- reading demographics
def read_demographics(cohort, spec: Demographics, *, files: list | None = None,
                      subjects: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per subject of the splits (or of `subjects`): subject_id, sex, race, ethnicity, birth_time.

    Per attribute the sources are tried in order; a subject takes the first source that gives it a
    value. A code_prefix source gives the code after the prefix, a column source the column's value,
    each the first non-null per subject in time order (static rows first). Value groups
    (``values``, ``value_patterns``) are applied last. birth_time is the earliest time of a ``code``
    source.

    Args:
        cohort: the Cohort (its guarded `scan`, shard list and footers are used).
        spec: the profile's demographics block.
        files: read only these shards (default: all); a subject never spans shards, so its row is
            the same read from its own shard (the featurizer reads shard by shard, bounding memory).
        subjects: a subject_id frame, the rows returned (default: every subject of the splits).
    """
    prefixes = [s.code_prefix for a in DEMOGRAPHIC_ATTRIBUTES for s in getattr(spec, a) if s.code_prefix]
    birth_codes = [s.code for s in spec.birth if s.code]
    wanted = pl.col("code").is_in(birth_codes)
    for p in prefixes:
        wanted = wanted | pl.col("code").str.starts_with(p)
    out = cohort.splits.select("subject_id") if subjects is None else subjects.select("subject_id")
    if subjects is not None:
        wanted = wanted & pl.col("subject_id").is_in(out["subject_id"].implode())
    static = _time_ordered(cohort.scan(("subject_id", "time", "code"), files=files).filter(wanted).collect())
    for attr in DEMOGRAPHIC_ATTRIBUTES:
        out = out.join(_attribute(cohort, spec, attr, static, files), on="subject_id", how="left")
    birth = (static.filter(pl.col("code").is_in(birth_codes)).group_by("subject_id")
             .agg(pl.col("time").min().alias("birth_time")))
    return out.join(birth, on="subject_id", how="left").sort("subject_id")


def _time_ordered(df: pl.DataFrame) -> pl.DataFrame:
    """Rows by subject and time, null (static) times first; ties keep their reading order."""
    return df.sort(["subject_id", "time"], nulls_last=False, maintain_order=True)


def _attribute(cohort, spec: Demographics, attr: str, static: pl.DataFrame, files: list | None = None
               ) -> pl.DataFrame:
    """subject_id -> value of one attribute (first source that gives the subject one), grouped."""
    parts = []
    for rank, src in enumerate(getattr(spec, attr)):
        if src.code_prefix:
            vals = (static.filter(pl.col("code").str.starts_with(src.code_prefix))
                    .select("subject_id", pl.col("code").str.slice(len(src.code_prefix)).alias(attr)))
        elif src.column:
            vals = _column_values(cohort, src.column, attr, files)
        else:
            continue
        parts.append(vals.filter(pl.col(attr).is_not_null() & (pl.col(attr) != ""))
                     .group_by("subject_id", maintain_order=True).agg(pl.col(attr).first())
                     .with_columns(pl.lit(rank).alias("_rank")))
    if not parts:
        return pl.DataFrame(schema={"subject_id": pl.Int64, attr: pl.String})
    vals = (pl.concat(parts).sort("subject_id", "_rank").group_by("subject_id", maintain_order=True)
            .agg(pl.col(attr).first()))
    if spec.values.get(attr) or spec.value_patterns.get(attr):
        raw = vals[attr].unique().to_list()
        groups = pl.DataFrame({attr: raw, "_g": [spec.group(attr, v) for v in raw]},
                              schema={attr: pl.String, "_g": pl.String})
        vals = vals.join(groups, on=attr, how="left").select("subject_id", pl.col("_g").alias(attr))
    return vals


def _column_values(cohort, column: str, attr: str, files: list | None = None) -> pl.DataFrame:
    """subject_id, <attr>: the non-null values of an extra shard column, in time order (only the
    shards that have the column, of `files` if given, are read)."""
    only = None if files is None else {Path(f) for f in files}
    frames = [pl.scan_parquet(f).select(pl.col("subject_id").cast(pl.Int64), pl.col("time").cast(pl.Datetime("us")),
                                        pl.col(column).cast(pl.String).alias(attr))
              .filter(pl.col(attr).is_not_null())
              for f, schema in cohort._schemas.items() if column in schema.names and (only is None or f in only)]
    if not frames:
        return pl.DataFrame(schema={"subject_id": pl.Int64, attr: pl.String})
    return _time_ordered(pl.concat(frames).collect()).select("subject_id", attr)
