"""Predicate events from MEDS shards: one pass per shard (or a streaming pass over several), in bounded
batches, with the record bounds every task needs; then the derived predicates (ranges, unions, KDIGO AKI,
neutropenic fever). benchmark.labels turns these small per-predicate tables into labels.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.data.cohort import Cohort
from benchmark.data.shard_checks import DEATH_CODE
from benchmark.durations import parse_duration, to_timedelta
from benchmark.errors import UserError
from benchmark.predicates import DatasetRule, DerivedRule
from benchmark.taskspec import TaskSpec

_EVENTS_SCHEMA = {"subject_id": pl.Int64, "time": pl.Datetime("us"), "numeric_value": pl.Float32}


def _scan_predicates(cohort: Cohort, code_rules: dict[str, DatasetRule], need_start: bool = False,
                     files: list[Path] | None = None,
                     any_event: bool = False) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """One pass over the shards (or `files`): events per dataset predicate, and per-subject record bounds.

    Each predicate's events carry its value in the rule's final unit (`DatasetRule.value_expr`:
    unit conversions applied, or the number in text_value); text_value is read only when a rule
    needs it. Bounds: record_end (last timed event), dead (has MEDS_DEATH) and, when asked,
    record_start (first timed event other than MEDS_BIRTH, which is timed but is not a record).
    With any_event, the events also hold "_any_event" (every timed event).

    One shard is read query by query, each reading only what it needs (`_shard_queries`); several
    files are scanned lazily in one streaming pass instead.
    """
    names = sorted(code_rules)
    text = any(code_rules[n].reads_text() for n in names)
    cols = ("subject_id", "time", "code", "numeric_value") + (("text_value",) if text else ())
    if files is not None and len(files) == 1:
        frames = _shard_queries(cohort, files[0], cols, code_rules, need_start, any_event)
    else:
        frames = _scan_queries(cohort.scan(cols, files=files, timed_only=True), code_rules, need_start, any_event)
    bounds = frames["end"].join(frames["dead"].with_columns(pl.lit(True).alias("dead")), on="subject_id", how="left")
    bounds = bounds.with_columns(pl.col("dead").fill_null(False))
    if need_start:
        bounds = bounds.join(frames["start"], on="subject_id", how="left")
    out = {}
    if names:
        hits = frames["hits"]
        for i, n in enumerate(names):
            out[n] = (hits.filter(pl.col(f"__p{i}"))
                      .select("subject_id", "time", pl.col(f"__v{i}").cast(pl.Float32).alias("numeric_value"))
                      .sort("subject_id", "time"))
    if any_event:
        out["_any_event"] = frames["any"]
    return out, bounds


BATCH_ROWS = 1_000_000  # rows of a shard whose record bounds are read at once (~16 MB)


def _shard_queries(cohort: Cohort, file: Path, cols: tuple[str, ...], code_rules: dict[str, DatasetRule],
                   need_start: bool, any_event: bool) -> dict[str, pl.DataFrame]:
    """`_scan_queries`' frames for one shard, each query reading only what it needs.

    - The task's rows (a small part of the shard): the rows whose code matches a rule, and the
      MEDS_DEATH rows, in one filtered read of the whole shard (`_picked_rows`). Which codes match is
      decided on the shard's distinct codes, read from the row groups' dictionaries
      (`_distinct_codes`), so the rules' code tests (regexes included) run on hundreds of codes.
    - The record bounds (and _any_event), from subject_id and time (plus code for record_start,
      numeric_value for _any_event) in batches of BATCH_ROWS rows, each reduced and let go: the
      only per-row data a worker holds besides the task's rows.
    The frames equal `_scan_queries` on the whole shard (tests/test_labels_shards.py).
    """
    names = sorted(code_rules)
    wanted = [DEATH_CODE]
    if names:
        codes = _distinct_codes(file).to_frame("code")
        wanted += codes.filter(pl.any_horizontal([code_rules[n].code_expr() for n in names]))["code"].to_list()
    picked = _picked_rows(cohort, file, cols, wanted).lazy()
    kinds = (["hits"] if names else []) + ["dead"]
    queries = ([_rule_rows(picked, code_rules)] if names else [])
    queries.append(picked.filter(pl.col("code") == DEATH_CODE).select("subject_id").unique())
    frames = dict(zip(kinds, pl.collect_all(queries, engine="in-memory")))
    del picked
    bound_cols = ("subject_id", "time") + (("code",) if need_start else ()) + (("numeric_value",) if any_event else ())
    parts = []
    for rows in _row_batches(file):
        df = _read_batch(cohort.scan(bound_cols, files=[file], timed_only=True, rows=rows)).lazy()
        queries = [df.group_by("subject_id").agg(pl.col("time").max().alias("record_end"))]
        if need_start:
            queries.append(df.filter(pl.col("code") != "MEDS_BIRTH").group_by("subject_id")
                           .agg(pl.col("time").min().alias("record_start")))
        if any_event:
            queries.append(df.select("subject_id", "time", "numeric_value"))
        parts.append(pl.collect_all(queries, engine="in-memory"))
    kinds = ["end"] + ["start"] * need_start + ["any"] * any_event
    frames.update({kind: _COMBINE[kind](pl.concat([p[i] for p in parts])) for i, kind in enumerate(kinds)})
    return frames


def _picked_rows(cohort: Cohort, file: Path, cols: tuple[str, ...], codes: list[str]) -> pl.DataFrame:
    """A shard's timed rows whose code is one of `codes`: polars tests `code.is_in` on the parquet
    dictionary and decodes the other columns of those rows only (about 3x cheaper than reading the
    shard and filtering)."""
    return (cohort.scan(cols, files=[file], timed_only=True)
            .filter(pl.col("code").is_in(pl.Series(codes, dtype=pl.String).implode())).collect(engine="in-memory"))


def _distinct_codes(file: Path) -> pl.Series:
    """The codes of a shard, from each row group's dictionary (pyarrow `read_dictionary`: the rows
    keep only their indices; a column stored without a dictionary gets one built). A dictionary may
    hold a code no row uses: harmless, since these codes only choose which rows to read."""
    pf = pq.ParquetFile(file, read_dictionary=["code"])
    values = [pl.Series("code", [], dtype=pl.String)]
    for i in range(pf.metadata.num_row_groups):  # one row group at a time: bounded memory
        for chunk in pf.read_row_group(i, columns=["code"]).column("code").chunks:
            values.append(pl.Series("code", chunk.dictionary.cast(pa.large_string())).cast(pl.String))
    return pl.concat(values).unique()


def _row_batches(file: Path) -> list[tuple[int, int]]:
    """(offset, length) of each batch of a shard's rows (from the parquet footer's row count)."""
    n = pq.read_metadata(file).num_rows
    return [(o, BATCH_ROWS) for o in range(0, n, BATCH_ROWS)] or [(0, 0)]


def _read_batch(lf: pl.LazyFrame) -> pl.DataFrame:
    """One batch of a shard's rows (the columns a query reads), in memory.

    MEDS shards are sorted by subject_id (validate checks it); when this batch is, polars is told
    so, and its per-subject group-bys take the sorted path (several times faster than hashing).
    """
    df = lf.collect(engine="in-memory")
    if df["subject_id"].is_sorted():
        df = df.with_columns(pl.col("subject_id").set_sorted())
    return df


def _rule_rows(lf: pl.LazyFrame, code_rules: dict[str, DatasetRule]) -> pl.LazyFrame:
    """Rows that match a rule: subject_id, time, and per rule (sorted names) its flag __p<i> and its
    value __v<i> in the rule's final unit."""
    names = sorted(code_rules)
    flags = [code_rules[n].expr().alias(f"__p{i}") for i, n in enumerate(names)]
    values = [code_rules[n].value_expr().alias(f"__v{i}") for i, n in enumerate(names)]
    return (lf.with_columns(flags).filter(pl.any_horizontal([f"__p{i}" for i in range(len(names))]))
            .with_columns(values)
            .select("subject_id", "time", *[f"__p{i}" for i in range(len(names))],
                    *[f"__v{i}" for i in range(len(names))]))


