"""The task schema: one strict YAML file per task (tasks/<family>/<name>.yaml).

Windows are relative to the prediction time t (index event time + offset) and half-open:
an event at time e is in window {start: S, end: E} when t + S < e <= t + E ("-inf" is allowed).

The optional `input_window: W` limits what models see (the leakage guard, benchmark.data.leakage):
timed events and sidecar rows with t - W <= time <= t (closed at t - W, so the index event of an
ICU task with offset 24h and W = 24h is visible); W = 0 shows no timed input, only static rows.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from benchmark.durations import EXAMPLES, parse_duration
from benchmark.errors import UserError
from benchmark.kinds import KINDS, TaskKind as KindObject, kind_of
from benchmark.predicates import DerivedRule
from benchmark.strict_yaml import read_yaml_file
from benchmark.results import SAFE_NAME, SAFE_NAME_HELP
from benchmark.vocabulary import SIDE_MODALITIES, SideModality

TaskKind = Literal["binary", "multilabel", "survival", "regression"]
MODALITIES = SIDE_MODALITIES  # what a task may list under `modalities` (the sidecars)
FAIRNESS_ATTRIBUTES = ("sex", "race", "ethnicity", "age_band", "modality_availability")
METRICS_BY_KIND = {name: k.metrics for name, k in KINDS.items()}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_duration(v: str | int) -> str:
    try:
        parse_duration(v)
    except ValueError as e:
        raise ValueError(str(e)) from None
    return str(v)


class Window(_Strict):
    """A half-open window (t + start, t + end] around the prediction time t."""

    start: str
    end: str

    _d = field_validator("start", "end", mode="before")(_check_duration)

    @model_validator(mode="after")
    def _ordered(self) -> "Window":
        if parse_duration(self.start) >= parse_duration(self.end):
            raise ValueError(f"window start {self.start} must be before end {self.end}")
        return self

    def seconds(self) -> tuple[float, float]:
        return parse_duration(self.start), parse_duration(self.end)


class Index(_Strict):
    """The index event that sets the prediction time: time of `occurrence` of `predicate` + offset."""

    predicate: str
    occurrence: Literal["first", "last", "all"] = "first"
    offset: str = "0"

    _d = field_validator("offset", mode="before")(_check_duration)


class Criterion(_Strict):
    """Inclusion (needs >= min_count events) or exclusion (any event) in a window.

    The window is (t + start, t + end] unless `start_inclusive` / `end_inclusive` say otherwise
    (ACES windows state both edges: tasks imported from ACES keep them).
    """

    predicate: str
    start: str
    end: str
    min_count: int = Field(default=1, ge=1)
    start_inclusive: bool = False
    end_inclusive: bool = True

    _d = field_validator("start", "end", mode="before")(_check_duration)

    @model_validator(mode="after")
    def _ordered(self) -> "Criterion":
        if parse_duration(self.start) >= parse_duration(self.end):
            raise ValueError(f"window start {self.start} must be before end {self.end}")
        return self

    def seconds(self) -> tuple[float, float]:
        return parse_duration(self.start), parse_duration(self.end)


class Label(_Strict):
    """How the label is read after the prediction time. Which fields apply depends on the kind:

    binary:     outcome + window [+ end_at (+ end_at_missing)] + censoring, or duration_to + threshold
    multilabel: outcomes (label name -> predicate) + window
    survival:   event + horizon [+ censor_on]
    regression: duration_to [+ from_index]
    """

    outcome: str | None = None
    outcomes: dict[str, str] | None = None
    window: Window | None = None
    end_at: str | None = Field(default=None, description="predicate whose first occurrence after t "
                                                          "closes the label window (inclusive)")
    # ACES's `start -> predicate` window has no end, and so no row, when the predicate never occurs
    # after its start: `drop` reproduces that; `open` runs the window to its nominal end.
    end_at_missing: Literal["open", "drop"] = "open"
    censoring: Literal["exclude", "negative"] = "exclude"
    event: str | None = None
    horizon: str | None = None
    censor_on: tuple[str, ...] = ()
    duration_to: tuple[str, ...] | None = None
    from_index: bool = True
    threshold: str | None = None

    @field_validator("horizon", "threshold", mode="before")
    @classmethod
    def _dur(cls, v):
        return None if v is None else _check_duration(v)

    @field_validator("duration_to", "censor_on", mode="before")
    @classmethod
    def _listify(cls, v):
        return (v,) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _end_at_missing(self) -> "Label":
        if self.end_at_missing != "open" and not self.end_at:
            raise ValueError("end_at_missing applies only with end_at")
        return self


_LATER_LABEL_FIELDS = {"end_at_missing": "open"}
_LATER_TASK_FIELDS = {"input_window": None, "risk_factors": []}
# fields of criteria and task predicates added by issue 17 (ACES import), dropped from the hash at
# their defaults like the ones above
_LATER_CRITERION_FIELDS = {"start_inclusive": False, "end_inclusive": True}
_LATER_PREDICATE_FIELDS = {"value_min_inclusive": True, "value_max_inclusive": True, "rule": None}

RISK_FACTOR_FORMS = ("{name: hypertension, predicate: hypertension} (ever before t), "
                     "{name: creatinine_high, predicate: creatinine, value_min: 1.5, window: {start: -365d, end: \"0\"}} "
                     "(the most recent value in the window meets the bounds), {name: age_65_plus, age_min: 65} "
                     "or {name: male, sex: M}")


class RiskFactor(_Strict):
    """One binarized feature of the task's curated EHR vector (the fusion heads' ehr_source="curated";
    computed by benchmark.features.risk_factors through the leakage guard). Exactly one form:

    * predicate: 1 when an event of the dataset predicate lies in `window` (default: ever before t,
      (-inf, 0]); with value_min / value_max: when the most recent value in the window meets them
      (inclusive unless *_inclusive: false);
    * age_min / age_max: 1 when age_min <= age at t < age_max (years; either bound may be left out);
    * sex: 1 when the dataset profile's sex value equals it (F, M; "female" / "male" are accepted).
    """

    name: str
    predicate: str | None = None
    window: Window | None = None
    value_min: float | None = None
    value_max: float | None = None
    value_min_inclusive: bool = True
    value_max_inclusive: bool = True
    age_min: float | None = Field(default=None, ge=0)
    age_max: float | None = Field(default=None, gt=0)
    sex: str | None = None

    @field_validator("sex")
    @classmethod
    def _sex(cls, v):
        return None if v is None else {"female": "F", "male": "M"}.get(v.lower(), v)

    @model_validator(mode="after")
    def _one_form(self) -> "RiskFactor":
        if not SAFE_NAME.match(self.name):
            raise ValueError(f"risk factor name {self.name!r} is not a safe name ({SAFE_NAME_HELP})")
        age = self.age_min is not None or self.age_max is not None
        forms = [f for f, on in (("predicate", self.predicate is not None), ("age_min/age_max", age),
                                 ("sex", self.sex is not None)) if on]
        if len(forms) != 1:
            raise ValueError(f"risk factor {self.name!r} needs exactly one of predicate, age_min/age_max or sex, "
                             f"not {forms or 'none'}")
        valued = self.value_min is not None or self.value_max is not None
        if self.predicate is None and (self.window is not None or valued):
            raise ValueError(f"risk factor {self.name!r}: window and value bounds apply only with a predicate")
        if self.window is not None and self.window.seconds()[1] > 0:
            raise ValueError(f"risk factor {self.name!r}: window end {self.window.end} is after the prediction "
                             "time; a model input may only look back (end <= \"0\")")
        if age and self.age_min is not None and self.age_max is not None and self.age_min >= self.age_max:
            raise ValueError(f"risk factor {self.name!r}: age_min {self.age_min} must be below age_max {self.age_max}")
        if self.value_min is not None and self.value_max is not None and self.value_min > self.value_max:
            raise ValueError(f"risk factor {self.name!r}: value_min {self.value_min} is above value_max {self.value_max}")
        return self

    def window_seconds(self) -> tuple[float, float]:
        """(start, end) seconds relative to t; (-inf, 0] without a window."""
        return self.window.seconds() if self.window is not None else (-math.inf, 0.0)

_INPUT_WINDOW_FORMS = ('a duration >= 0 such as "24h", "180d", "1y" (models see timed inputs in '
                       '[t - W, t]) or "0" (static rows only); leave the field out for no limit')


def _check_input_window(v):
    """`input_window`: a finite duration >= 0 (None = no limit)."""
    if v is None:
        return None
    if not isinstance(v, (str, int, float)) or isinstance(v, bool):
        raise ValueError(f"input_window must be one duration, not {type(v).__name__} {v!r}; "
                         f"write {_INPUT_WINDOW_FORMS}")
    try:
        s = parse_duration(v)
    except ValueError as e:
        raise ValueError(f"input_window: {e}") from None
    if s < 0:
        raise ValueError(f"input_window {v!r} is negative; it is the look-back W before the prediction "
                         f"time, written as {_INPUT_WINDOW_FORMS}")
    if math.isinf(s):
        raise ValueError(f"input_window {v!r} is unbounded; {_INPUT_WINDOW_FORMS}")
    return str(v)


class TaskSpec(_Strict):
    """A benchmark task. `name` comes from the file path, never from the file."""

    name: str
    version: int = Field(ge=1)
    kind: TaskKind
    description: str
    references: tuple[str, ...] = ()
    index: Index
    predicates: dict[str, DerivedRule] = {}
    inclusion: tuple[Criterion, ...] = ()
    exclusion: tuple[Criterion, ...] = ()
    label: Label
    # What models see: timed inputs in [t - W, t] (see the module docstring); None = everything <= t.
    input_window: str | None = None
    modalities: tuple[SideModality, ...] = ()
    fairness: tuple[Literal["sex", "race", "ethnicity", "age_band", "modality_availability"], ...] = ()
    metrics: tuple[str, ...]
    main_metric: str
    # the curated binarized EHR vector of the fusion heads (ehr_source="curated"); a model input, not
    # part of the label: its predicates are not required of a dataset (an unmapped one stays 0)
    risk_factors: tuple[RiskFactor, ...] = ()

    _iw = field_validator("input_window", mode="before")(_check_input_window)

    @model_validator(mode="after")
    def _kind_rules(self) -> "TaskSpec":
        k = self.kind
        kind_of(k).check_label(self.label)
        allowed = METRICS_BY_KIND[k]
        for m in self.metrics:
            if m not in allowed:
                raise ValueError(f"metric {m!r} does not apply to a {k} task; use some of {list(allowed)}")
        if self.main_metric not in self.metrics:
            raise ValueError(f"main_metric {self.main_metric!r} must be one of metrics {list(self.metrics)}")
        names = [f.name for f in self.risk_factors]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"risk factor names must be unique; repeated: {dup}")
        return self

    # ------------------------------------------------------------------ helpers
    @property
    def kind_obj(self) -> KindObject:
        """The task kind's object (benchmark.kinds): targets, metrics, predictions, selection."""
        return kind_of(self.kind)

    def referenced_predicates(self) -> set[str]:
        """Every predicate name the task reads (task-local names included)."""
        return self._with_inputs(self.label_event_predicates()
                                 | {c.predicate for c in self.inclusion + self.exclusion})

    def label_event_predicates(self) -> set[str]:
        """Predicate names the task uses as index, outcome or censoring event, with the inputs of
        task-local predicates they are built from (a code among them is never a static fact)."""
        lab = self.label
        names = {self.index.predicate, *(n for n in (lab.outcome, lab.event, lab.end_at) if n)}
        names |= set((lab.outcomes or {}).values()) | set(lab.censor_on) | set(lab.duration_to or ())
        return self._with_inputs(names)

    def _with_inputs(self, names: set[str]) -> set[str]:
        """names plus, transitively, the inputs of the task-local predicates among them."""
        names = set(names)
        frontier = list(names)
        while frontier:
            n = frontier.pop()
            if n in self.predicates:
                for i in self.predicates[n].inputs():
                    if i not in names:
                        names.add(i)
                        frontier.append(i)
        return names

    def dataset_predicates(self) -> set[str]:
        """Predicate names the dataset's predicates.yaml must map (task-local and built-ins removed)."""
        from benchmark.predicates import BUILTIN_PREDICATES
        return {n for n in self.referenced_predicates()
                if n not in self.predicates and n not in BUILTIN_PREDICATES}

    def label_names(self) -> list[str]:
        """Multilabel column names in file order (one name for other kinds)."""
        return list(self.label.outcomes) if self.label.outcomes else [self.name]

    def input_lookback_s(self) -> float | None:
        """The input window W in seconds (0 = static rows only), or None when models see all history."""
        return None if self.input_window is None else parse_duration(self.input_window)

    def input_window_tag(self) -> str:
        """"" without an input window, else "@input<W in seconds>s" (24h: "@input86400s"): appended to
        per-task cache folders so a task whose window changes never reads inputs built under another."""
        w = self.input_lookback_s()
        return "" if w is None else f"@input{int(round(w))}s"

    def horizon_days(self) -> float | None:
        """The horizon (survival) or label-window end (binary) in days, if finite."""
        if self.label.horizon:
            return parse_duration(self.label.horizon) / 86400
        if self.label.window:
            end = parse_duration(self.label.window.end)
            return None if math.isinf(end) else end / 86400
        return None

    def content_hash(self) -> str:
        """sha256 of the task's canonical JSON (name, version and all rules)."""
        dump = self.model_dump(mode="json")
        # Fields added after tasks were published stay out of the hash at their default, so the
        # hashes recorded in existing results still match the unchanged tasks.
        for key, default in _LATER_LABEL_FIELDS.items():
            if dump["label"].get(key) == default:
                del dump["label"][key]
        for key, default in _LATER_TASK_FIELDS.items():
            if key in dump and dump[key] == default:
                del dump[key]
        for item, later in [*((c, _LATER_CRITERION_FIELDS) for c in dump["inclusion"] + dump["exclusion"]),
                            *((p, _LATER_PREDICATE_FIELDS) for p in dump["predicates"].values())]:
            for key, default in later.items():
                if key in item and item[key] == default:
                    del item[key]
        blob = json.dumps(dump, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_task_file(path: str | Path, name: str) -> TaskSpec:
    """Read and validate one task YAML.

    Args:
        path: the YAML file.
        name: the task name (its path under tasks/ without .yaml).

    Returns:
        The validated TaskSpec.

    Raises:
        UserError: naming the file, the field and a fix.
    """
    path = Path(path)
    bad = [seg for seg in name.split("/") if not SAFE_NAME.match(seg)]
    if bad:  # the task name becomes folders under --results and the cache
        raise UserError(f"task name {name!r} (from the file path) has an unsafe part {bad[0]!r}", file=path,
                        field="file name", fix=f"rename the file and its folders using {SAFE_NAME_HELP}")
    raw = read_yaml_file(path)
    if not isinstance(raw, dict):
        raise UserError("a task file must be a YAML mapping", file=path,
                        fix="see tasks/README.md for the layout of a task file")
    if "name" in raw:
        raise UserError("the task name comes from the file path, not from the file", file=path,
                        field="name", fix=f"remove 'name:'; this task is called {name!r}")
    try:
        return TaskSpec.model_validate({**raw, "name": name})
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"] if not isinstance(x, int) or True)
        msg = err["msg"].removeprefix("Value error, ")
        fix = _fix_for(err)
        raise UserError(msg, file=path, field=loc or None, fix=fix) from None


def _fix_for(err: dict) -> str:
    t = err["type"]
    loc = [str(x) for x in err["loc"]]
    if t == "extra_forbidden":
        return f"remove or rename '{loc[-1]}'; see tasks/README.md for the allowed keys"
    if t == "literal_error":
        return f"use one of the allowed values ({err.get('ctx', {}).get('expected', '')})"
    if t == "missing":
        return f"add '{loc[-1]}'"
    if loc and loc[0] == "input_window":
        return f"write input_window as {_INPUT_WINDOW_FORMS}"
    if loc and loc[0] == "risk_factors":
        return f"write each risk factor as one of {RISK_FACTOR_FORMS} (tasks/README.md, 'risk_factors')"
    if "duration" in err["msg"]:
        return f"write durations as {EXAMPLES}"
    return "see tasks/README.md for the task file format"
