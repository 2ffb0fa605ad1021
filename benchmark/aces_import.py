"""Import an ACES / MEDS-DEV task config as a MEHR-Bench task file (`benchmark tasks import-aces`).

The config is parsed with ACES's own loader (`aces.config.TaskExtractorConfig.load`, es-aces 0.7.3),
then its window tree is laid out on one time axis, relative to the trigger, and written in our terms:

  trigger                              -> index {predicate, occurrence: all}
  index_timestamp window edge          -> index.offset (prediction time = trigger + offset)
  has {P: (None, 0)} on a window       -> exclusion of P in that window (edges and their
                                          inclusivity relative to the prediction time)
  has {P: (k, None)}, k >= 1           -> inclusion of P (min_count k)
  no earlier trigger, [record start,
    trigger) has {trigger: (None, 0)}  -> occurrence: first (the first-occurrence idiom)
  `end <- P` window edge (no has)      -> inclusion: a P at or before that edge (ACES needs it to
                                          exist to build the window)
  label window (start, end]            -> label {outcome, window, censoring: negative}
  label window ending `start -> P`     -> label.end_at P, end_at_missing: drop
  start: null / end: null              -> -inf / inf
  plain predicate `???`                -> a dataset predicate (the dataset's map supplies it)
  plain predicate with a code          -> a task predicate {rule: ...} (ACES code, regex, any;
                                          bounds exclusive unless *_inclusive says true)
  expr: or(a, b, ...)                  -> {any_of_predicates: [a, b, ...]}
  expr: and(P, R), R code-less range   -> {of: P, value_min/value_max (+ _inclusive)}: a P row
                                          whose value is in R (see the note below)
  durations (pytimeparse)              -> as ACES parsed them, written in d / h / min / s

Everything else is refused by name (window or predicate, and why): and() of coded predicates (ACES
evaluates it per timestamp), static / demographic predicates, extra column constraints, has counts
other than (None, 0) and (k, None), has on an event-bound window, forward `start -> P` edges outside
the label window, label windows with other edge inclusivity, an index on an event-bound edge.

Code-less ranges: ACES 0.7.3 evaluates a plain predicate with `code: null` as matching no row
(`code == null` is null in polars), so MEDS-DEV 0.0.14's `and(lab, lab_range)` labels are all
negative in ACES (ACES issue 193, MEDS-DEV issue 237). We read `and(P, R)` per row, as MEDS-DEV
intends and as its later configs write it (the range on the lab predicate itself). A code-less range
used on its own in `has: (None, 0)` matches nothing in ACES and is dropped (with a note); elsewhere
it is refused.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import UserError
from benchmark.predicate_maps import aces_predicate_rule, load_predicate_map
from benchmark.strict_yaml import read_yaml_file

PLACEHOLDER = "???"
_BUILTINS = {"_ANY_EVENT": "_any_event"}
DEFAULT_METRICS = ["auroc", "auprc", "brier", "ece"]
DEFAULT_FAIRNESS = ["sex", "race", "ethnicity", "age_band"]


@dataclass(frozen=True)
class _Edge:
    """A window edge: a time (seconds from the trigger, +-inf allowed), or the next / previous
    event of a predicate from an anchor time."""

    seconds: float | None = None
    event: str | None = None
    backward: bool = False
    anchor: float | None = None

    @property
    def temporal(self) -> bool:
        return self.event is None


def _refuse(config: Path, field: str, why: str, fix: str = "edit the config or write the task by hand "
                                                          "(tasks/README.md)") -> UserError:
    return UserError(f"cannot import: {why}", file=config, field=field, fix=fix)


def format_duration(seconds: float) -> str:
    """Seconds as a task-file duration: "0", "inf", "-inf", or the largest of d / h / min / s that
    divides it, hours up to a week ("24h", "48h", "30d", "-6571d").

    Args:
        seconds: the duration.

    Returns:
        The duration text benchmark.durations.parse_duration reads back to the same seconds.
    """
    if math.isinf(seconds):
        return "inf" if seconds > 0 else "-inf"
    if seconds == 0:
        return "0"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0 and not (unit == "d" and abs(seconds) < 7 * 86400):
            return f"{int(seconds // size)}{unit}"
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{seconds}s"


def _load_aces(config: Path, predicates: Path | None, raw: dict):
    """ACES's TaskExtractorConfig of `config`; `???` predicates (which ACES's loader only accepts once
    a predicates file overrides them) stand in as placeholder codes."""
    try:
        from aces.config import TaskExtractorConfig
    except ImportError:
        raise UserError("reading ACES configs needs the es-aces package", file=config,
                        fix="pip install es-aces==0.7.3 (it is in MEHR-Bench's dev extra)") from None
    body = dict(raw)
    body["predicates"] = {n: ({"code": PLACEHOLDER} if _is_placeholder(p) else p)
                          for n, p in (raw.get("predicates") or {}).items()}
    undefined: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / config.name
        for _ in range(100):
            path.write_text(yaml.safe_dump(body, sort_keys=False))
            try:
                return TaskExtractorConfig.load(path, predicates), undefined
            except KeyError as e:
                # a name the config uses but leaves to the dataset's predicates file (MEDS-DEV's
                # metabolic_acidosis uses hospital_admission so): a dataset predicate
                m = re.search(r"predicate '([^']+)'", str(e))
                if m is None or m[1] in undefined or predicates is not None:
                    raise UserError(f"ACES cannot read this config: {e}", file=config, fix=_ACES_FIX) from None
                undefined.add(m[1])
                body["predicates"][m[1]] = {"code": PLACEHOLDER}
            except (ValueError, TypeError) as e:
                raise UserError(f"ACES cannot read this config: {e}", file=config, fix=_ACES_FIX) from None
    raise UserError("ACES cannot read this config", file=config, fix=_ACES_FIX)


_ACES_FIX = "check it with ACES (aces-cli) first; see the ACES configuration docs"


def _is_placeholder(p: Any) -> bool:
    return p == PLACEHOLDER or (isinstance(p, dict) and p.get("code") == PLACEHOLDER
                                and set(p) <= {"code"})


class _Translator:
    def __init__(self, config: Path, cfg, raw: dict, dataset_names: set[str]):
        self.config, self.cfg, self.raw = config, cfg, raw
        self.dataset_names = dataset_names
        self.task_predicates: dict[str, dict] = {}
        self.notes: list[str] = []
        self.edges: dict[tuple[str, str], _Edge] = {}
        self.ranges: dict[str, dict] = {}  # code-less range predicates -> our bound fields

    # -------------------------------------------------------------- predicates
    def predicate(self, name: str, where: str) -> str:
        """Our name for ACES predicate `name` (translated into task predicates as needed)."""
        if name in _BUILTINS:
            return _BUILTINS[name]
        if name in ("_RECORD_START", "_RECORD_END"):
            raise _refuse(self.config, where, f"{name} as a constraint or label is not supported")
        if name in self.task_predicates or name in self.dataset_names:
            return name
        p = self.cfg.predicates[name]
        field = f"predicates.{name}"
        if p.is_plain:
            if p.static:
                raise _refuse(self.config, field, "static (patient_demographics) predicates are not supported")
            if p.other_cols:
                raise _refuse(self.config, field, f"constraints on other columns {sorted(p.other_cols)} are "
                                                  "not supported (MEDS code and numeric_value only)")
            if p.code is None:
                raise _refuse(self.config, field, "a code-less value range is only supported inside "
                                                  "and(predicate, range) (ACES 0.7.3 matches no row with it)")
            raw = {k: getattr(p, k) for k in ("code", "value_min", "value_max", "value_min_inclusive",
                                              "value_max_inclusive") if getattr(p, k) is not None}
            rule = aces_predicate_rule(self.config, name, raw)
            self.task_predicates[name] = {"rule": rule.model_dump(exclude_defaults=True)}
            return name
        inputs = list(p.input_predicates)
        if p.is_or:
            if any(self._is_range(i) for i in inputs):
                raise _refuse(self.config, field, "or() with a code-less range is not supported")
            self.task_predicates[name] = {}  # reserve the name (cycles are impossible in ACES)
            self.task_predicates[name] = {"any_of_predicates": [self.predicate(i, field) for i in inputs]}
            return name
        ranges = [i for i in inputs if self._is_range(i)]
        coded = [i for i in inputs if not self._is_range(i)]
        if len(coded) != 1 or len(ranges) != 1:
            raise _refuse(self.config, f"{field}.expr",
                          f"{p.expr!r}: and() is supported only as and(predicate, code-less range); ACES "
                          "evaluates and() of coded predicates per timestamp, which MEHR-Bench tasks do not express")
        base = self.predicate(coded[0], field)
        self.task_predicates[name] = {"of": base, **self.ranges[ranges[0]]}
        self.notes.append(f"{name} = {p.expr} is read per row: a {coded[0]} row whose value is in "
                          f"{ranges[0]} (ACES 0.7.3 matches no row with a code-less range, ACES issue 193)")
        return name

    def _is_range(self, name: str) -> bool:
        p = self.cfg.predicates.get(name)
        if p is None or not p.is_plain or p.code is not None:
            return False
        if p.value_min is None and p.value_max is None:
            raise _refuse(self.config, f"predicates.{name}", "code: null without a value range matches nothing")
        out: dict[str, Any] = {}
        for b in ("value_min", "value_max"):
            if getattr(p, b) is not None:
                out[b] = float(getattr(p, b))
                if not getattr(p, f"{b}_inclusive"):  # ACES: None = exclusive
                    out[f"{b}_inclusive"] = False
        self.ranges[name] = out
        return True

    # -------------------------------------------------------------- windows
    def edge(self, window: str, side: str, trail: tuple = ()) -> _Edge:
        """Where edge `side` ('start' / 'end') of `window` lies, relative to the trigger."""
        key = (window, side)
        if key in self.edges:
            return self.edges[key]
        if key in trail:
            raise _refuse(self.config, f"windows.{window}.{side}", "window edges reference each other in a cycle")
        from aces.utils import parse_timedelta

        w = self.cfg.windows[window]
        parsed = w._parsed_start if side == "start" else w._parsed_end
        ref = parsed["referenced"]
        if ref == "trigger":
            base = _Edge(seconds=0.0)
        elif ref in ("start", "end"):
            base = self.edge(window, ref, trail + (key,))
        else:
            other, other_side = ref.split(".")
            base = self.edge(other, other_side, trail + (key,))
        bound = parsed.get("event_bound")
        field = f"windows.{window}.{side}"
        if bound in ("-_RECORD_START", "_RECORD_START"):
            e = _Edge(seconds=-math.inf)
        elif bound in ("_RECORD_END", "-_RECORD_END"):
            e = _Edge(seconds=math.inf)
        elif bound:
            if not base.temporal:
                raise _refuse(self.config, field, "an event-bound edge anchored on another event-bound edge")
            e = _Edge(event=bound.lstrip("-"), backward=bool(parsed.get("occurs_before")), anchor=base.seconds)
        else:
            if not base.temporal:
                raise _refuse(self.config, field, f"an edge relative to the event-bound edge {ref}")
            off = parse_timedelta(parsed["offset"]).total_seconds() if parsed.get("offset") else 0.0
            e = _Edge(seconds=base.seconds + off)
        self.edges[key] = e
        return e

    def translate(self, description: str, references: list[str]) -> dict:
        cfg, config = self.cfg, self.config
        if not cfg.windows:
            raise _refuse(config, "windows", "a config without windows has no label")
        if cfg.index_timestamp_window is None or cfg.label_window is None:
            raise _refuse(config, "windows", "the config needs an index_timestamp window and a label window")
        iw = cfg.windows[cfg.index_timestamp_window]
        at = self.edge(cfg.index_timestamp_window, iw.index_timestamp)
        if not at.temporal or math.isinf(at.seconds):
            raise _refuse(config, f"windows.{cfg.index_timestamp_window}.index_timestamp",
                          "the prediction time must be the trigger plus a fixed offset, not an event-bound edge")
        t0 = at.seconds  # prediction time = trigger + t0
        trigger = self.predicate(cfg.trigger.predicate, "trigger")
        index = {"predicate": trigger, "occurrence": "all", "offset": format_duration(t0)}
        inclusion: list[dict] = []
        exclusion: list[dict] = []
        label: dict | None = None
        for name, w in cfg.windows.items():
            start, end = self.edge(name, "start"), self.edge(name, "end")
            field = f"windows.{name}"
            if name == cfg.label_window:
                label = self._label(name, w, start, end, t0)
            if not (start.temporal and end.temporal):
                if w.has:
                    raise _refuse(config, f"{field}.has", "has constraints on a window with an event-bound edge "
                                                          "are not supported")
                if name == cfg.label_window:
                    continue
                ev = start if not start.temporal else end
                if not ev.backward or ev is not start:
                    raise _refuse(config, field, f"a `-> {ev.event}` edge outside the label window is not supported "
                                                 "(only `end <- P`, which requires a P at or before the window end)")
                # ACES builds the window only if such an event exists: require one
                inclusion.append({"predicate": self.predicate(ev.event, field), "start": "-inf",
                                  "end": format_duration(ev.anchor - t0), "end_inclusive": bool(w.start_inclusive)})
                continue
            for pred, (lo, hi) in w.has.items():
                hf = f"{field}.has.{pred}"
                if (lo, hi) in ((None, None), (0, None)):
                    continue
                if pred in cfg.predicates and self._is_range(pred):
                    if (lo in (None, 0)) and hi == 0:
                        self.notes.append(f"the constraint {pred}: (None, 0) on window {name} is dropped: {pred} "
                                          "is a code-less range, which matches no row in ACES 0.7.3 (ACES issue 193)")
                        continue
                    raise _refuse(config, hf, f"{pred} is a code-less range, which ACES 0.7.3 never matches")
                if (lo is None or lo == 0) and hi == 0:
                    rows = exclusion
                    extra: dict = {}
                elif lo is not None and lo >= 1 and hi is None:
                    rows = inclusion
                    extra = {"min_count": int(lo)} if lo > 1 else {}
                else:
                    raise _refuse(config, hf, f"the count bounds ({lo}, {hi}) are not supported; use (None, 0) "
                                              "(exclusion) or (k, None) (inclusion)")
                s_rel, e_rel = start.seconds - t0, end.seconds - t0
                if (name != cfg.label_window and pred == cfg.trigger.predicate and rows is exclusion
                        and math.isinf(start.seconds) and end.seconds == 0 and not w.end_inclusive):
                    index["occurrence"] = "first"  # no trigger before this one: the first occurrence
                    continue
                crit = {"predicate": self.predicate(pred, hf), "start": format_duration(s_rel),
                        "end": format_duration(e_rel), **extra}
                if w.start_inclusive and not math.isinf(s_rel):
                    crit["start_inclusive"] = True
                if not w.end_inclusive and not math.isinf(e_rel):
                    crit["end_inclusive"] = False
                if not s_rel < e_rel:
                    raise _refuse(config, field, "an empty or zero-length window")
                rows.append(crit)
        assert label is not None
        task = {"version": 1, "kind": "binary", "description": description, "references": references,
                "index": index}
        if self.task_predicates:
            task["predicates"] = self.task_predicates
        if inclusion:
            task["inclusion"] = inclusion
        if exclusion:
            task["exclusion"] = exclusion
        task.update({"label": label, "fairness": DEFAULT_FAIRNESS, "metrics": DEFAULT_METRICS,
                     "main_metric": "auroc"})
        return task

    def _label(self, name: str, w, start: _Edge, end: _Edge, t0: float) -> dict:
        field = f"windows.{name}"
        if not start.temporal:
            raise _refuse(self.config, f"{field}.start", "a label window must start at a fixed time")
        if w.start_inclusive or not w.end_inclusive:
            raise _refuse(self.config, field, "a label window is read as (start, end]: start_inclusive false, "
                                              "end_inclusive true")
        if w.label in self.cfg.predicates and self._is_range(w.label):
            raise _refuse(self.config, f"{field}.label", f"{w.label} is a code-less range, which ACES 0.7.3 never "
                                                         "matches; use and(lab, range)")
        out: dict[str, Any] = {"outcome": self.predicate(w.label, f"{field}.label")}
        s_rel = start.seconds - t0
        if end.temporal:
            out["window"] = {"start": format_duration(s_rel), "end": format_duration(end.seconds - t0)}
        else:
            if end.backward:
                raise _refuse(self.config, f"{field}.end", "a label window ending `<- P` is not supported")
            out["window"] = {"start": format_duration(s_rel), "end": "inf"}
            out["end_at"] = self.predicate(end.event, f"{field}.end")
            out["end_at_missing"] = "drop"  # ACES: no such event, no window, no row
        out["censoring"] = "negative"      # ACES does not censor: no label event in the window is a negative
        return out


def import_aces(config: str | Path, predicates: str | Path | None = None,
                references: list[str] | None = None) -> tuple[dict, list[str]]:
    """Translate an ACES task config into a MEHR-Bench task (a dict the strict task schema loads).

    Args:
        config: the ACES / MEDS-DEV task config YAML.
        predicates: an ACES / MEDS-DEV dataset predicates file; its names become dataset predicates
            (as ACES lets it override the config's), and it must map every `???` the config leaves.
        references: the task's references (default: "adapted from the ACES task config <file>").

    Returns:
        (task dict, notes on what was read differently from ACES or dropped).

    Raises:
        UserError: naming the window or predicate that cannot be translated and why.
    """
    config = Path(config)
    raw = read_yaml_file(config)
    if not isinstance(raw, dict) or "trigger" not in raw:
        raise UserError("not an ACES task config (no trigger)", file=config,
                        fix="pass an ACES task config with predicates, trigger and windows")
    placeholders = {n for n, p in (raw.get("predicates") or {}).items() if _is_placeholder(p)}
    dataset_names = set(placeholders)
    if predicates is not None:
        predicates = Path(predicates)
        mapped = load_predicate_map(predicates)  # our reading of it: refuses what we cannot use
        dataset_names |= set(mapped)
        missing = sorted(placeholders - set(mapped))
        if missing:
            raise UserError(f"the predicates file does not map {missing}, which the config leaves as ???",
                            file=predicates, field="predicates", fix=f"add {', '.join(missing)} to it")
    cfg, undefined = _load_aces(config, predicates, raw)
    dataset_names |= undefined
    meta = raw.get("metadata") or {}
    desc = " ".join(str(meta.get("description") or raw.get("description") or "").split())
    t = _Translator(config, cfg, raw, dataset_names)
    description = (f"{desc} " if desc else "") + f"Imported from the ACES task config {config.name}."
    task = t.translate(description, list(references or [f"adapted from the ACES task config {config.name}"]))
    if t.notes:
        task["description"] += " Differences from ACES 0.7.3: " + "; ".join(t.notes) + "."
    return task, t.notes


def write_task_file(task: dict, out: str | Path, *, header: str = "") -> Path:
    """Validate a task dict with the strict schema and write it as YAML, atomically.

    Args:
        task: the task (as import_aces returns it).
        out: the .yaml path (its name under tasks/ is the task's name).
        header: comment lines to put on top (without '#').

    Returns:
        The path written.
    """
    from benchmark.artifacts import atomic_write
    from benchmark.taskspec import TaskSpec

    out = Path(out)
    if out.suffix != ".yaml":
        raise UserError("the task file must end in .yaml", file=out, field="--out",
                        fix="write e.g. --out tasks/meds_dev/my_task.yaml")
    TaskSpec.model_validate({**task, "name": out.stem})  # the file must load
    lines = "".join(f"# {h}\n" for h in header.splitlines() if h.strip())
    try:
        atomic_write(out, lines + yaml.safe_dump(task, sort_keys=False, width=100))
    except OSError as e:
        raise UserError(f"cannot write the task file: {e.strerror or e}", file=out, field="--out",
                        fix="pass a path in a folder you can write to") from None
    return out