def _scan_queries(lf: pl.LazyFrame, code_rules: dict[str, DatasetRule], need_start: bool,
                  any_event: bool) -> dict[str, pl.DataFrame]:
    """The scan's queries over several shards, run together in one streaming pass: {kind: frame} with
    kinds hits (when there are code rules), end, dead, start (need_start) and any (any_event).

    The rules' code tests run on the distinct codes (hundreds to thousands), not on every row: rows
    whose code matches no rule are dropped by one hash lookup (`is_in`) before the full rules (value
    bounds, conversions) run on the few rows left. That is exact because a rule's `expr()` implies its
    `code_expr()` (DatasetRule's contract), and it is where the time went (a regex on every row).
    """
    names = sorted(code_rules)
    kinds, queries = [], []
    if names:
        codes = lf.select(pl.col("code").unique()).collect(engine="streaming")
        matched = codes.filter(pl.any_horizontal([code_rules[n].code_expr() for n in names]))["code"].to_list()
        kinds.append("hits")
        queries.append(_rule_rows(lf.filter(pl.col("code").is_in(matched)), code_rules))
    kinds += ["end", "dead"]
    queries.append(lf.group_by("subject_id").agg(pl.col("time").max().alias("record_end")))
    queries.append(lf.filter(pl.col("code") == DEATH_CODE).select("subject_id").unique())
    if need_start:
        kinds.append("start")
        queries.append(lf.filter(pl.col("code") != "MEDS_BIRTH").group_by("subject_id")
                       .agg(pl.col("time").min().alias("record_start")))
    if any_event:
        kinds.append("any")
        queries.append(lf.select("subject_id", "time", "numeric_value"))
    return dict(zip(kinds, pl.collect_all(queries, engine="streaming")))


