"""The bag-of-events featurizer as it was before issue 19 (one shard after another, every shard's
counts concatenated in memory before the vocabulary): the oracle the shard-parallel featurizer
(benchmark.features.bag_of_events) must match matrix for matrix. Test-only; not imported by the package.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp

from benchmark.data.leakage import demographic_rows, visible_events, with_input_window
from benchmark.features.bag_of_events import (EXTENDED, PAPER_B1, BagOfEvents, _demographic_prefixes, _truncation,
                                              demographic_columns, normalize_code)
from benchmark.model_api import TaskData
from benchmark.vocabulary import SPLITS


def _shard_counts(cohort, samples: pl.DataFrame, numeric: bool) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per shard: (row, code) counts and last numeric values of visible events; concatenated."""
    counts, firsts = [], []
    truncate = _truncation(cohort)
    for f in cohort.data_files():
        # Cohort.scan checks the shard's columns and drops null-time rows that are not static facts
        ev = cohort.scan(("subject_id", "time", "code", "numeric_value"), files=[f])
        # the task's input window (an input_start column of `samples`) hides rows before it, except
        # demographic codes; the join takes the sample's row number
        vis = (visible_events(ev, samples.lazy(), window_exempt=demographic_rows(cohort))
               .join(samples.lazy().drop("input_start", strict=False), on=["subject_id", "prediction_time"])
               .with_columns(normalize_code(pl.col("code"), truncate).alias("code")))
        aggs = [pl.len().alias("n")]
        if numeric:
            aggs.append(pl.col("numeric_value").sort_by("time").drop_nulls().last().alias("last"))
        q1 = vis.filter(pl.col("code") != "MEDS_BIRTH").group_by("row", "code").agg(aggs)
        q2 = (vis.filter(pl.col("time").is_not_null() & (pl.col("code") != "MEDS_BIRTH"))
              .group_by("row").agg(pl.col("time").min().alias("first_time")))
        c, fi = pl.collect_all([q1, q2])
        counts.append(c)
        firsts.append(fi)
    return pl.concat(counts), pl.concat(firsts)


def build_serial(data: TaskData, min_subject_frac: float = 0.01, feature_set: str = PAPER_B1) -> BagOfEvents:
    """Compute the features of every split (see `featurize`)."""
    splits = SPLITS
    extended = feature_set == EXTENDED
    numeric = extended
    samples = data.labels.select("subject_id", "prediction_time", "split").with_row_index("row")
    # the task's input window (if any) travels as an input_start column the guard reads
    guarded = with_input_window(samples.select("row", "subject_id", "prediction_time"), data.task.input_lookback_s())
    counts, firsts = _shard_counts(data.cohort, guarded, numeric)
    if not extended:  # B.1 counts medical codes; gender and ethnicity come in as demographics below
        prefixes = _demographic_prefixes(data.cohort)
        if prefixes:
            counts = counts.filter(~pl.any_horizontal([pl.col("code").str.starts_with(p) for p in prefixes]))
    # vocabulary from training subjects only
    train_rows = samples.filter(pl.col("split") == "train")
    n_train_subjects = max(train_rows["subject_id"].n_unique(), 1)
    vocab = (counts.join(train_rows.select("row", "subject_id"), on="row")
             .group_by("code").agg(pl.col("subject_id").n_unique().alias("k"),
                                   pl.col("last").is_not_null().any().alias("numeric") if numeric else pl.lit(False).alias("numeric"))
             .filter(pl.col("k") >= min_subject_frac * n_train_subjects).sort("code"))
    codes = vocab["code"].to_list()
    names = [f"count:{c}" for c in codes]
    # explicit schema: a task whose input window shows no timed event (W = 0) has an empty vocabulary
    code_idx = pl.DataFrame({"code": codes, "col": np.arange(len(codes), dtype=np.int64)},
                            schema={"code": pl.String, "col": pl.Int64})
    m = counts.join(code_idx, on="code", how="inner")
    rows = [m["row"].to_numpy()]
    cols = [m["col"].to_numpy()]
    vals = [m["n"].to_numpy().astype(np.float32)]
    if numeric:
        num_codes = vocab.filter(pl.col("numeric"))["code"].to_list()
        num_idx = pl.DataFrame({"code": num_codes, "col": np.arange(len(num_codes), dtype=np.int64) + len(names)},
                               schema={"code": pl.String, "col": pl.Int64})
        names += [f"last:{c}" for c in num_codes]
        mn = counts.drop_nulls("last").join(num_idx, on="code", how="inner")
        rows.append(mn["row"].to_numpy())
        cols.append(mn["col"].to_numpy())
        vals.append(mn["last"].to_numpy().astype(np.float32))

    # demographics: sex, ages, race and ethnicity one-hot (categories from the training split), the
    # featurizer's own helper (unchanged logic; what the oracle checks is the counting and assembly)
    demo = data.cohort.demographics()
    s = (samples.join(demo, on="subject_id", how="left").join(firsts, on="row", how="left").sort("row"))
    dense_cols = demographic_columns(s, extended)
    base = len(names)
    for j, (n, v) in enumerate(dense_cols):
        nz = np.nonzero(v)[0]
        rows.append(nz)
        cols.append(np.full(len(nz), base + j))
        vals.append(v[nz])
        names.append(n)
    X_all = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(samples.height, len(names)), dtype=np.float32)
    split_arr = samples["split"].to_numpy()
    X = {sp_: X_all[np.nonzero(split_arr == sp_)[0]] for sp_ in splits}
    return BagOfEvents(X, names)
