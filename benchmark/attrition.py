"""Attrition of a task's labels: how many index events survive each rule, per split.

The labeler records one `AttritionStep` per rule, in the order the rules are applied: the index
events (occurrence selection), each inclusion, each exclusion (predicate and window), each way the
label stage drops a row (censoring, an `end_at` that never occurs, unknown durations...), and the
final labels with their positives / events. Consecutive steps chain: a step's rows_in is the
previous step's rows_out, so the drops add up to candidates - final rows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import polars as pl

from benchmark.durations import parse_duration
from benchmark.vocabulary import SPLITS

@dataclass(frozen=True)
class AttritionStep:
    """One rule's effect on the label rows.

    Attributes:
        name: what the step is ("index", "inclusion 1", "exclusion 2", "censoring", "labels").
        rule: the rule as text (predicate and window).
        rows_in / rows_out: sample rows before and after the rule.
        subjects_out: distinct subjects after the rule.
        by_split: rows after the rule per split (subjects without a split are not counted).
        events_out: positives (binary) or observed events (survival) among the final rows; None
            for steps before labelling and for kinds without events.
        events_by_split: events_out per split.
    """

    name: str
    rule: str
    rows_in: int
    rows_out: int
    subjects_out: int
    by_split: dict[str, int] = field(default_factory=dict)
    events_out: int | None = None
    events_by_split: dict[str, int] | None = None

    @property
    def dropped(self) -> int:
        return self.rows_in - self.rows_out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AttritionStep":
        return cls(**d)


class Tracker:
    """Collects the steps while the labeler applies its rules."""

    def __init__(self, splits: pl.DataFrame | None):
        self.splits = splits
        self.steps: list[AttritionStep] = []

    def _by_split(self, rows: pl.DataFrame, flag: str | None = None) -> dict[str, int]:
        if self.splits is None or rows.height == 0:
            return {}
        j = rows.join(self.splits, on="subject_id", how="inner")
        if flag is not None:
            j = j.filter(pl.col(flag))
        return {s: n for s, n in j.group_by("split").len().sort("split").iter_rows()}

    def step(self, name: str, rule: str, rows_in: int, rows: pl.DataFrame) -> None:
        """Record that `rule` left `rows` (a frame with subject_id) of `rows_in` rows."""
        self.steps.append(AttritionStep(name, rule, rows_in, rows.height, rows["subject_id"].n_unique(),
                                        self._by_split(rows)))

    def last_rows(self) -> int:
        return self.steps[-1].rows_out if self.steps else 0

    def final(self, labels: pl.DataFrame, events: pl.Series | None) -> None:
        """The last step: the label rows with their positives / events (`events`: bool per row)."""
        n_ev = by_ev = None
        if events is not None:
            flagged = labels.select("subject_id").with_columns(events.alias("__ev"))
            n_ev, by_ev = int(events.sum()), self._by_split(flagged, "__ev")
        self.steps.append(AttritionStep("labels", "final label rows", self.last_rows(), labels.height,
                                        labels["subject_id"].n_unique(), self._by_split(labels), n_ev, by_ev))


def window_text(start: str, end: str, start_inclusive: bool = False, end_inclusive: bool = True) -> str:
    """'(t-24h, t]' style text of a window relative to the prediction time t."""
    def edge(d: str) -> str:
        s = parse_duration(d)
        if math.isinf(s):
            return "-inf" if s < 0 else "+inf"
        return "t" if s == 0 else (f"t{d}" if str(d).startswith("-") else f"t+{d}")
    return f"{'[' if start_inclusive else '('}{edge(start)}, {edge(end)}{']' if end_inclusive else ')'}"


def index_text(task) -> str:
    """The index rule as text: occurrence, predicate, offset."""
    ix = task.index
    off = "" if parse_duration(ix.offset) == 0 else f" + {ix.offset}"
    return f"{ix.occurrence} {ix.predicate}{off}"


def criterion_text(c, keep: str) -> str:
    """An inclusion ('keep: >= n ...') or exclusion ('drop: any ...') rule as text."""
    count = f">= {c.min_count} " if keep == "inclusion" else "any "
    return f"{count}{c.predicate} in {window_text(c.start, c.end, c.start_inclusive, c.end_inclusive)}"


def rich_table(task_name: str, steps: list[AttritionStep]):
    """The attrition as a rich Table; every cell is plain Text (rule text is user text, never markup)."""
    from rich.table import Table
    from rich.text import Text

    seen = {s for st in steps for s in st.by_split}
    splits = [s for s in SPLITS if s in seen] + sorted(seen - set(SPLITS))
    table = Table(title=Text(f"attrition of {task_name}"))
    for col in ("step", "rule", "rows in", "dropped", "rows out", "subjects", *splits):
        table.add_column(col, overflow="fold", justify="left" if col in ("step", "rule") else "right")
    for st in steps:
        per = [str(st.by_split.get(s, 0)) for s in splits]
        if st.events_by_split is not None:
            per = [f"{st.by_split.get(s, 0)} ({st.events_by_split.get(s, 0)} ev)" for s in splits]
        out = str(st.rows_out) + (f" ({st.events_out} ev)" if st.events_out is not None else "")
        table.add_row(*[Text(x) for x in (st.name, st.rule, str(st.rows_in), str(st.dropped), out,
                                          str(st.subjects_out), *per)])
    return table