# how the batches' bounds combine (a subject may span batches of its shard)
_COMBINE = {
    "end": lambda df: df.group_by("subject_id").agg(pl.col("record_end").max()),
    "start": lambda df: df.group_by("subject_id").agg(pl.col("record_start").min()),
    "any": lambda df: df,
}


def _kdigo_aki(cr: pl.DataFrame, rule) -> pl.DataFrame:
    """AKI events: creatinine rise >= abs_rise within abs_window, or >= rel_rise x min within rel_window."""
    cr = cr.drop_nulls("numeric_value").sort("subject_id", "time")
    if cr.height == 0:
        return cr
    def prior_min(period: str) -> pl.Series:
        return (cr.rolling(index_column="time", period=period, closed="left", group_by="subject_id")
                .agg(pl.col("numeric_value").min().alias("m"))["m"])
    # rolling() keeps the input order within groups; cr is sorted by (subject_id, time) already.
    cr = cr.with_columns(prior_min(rule.abs_window.replace("min", "m")).alias("min_abs"),
                         prior_min(rule.rel_window.replace("min", "m")).alias("min_rel"))
    hit = (((pl.col("numeric_value") - pl.col("min_abs")) >= rule.abs_rise - 1e-6).fill_null(False)
           | ((pl.col("numeric_value") / pl.col("min_rel")) >= rule.rel_rise - 1e-6).fill_null(False))
    return cr.filter(hit).select("subject_id", "time", "numeric_value")


def _neutropenic_fever(anc: pl.DataFrame, temp: pl.DataFrame, rule) -> pl.DataFrame:
    """Events where ANC < anc_max and temperature >= temp_min lie within `within` of each other."""
    tol = to_timedelta(parse_duration(rule.within))
    low = anc.filter(pl.col("numeric_value") < rule.anc_max).select("subject_id", "time").sort("subject_id", "time")
    fev = temp.filter(pl.col("numeric_value") >= rule.temp_min).select("subject_id", "time").sort("subject_id", "time")
    # A pair is timed at its later member: for each fever, the latest low ANC at or before it
    # within tol; for each low ANC, the latest fever at or before it within tol.
    a = (fev.join_asof(low.with_columns(pl.col("time").alias("t_other")), on="time", by="subject_id",
                       strategy="backward", tolerance=tol, check_sortedness=False).filter(pl.col("t_other").is_not_null()))
    b = (low.join_asof(fev.with_columns(pl.col("time").alias("t_other")), on="time", by="subject_id",
                       strategy="backward", tolerance=tol, check_sortedness=False).filter(pl.col("t_other").is_not_null()))
    ev = pl.concat([a.select("subject_id", "time"), b.select("subject_id", "time")]).unique().sort("subject_id", "time")
    return ev.with_columns(pl.lit(None, dtype=pl.Float32).alias("numeric_value"))


def predicate_events(task: TaskSpec, cohort: Cohort, rules,
                     files: list[Path] | None = None) -> tuple[dict[str, pl.DataFrame], pl.DataFrame]:
    """Events (subject_id, time, numeric_value) of every predicate the task reads, plus record bounds.

    Args:
        task: the task spec.
        cohort: the cohort.
        rules: the resolved rules (`_resolve_rules`).
        files: read only these shards (default: all).
    """
    code_rules = {n: r for n, r in rules.items() if isinstance(r, DatasetRule)}
    events, bounds = _scan_predicates(cohort, code_rules, need_start="_record_start" in rules, files=files,
                                      any_event="_any_event" in rules)
    if "_record_start" in rules:
        events["_record_start"] = (bounds.select("subject_id", pl.col("record_start").alias("time"),
                                                 pl.lit(None, dtype=pl.Float32).alias("numeric_value"))
                                   .drop_nulls("time"))
    pending = {n: r for n, r in rules.items() if isinstance(r, DerivedRule)}
    while pending:
        progressed = False
        for n, r in list(pending.items()):
            if not all(i in events for i in r.inputs()):
                continue
            if r.of is not None:
                e = events[r.of]
                v = pl.col("numeric_value")
                if r.value_min is not None:
                    e = e.filter((v >= r.value_min) if r.value_min_inclusive else (v > r.value_min))
                if r.value_max is not None:
                    e = e.filter((v <= r.value_max) if r.value_max_inclusive else (v < r.value_max))
            elif r.any_of_predicates is not None:
                e = pl.concat([events[i] for i in r.any_of_predicates]).sort("subject_id", "time")
            elif r.kdigo_aki is not None:
                e = _kdigo_aki(events[r.kdigo_aki.creatinine], r.kdigo_aki)
            else:
                nf = r.neutropenic_fever
                e = _neutropenic_fever(events[nf.anc], events[nf.temperature], nf)
            events[n] = e.cast(_EVENTS_SCHEMA)
            del pending[n]
            progressed = True
        if not progressed:
            raise UserError(f"task predicates form a cycle or use unknown names: {sorted(pending)}",
                            field="predicates", fix="each task predicate must build on defined names")
    return events, bounds
