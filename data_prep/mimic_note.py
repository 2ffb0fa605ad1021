"""MIMIC-IV-Note 2.2 -> note events (with their text) and the `note` sidecar of a MIMIC-IV MEDS cohort.

Input: the MIMIC-IV-Note folder as PhysioNet publishes it (`--raw` may be the version folder or its
`note/` subfolder):

    note/discharge.csv.gz   note_id, subject_id, hadm_id, note_type (DS), note_seq, charttime, storetime, text
    note/radiology.csv.gz   the same columns (note_type RR or AR)
    note/*_detail.csv.gz    note_id, subject_id, field_name, field_value, field_ordinal (not needed here)

When a note becomes visible. A model may read a note only from its `time` on, so `time` is when the
note EXISTED, never earlier:
* `storetime` (when the note was stored, usually signed) when present;
* otherwise `charttime`, except a date-only charttime (a bare `YYYY-MM-DD`, or a discharge note's
  midnight charttime: discharge summaries are charted at the date level), which is read as the end of
  that day (23:59:59), because the note may have been written at any time that day;
* and never before `charttime` itself (a storetime before the charttime is a data error; the later wins).
The sidecar keeps the raw `charttime` and `storetime` next to `time`.

Output (one transaction, rolled back on any error):
* MEDS events `NOTE//DISCHARGE` and `NOTE//RADIOLOGY` at `time` with the note text in `text_value`
  (the column the text encoder, encoders/text.py, reads; its note codes come from the dataset
  profile), merged into each subject's shard; earlier events of those codes are replaced.
* `modalities/note.parquet` (subject_id, time, note_id, note_type, hadm_id, charttime, storetime,
  embedding) when a precomputed embeddings file (note_id -> embedding) is given. A sidecar row needs
  an embedding or a file path (benchmark/data/integrity.py), and the text already lives in the
  events, so without embeddings no sidecar is written.
Notes of subjects the cohort does not have are dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from benchmark.errors import UserError
from data_prep.meds_merge import CohortEdit, add_code_metadata, merge_events, raw_file, read_csv, run_edit, \
    subject_shards

NOTE_FILES = {"discharge": "discharge.csv.gz", "radiology": "radiology.csv.gz"}
NOTE_CODES = {"discharge": "NOTE//DISCHARGE", "radiology": "NOTE//RADIOLOGY"}
DATE_ONLY_MIDNIGHT = ("discharge",)  # note types whose midnight charttime means "that date"
_COLS = {"note_id": pl.String, "subject_id": pl.Int64, "hadm_id": pl.Int64, "note_type": pl.String,
         "note_seq": pl.Int64, "charttime": pl.String, "storetime": pl.String, "text": pl.String}
_FIX_RAW = "use the unmodified file from PhysioNet MIMIC-IV-Note 2.2"


@dataclass
class NoteSummary:
    """What `prepare_mimic_note` linked and dropped, per note type."""

    notes_linked: dict[str, int] = field(default_factory=dict)
    dropped_unknown_subject: dict[str, int] = field(default_factory=dict)
    time_from_storetime: dict[str, int] = field(default_factory=dict)
    time_end_of_day: dict[str, int] = field(default_factory=dict)
    dropped_no_embedding: int = 0
    sidecar_written: bool = False
    shards_rewritten: list[str] = field(default_factory=list)


def _parse_time(col: str) -> tuple[pl.Expr, pl.Expr]:
    """(datetime, date_only flag) of a MIMIC time column 'YYYY-MM-DD HH:MM:SS' or 'YYYY-MM-DD'."""
    s = pl.col(col).str.strip_chars()
    full = s.str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_unit="us")
    date = s.str.to_datetime("%Y-%m-%d", strict=False, time_unit="us")
    return pl.coalesce(full, date), date.is_not_null()


def note_times(df: pl.DataFrame, note_type: str, path: Path) -> pl.DataFrame:
    """Add `time` (when the note existed; see the module docstring) and the source flags.

    Raises:
        UserError: a charttime missing or unparseable, or a storetime unparseable (file and column named).
    """
    chart, chart_date_only = _parse_time("charttime")
    store, _ = _parse_time("storetime")
    df = df.with_columns(chart.alias("_chart"), chart_date_only.alias("_date_only"), store.alias("_store"))
    for col, parsed in (("charttime", "_chart"), ("storetime", "_store")):
        bad = df.filter(pl.col(col).is_not_null() & (pl.col(col).str.strip_chars() != "") & pl.col(parsed).is_null())
        if bad.height:
            raise UserError(f"{bad.height} values are not 'YYYY-MM-DD HH:MM:SS' (e.g. {bad[col][0]!r})",
                            file=path, field=col, fix=_FIX_RAW)
    if df["_chart"].null_count():
        raise UserError(f"{df['_chart'].null_count()} notes have no charttime", file=path, field="charttime",
                        fix=_FIX_RAW + " (charttime is NOT NULL there)")
    midnight = pl.col("_chart") == pl.col("_chart").dt.truncate("1d")
    date_only = pl.col("_date_only") | (midnight if note_type in DATE_ONLY_MIDNIGHT else pl.lit(False))
    end_of_day = pl.col("_chart").dt.truncate("1d") + pl.duration(hours=23, minutes=59, seconds=59)
    chart_visible = pl.when(date_only).then(end_of_day).otherwise(pl.col("_chart"))
    return df.with_columns(
        pl.max_horizontal(pl.coalesce("_store", chart_visible), pl.col("_chart")).alias("time"),
        pl.col("_store").is_not_null().alias("from_storetime"),
        (pl.col("_store").is_null() & date_only).alias("end_of_day"),
    ).drop("_chart", "_date_only", "_store")


def read_notes(raw: Path, note_type: str) -> pl.DataFrame:
    """One note file with its visibility time."""
    folder = raw / "note" if (raw / "note").is_dir() else raw
    path = raw_file(folder, NOTE_FILES[note_type],
                    fix=f"pass --raw the MIMIC-IV-Note folder that holds note/{NOTE_FILES[note_type]} ({_FIX_RAW}), "
                        "or leave this note type out")
    df = read_csv(path, _COLS, fix=_FIX_RAW)
    if df["note_id"].is_duplicated().any():
        raise UserError(f"note_id {df.filter(pl.col('note_id').is_duplicated())['note_id'][0]!r} occurs twice",
                        file=path, field="note_id", fix=_FIX_RAW)
    return note_times(df, note_type, path).with_columns(pl.lit(note_type).alias("source"))


def read_note_embeddings(path: Path) -> pl.DataFrame:
    """note_id -> embedding (Array[float32, d]) from a parquet file."""
    path = Path(path)
    try:
        names = pq.read_schema(path).names
    except Exception as e:  # noqa: BLE001 - not a parquet file
        raise UserError(f"embeddings file is not a readable parquet file ({str(e).splitlines()[0][:200]})",
                        file=path, fix="write it with polars or pyarrow: note_id, embedding") from None
    for col in ("note_id", "embedding"):
        if col not in names:
            raise UserError("required column is missing", file=path, field=col,
                            fix="write one row per note: note_id (string), embedding (list<float32>)")
    df = pl.read_parquet(path, columns=["note_id", "embedding"])
    emb = df["embedding"].cast(pl.List(pl.Float32))
    sizes = emb.list.len().unique().drop_nulls()
    if sizes.len() != 1:
        raise UserError(f"embeddings have {sizes.len()} different lengths (or none)", file=path, field="embedding",
                        fix="use one embedding size for every note")
    return df.select(pl.col("note_id").cast(pl.String),
                     emb.cast(pl.Array(pl.Float32, int(sizes[0]))).alias("embedding")).drop_nulls()


def prepare_mimic_note(raw: str | Path, cohort: str | Path, *, note_types: tuple[str, ...] = ("discharge", "radiology"),
                       embeddings: str | Path | None = None) -> NoteSummary:
    """Add MIMIC-IV-Note notes to a MIMIC-IV MEDS cohort as text events (and a note sidecar with embeddings).

    Args:
        raw: the MIMIC-IV-Note folder (or its note/ subfolder).
        cohort: an existing MEDS cohort built from MIMIC-IV (same subject_ids, same date shift).
        note_types: which files to read ("discharge", "radiology").
        embeddings: optional parquet of precomputed note embeddings (note_id, embedding).

    Returns:
        NoteSummary of linked and dropped notes and how their times were chosen.

    Raises:
        UserError: a missing file or column, a bad value or option, or an integrity error of the result
            (the cohort is left unchanged in every case).
    """
    raw, root = Path(raw), Path(cohort)
    unknown = [t for t in note_types if t not in NOTE_FILES]
    if unknown or not note_types:
        raise UserError(f"unknown note type {unknown[0]!r}" if unknown else "no note type given",
                        field="--note-types", fix=f"use some of: {', '.join(NOTE_FILES)}")
    if not root.is_dir():
        raise UserError("cohort folder not found", file=root, field="--data",
                        fix="build the MIMIC-IV cohort first (python -m benchmark prepare mimic-iv)")
    s = NoteSummary()
    known = subject_shards(root)["subject_id"].implode()
    parts = []
    for t in note_types:
        df = read_notes(raw, t)
        kept = df.filter(pl.col("subject_id").is_in(known))
        s.notes_linked[t], s.dropped_unknown_subject[t] = kept.height, df.height - kept.height
        s.time_from_storetime[t] = int(kept["from_storetime"].sum())
        s.time_end_of_day[t] = int(kept["end_of_day"].sum())
        parts.append(kept.with_columns(pl.lit(NOTE_CODES[t]).alias("code")))
    notes = pl.concat(parts).sort("subject_id", "time", "note_id")
    events = notes.select("subject_id", "time", "code", pl.col("text").alias("text_value"))
    sidecar = None
    if embeddings is not None:
        emb = read_note_embeddings(Path(embeddings))
        with_emb = notes.join(emb, on="note_id", how="inner").sort("subject_id", "time", "note_id")
        s.dropped_no_embedding = notes.height - with_emb.height
        sidecar = with_emb.select("subject_id", "time", "note_id", "note_type", "hadm_id", "charttime",
                                  "storetime", "embedding")
    codes = [NOTE_CODES[t] for t in note_types]

    def build(edit: CohortEdit) -> None:
        s.shards_rewritten = merge_events(edit, root, events, pl.col("code").is_in(codes), add_text_value=True)
        add_code_metadata(edit, root, {NOTE_CODES[t]: f"MIMIC-IV-Note {t} note (text in text_value)"
                                       for t in note_types})
        if sidecar is not None:
            edit.stage(root / "modalities" / "note.parquet", lambda tmp: sidecar.write_parquet(tmp))

    run_edit(root, build)
    s.sidecar_written = sidecar is not None
    return s


__all__ = ["prepare_mimic_note", "NoteSummary", "NOTE_CODES", "NOTE_FILES"]
