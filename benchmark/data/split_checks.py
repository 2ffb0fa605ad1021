"""Subject-split checks: readable, both SubjectSplitSchema columns, each subject listed once and in
one split, every subject with data has a split, a `train` and a `held_out` split exist.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa

from benchmark.data.findings import Collector, is_string, read_footer, short_error
from benchmark.vocabulary import REQUIRED_SPLITS, SPLITS

def check_splits(c: Collector, root: Path, data_subjects: pl.DataFrame) -> None:
    """Subject splits: readable, SubjectSplitSchema columns, disjoint and unique, complete, train + held_out."""
    sp = root / "metadata" / "subject_splits.parquet"
    fix_schema = "write metadata/subject_splits.parquet with columns subject_id (int64), split (string)"
    if not sp.exists():
        c.error(sp, None, "subject splits file is missing", fix_schema)
        return
    schema = read_footer(c, sp, "subject splits file")
    if schema is None:
        return
    missing = [col for col in ("subject_id", "split") if col not in schema.names]
    for col in missing:
        c.error(sp, col, "required column is missing", "SubjectSplitSchema: subject_id int64, split string")
    if missing:
        return
    if not pa.types.is_integer(schema.field("subject_id").type):
        c.error(sp, "subject_id", f"has type {schema.field('subject_id').type}", "cast subject_id to int64")
        return
    if not is_string(schema.field("split").type):
        c.error(sp, "split", f"has type {schema.field('split').type}", "store split names as strings")
        return
    try:
        splits = pl.read_parquet(sp, columns=["subject_id", "split"]).with_columns(pl.col("subject_id").cast(pl.Int64),
                                                                                 pl.col("split").cast(pl.String))
    except Exception as e:  # noqa: BLE001
        c.error(sp, None, f"cannot be read ({short_error(e)})", fix_schema)
        return
    if splits["subject_id"].null_count() or splits["split"].null_count():
        c.error(sp, "split", "some rows have no subject_id or no split", "give every row a subject_id and a split")
    per = splits.group_by("subject_id").agg(pl.col("split").n_unique().alias("k"), pl.len().alias("n"),
                                            pl.col("split").unique().sort().alias("names"))
    two = per.filter(pl.col("k") > 1).sort("subject_id")
    if two.height:
        ex = two.row(0, named=True)
        c.error(sp, "split", f"{two.height} subjects are in more than one split (e.g. subject {ex['subject_id']} "
                f"in {', '.join(ex['names'])}); a subject in train and held_out inflates every test metric",
                "give each subject exactly one split")
    dup = per.filter((pl.col("k") == 1) & (pl.col("n") > 1)).sort("subject_id")
    if dup.height:
        c.error(sp, "subject_id", f"{dup.height} subjects are listed more than once in the same split "
                f"(e.g. subject {dup['subject_id'][0]})", "deduplicate the rows (one row per subject)")
    names = set(splits["split"].drop_nulls().unique().to_list())
    for need in REQUIRED_SPLITS:
        if need not in names:
            c.error(sp, "split", f"no subject is in the {need!r} split (splits present: {sorted(names) or 'none'})",
                    f"assign subjects to {', '.join(SPLITS)}; models train on 'train' and are "
                    "scored on 'held_out'")
    if "tuning" not in names and names:
        c.warn(sp, "split", "no 'tuning' split; thresholds and early stopping have no validation data",
               "assign some subjects to 'tuning'")
    odd = names - set(SPLITS)
    if odd:
        c.warn(sp, "split", f"non-standard split names {sorted(odd)}; their subjects are not used",
               "use train, tuning and held_out so the benchmark knows which to train and test on")
    no_split = data_subjects.join(splits.select("subject_id"), on="subject_id", how="anti")
    if no_split.height:
        c.error(sp, "subject_id", f"{no_split.height} subjects in data/ have no split "
                f"(e.g. {no_split['subject_id'].min()})", "add them to subject_splits.parquet")
