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
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal

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
    hits = [p for p in (load_profile(f) for f in profiles.values()) if p.matches(meta)]
    if len(hits) > 1:
        raise UserError(f"several dataset profiles recognise this cohort: {', '.join(p.name for p in hits)}",
                        file=Path(root) / "metadata" / "dataset.json", fix="pick one with --dataset NAME")
    return hits[0] if hits else None
