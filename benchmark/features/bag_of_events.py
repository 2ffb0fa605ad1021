"""Bag-of-events features (MEHRT paper, OpenReview ywFxZhMnuB, appendix B.1), streamed over shards with polars.

For each sample (subject, prediction time): counts of each code seen before the prediction time
(through the leakage guard), for codes present in >= 1% of training subjects, with ICD-10-CM/PCS
codes truncated to their first three characters (ICD10CM/C34.90 -> ICD10CM/C34; which code families are
truncated, and to how many characters, comes from the cohort's dataset profile, `hierarchy.truncate`,
e.g. DIAGNOSIS//ICD//10//C3490 -> DIAGNOSIS//ICD//10//C34 on MIMIC-IV). Two named feature sets:

  * "paper_b1" (the default; what B.1 describes): those counts, plus gender (`sex:F`), age at the
    first event of the visible timeline (`age_at_first_event`) and ethnicity one-hot
    (`ethnicity:<value>`). The demographic codes themselves (the profile's sex / race / ethnicity
    code prefixes, e.g. GENDER/, RACE/, ETHNICITY/) are not counted: B.1 counts medical codes and
    appends the demographics separately. "Ethnicity" is the profile's ethnicity attribute; a
    dataset whose profile records race and ethnicity as one field has no ethnicity attribute
    (MIMIC-IV: `admissions.race`, called `ethnicity` before MIMIC-IV 2.0, with values such as
    HISPANIC/LATINO - PUERTO RICAN; eICU likewise), and there that combined field fills
    `ethnicity:<value>` (only when no training subject has an ethnicity value).
  * "extended" (ours, richer): every visible code counted (demographic codes included), the last
    value before the prediction time of each numeric code in the vocabulary ("last:<code>"; labs
    carry much of the signal), sex, age at the first visible event, age at prediction time, race
    and ethnicity one-hot. This is what every baseline used before the paper's set was the default.

The output is a scipy CSR matrix per split, cached in the task's work folder.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from benchmark.artifacts import atomic_write, cached_artifact, digest
from benchmark.data.leakage import demographic_rows, visible_events, with_input_window
from benchmark.data.profiles import DEFAULT_DEMOGRAPHICS, DEFAULT_TRUNCATE, read_demographics
from benchmark.model_api import TaskData
from benchmark.vocabulary import SPLITS

FEATURIZER_VERSION = "2"  # 2: null-time rows of non-static codes dropped (issue 12)
TRUNCATED_VOCABS = tuple(DEFAULT_TRUNCATE)
PAPER_B1 = "paper_b1"
EXTENDED = "extended"
FEATURE_SETS = (PAPER_B1, EXTENDED)


def normalize_code(code: pl.Expr, truncate: dict[str, int] | None = None) -> pl.Expr:
    """Codes of each truncated family -> prefix + the first n characters of the rest (stopping at a
    dot: ICD10CM/C34.90 -> ICD10CM/C34); other codes unchanged.

    Args:
        code: the code column.
        truncate: code prefix -> characters kept (the profile's hierarchy.truncate; default ICD-10-CM/PCS to 3).
    """
    out = code
    # shortest prefix first: each longer prefix wraps the shorter ones, so the most specific family wins
    for prefix, n in sorted((truncate if truncate is not None else DEFAULT_TRUNCATE).items(),
                            key=lambda kv: len(kv[0])):
        trunc = code.str.extract(f"^({re.escape(prefix)}[^.]{{1,{int(n)}}})", 1)
        out = pl.when(trunc.is_not_null()).then(trunc).otherwise(out)
    return out


def _truncation(cohort) -> dict[str, int]:
    """The cohort's code truncation (its profile's; a cohort object without one gets the default)."""
    return dict(getattr(cohort, "code_truncation", DEFAULT_TRUNCATE))


def _demographic_prefixes(cohort) -> tuple[str, ...]:
    """Code prefixes the cohort's profile reads sex, race and ethnicity from (GENDER/, RACE/, ...)."""
    spec = _demographics_spec(cohort)
    return tuple(sorted({s.code_prefix for attr in ("sex", "race", "ethnicity") for s in getattr(spec, attr)
                         if s.code_prefix}))


def check_feature_set(feature_set: str) -> str:
    """The feature set name, validated (ValueError naming the choices)."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"unknown bag-of-events feature set {feature_set!r}: choose one of {FEATURE_SETS} "
                         f"({PAPER_B1!r} = the MEHRT paper's appendix B.1, {EXTENDED!r} = ours, richer)")
    return feature_set


@dataclass
class BagOfEvents:
    """Sparse features per split and their names."""

    X: dict[str, sp.csr_matrix]
    names: list[str]

    def block(self, split: str) -> sp.csr_matrix:
        """The rows of one split, aligned with TaskData.samples(split)."""
        if not isinstance(split, str):
            raise TypeError("BagOfEvents.block takes one split; use stacked(splits) for several "
                            "(rows split after split, aligned with TaskData.stacked(splits))")
        return self.X[split]

    def stacked(self, splits: tuple[str, ...]) -> sp.csr_matrix:
        """Rows of several splits stacked split after split (all train rows, then all tuning rows),
        aligned with TaskData.stacked(splits), not with TaskData.frame(splits) (label order)."""
        return sp.vstack([self.X[s] for s in splits]).tocsr()


def default_workers(n_shards: int) -> int:
    """Shards featurized at once by default: min(os.cpu_count(), n_shards), at least 1."""
    return max(1, min(os.cpu_count() or 1, n_shards))


def _demographics_spec(cohort):
    """The cohort profile's demographics block (the default one for a cohort without a profile)."""
    profile = getattr(cohort, "profile", None)
    return profile.demographics if profile is not None else DEFAULT_DEMOGRAPHICS


def one_hot_attributes(train_demo: pl.DataFrame, extended: bool) -> list[tuple[str, str, list[str]]]:
    """The one-hot demographic features: (feature prefix, column, categories), categories being the
    sorted non-null values among training samples.

    Args:
        train_demo: race and ethnicity columns of the training samples (any rows of them, duplicates
            allowed: only the set of values matters, so per-shard pieces can be concatenated).
        extended: the "extended" feature set (race and ethnicity) rather than B.1.

    Returns:
        [(name, column, categories)]: extended: race and ethnicity; B.1: ethnicity, or the combined
        race/ethnicity field where no training sample has an ethnicity (MIMIC-IV, eICU; see the module
        docstring).
    """
    pairs = [("race", "race"), ("ethnicity", "ethnicity")] if extended else [
        ("ethnicity", "ethnicity" if train_demo["ethnicity"].drop_nulls().len() else "race")]
    return [(name, col, sorted(v for v in train_demo[col].unique().to_list() if v is not None))
            for name, col in pairs]


def demographic_names(extended: bool, one_hot: list[tuple[str, str, list[str]]]) -> list[str]:
    """The demographic feature names, in `demographic_columns`' order (the matrix's last columns)."""
    return (["sex:F", "age_at_first_event"] + (["age_at_prediction"] if extended else [])
            + [f"{name}:{cat}" for name, _, cats in one_hot for cat in cats])


def demographic_columns(s: pl.DataFrame, extended: bool,
                        one_hot: list[tuple[str, str, list[str]]] | None = None) -> list[tuple[str, np.ndarray]]:
    """The demographic features of some samples: sex, ages, race / ethnicity one-hot.

    Args:
        s: one row per sample: prediction_time, split, first_time (first visible timed event) and
            the cohort's demographics (sex, race, ethnicity, birth_time); nulls where absent.
        extended: the "extended" feature set (adds age at prediction and race) rather than B.1.
        one_hot: `one_hot_attributes` of the task's training samples (default: computed from the
            training rows of `s`, which then must hold all of them).

    Returns:
        [(feature name, float32 values aligned with the rows of s)], NaN (unknown age) as 0.
    """
    values = [(s["sex"] == "F").fill_null(False).to_numpy(),
              ((s["first_time"] - s["birth_time"]).dt.total_days() / 365.25).to_numpy()]
    if extended:
        values.append(((s["prediction_time"] - s["birth_time"]).dt.total_days() / 365.25).to_numpy())
    if one_hot is None:
        one_hot = one_hot_attributes(s.filter(pl.col("split") == "train"), extended)
    values += [(s[col] == cat).fill_null(False).to_numpy() for _, col, cats in one_hot for cat in cats]
    return [(n, np.nan_to_num(np.asarray(v, dtype=np.float32), nan=0.0))
            for n, v in zip(demographic_names(extended, one_hot), values, strict=True)]


@dataclass
class _ShardPart:
    """What one shard leaves in memory after its pass: small per-shard tables; its (row, code)
    counts and its samples' demographics wait on disk until the vocabulary is known."""

    counts_file: Path
    demo_file: Path                # row, prediction_time, split, first_time, sex, race, ethnicity, birth_time
    vocab: pl.DataFrame            # code, k (training subjects with the code), numeric
    train_demo: pl.DataFrame       # distinct race, ethnicity of the shard's training samples


def _shard_pass(cohort, f: Path, samples: pl.DataFrame, train: pl.DataFrame, numeric: bool,
                exclude_prefixes: tuple[str, ...], truncate: dict[str, int], out: Path) -> _ShardPart:
    """One shard's visible events -> (row, code) counts (and last numeric values) and its samples'
    demographics with their first visible time, spilled to `out`.*; the shard's share of the
    vocabulary counts and its training samples' race / ethnicity values stay in memory.

    A subject never spans shards (the integrity checks refuse such a cohort), so per-shard counts of
    training subjects per code add up to the cohort's, and every sample's counts and demographics
    come from one shard. Only the shard's own samples take part (joins of one shard's size, not the
    cohort's; demographics read for them only, not for every subject of the cohort).
    """
    ev = cohort.scan(("subject_id", "time", "code", "numeric_value"), files=[f])
    mine = samples.join(cohort.scan(("subject_id",), files=[f]).unique().collect(), on="subject_id", how="semi")
    keys = mine.drop("split", "input_start", strict=False)
    # the task's input window (an input_start column of `samples`) hides rows before it, except
    # demographic codes; the join takes the sample's row number. Cohort.scan checks the shard's
    # columns and drops null-time rows that are not static facts.
    vis = (visible_events(ev, mine.drop("split").lazy(), window_exempt=demographic_rows(cohort))
           .join(keys.lazy(), on=["subject_id", "prediction_time"])
           .with_columns(normalize_code(pl.col("code"), truncate).alias("code")))
    aggs = [pl.len().alias("n")]
    if numeric:
        aggs.append(pl.col("numeric_value").sort_by("time").drop_nulls().last().alias("last"))
    q1 = vis.filter(pl.col("code") != "MEDS_BIRTH").group_by("row", "code").agg(aggs)
    q2 = (vis.filter(pl.col("time").is_not_null() & (pl.col("code") != "MEDS_BIRTH"))
          .group_by("row").agg(pl.col("time").min().alias("first_time")))
    counts, firsts = pl.collect_all([q1, q2])
    if exclude_prefixes:  # B.1 counts medical codes; gender and ethnicity come in as demographics
        counts = counts.filter(~pl.any_horizontal([pl.col("code").str.starts_with(p) for p in exclude_prefixes]))
    vocab = (counts.join(train, on="row")
             .group_by("code").agg(pl.col("subject_id").n_unique().alias("k"),
                                   pl.col("last").is_not_null().any().alias("numeric") if numeric
                                   else pl.lit(False).alias("numeric")))
    demo = read_demographics(cohort, _demographics_spec(cohort), files=[f], subjects=mine.select("subject_id").unique())
    rows = (mine.select("row", "subject_id", "prediction_time", "split")
            .join(demo, on="subject_id", how="left").join(firsts, on="row", how="left").drop("subject_id"))
    # spilled, so memory holds one shard's counts per worker, not the whole cohort's until the vocabulary is known
    counts_file, demo_file = out.with_suffix(".counts.parquet"), out.with_suffix(".demo.parquet")
    counts.write_parquet(counts_file, compression="lz4", statistics=False)
    rows.write_parquet(demo_file, compression="lz4", statistics=False)
    train_demo = rows.filter(pl.col("split") == "train").select("race", "ethnicity").unique()
    return _ShardPart(counts_file, demo_file, vocab, train_demo)


def _shard_entries(part: _ShardPart, code_idx: pl.DataFrame, num_idx: pl.DataFrame | None,
                   one_hot: list[tuple[str, str, list[str]]], extended: bool, out: Path
                   ) -> tuple[Path, np.ndarray, np.ndarray]:
    """One shard's matrix entries: counts of vocabulary codes, last values of numeric vocabulary
    codes, then its samples' demographic features; sorted by (sample row, column) and spilled to
    `out` (.npz of row int32, col int32, value float32).

    Returns:
        (out, rows with entries, number of entries of each of those rows).
    """
    counts = pl.read_parquet(part.counts_file)
    m = counts.join(code_idx, on="code", how="inner")
    rows, cols, vals = [m["row"].to_numpy()], [m["col"].to_numpy()], [m["n"].to_numpy().astype(np.float32)]
    if num_idx is not None:
        mn = counts.drop_nulls("last").join(num_idx, on="code", how="inner")
        rows.append(mn["row"].to_numpy())
        cols.append(mn["col"].to_numpy())
        vals.append(mn["last"].to_numpy().astype(np.float32))
    del counts, m
    demo = pl.read_parquet(part.demo_file)
    base = len(code_idx) + (len(num_idx) if num_idx is not None else 0)
    demo_rows = demo["row"].to_numpy()
    for j, (_, v) in enumerate(demographic_columns(demo, extended, one_hot)):
        nz = np.nonzero(v)[0]
        rows.append(demo_rows[nz])
        cols.append(np.full(len(nz), base + j))
        vals.append(v[nz])
    r, c, v = (np.concatenate(rows).astype(np.int32), np.concatenate(cols).astype(np.int32),
               np.concatenate(vals).astype(np.float32))
    order = np.lexsort((c, r))
    r, c, v = r[order], c[order], v[order]
    np.savez(out, row=r, col=c, val=v)
    part.counts_file.unlink(missing_ok=True)
    part.demo_file.unlink(missing_ok=True)
    nz_rows, n_per_row = np.unique(r, return_counts=True)
    return out, nz_rows, n_per_row


def _assemble(pieces: list[tuple[Path, np.ndarray, np.ndarray]], split_of_row: np.ndarray,
              n_cols: int) -> dict[str, sp.csr_matrix]:
    """Per split, the CSR matrix of the spilled shard entries, rows in sample order (the same
    matrices as slicing one all-samples matrix), written in place: the output arrays are
    allocated once at their final size and each shard's entries land in their rows, one shard in
    memory at a time (so the peak is the output plus one shard, not the entries several times over).

    Args:
        pieces: per shard (entries file sorted by row then column, its rows, entries per row).
        split_of_row: each sample row's split as its index in SPLITS (int8; -1: none).
        n_cols: number of features.
    """
    n = len(split_of_row)
    row_nnz = np.zeros(n, dtype=np.int64)
    for _, nz_rows, n_per_row in pieces:  # a sample's entries all come from its subject's shard
        row_nnz[nz_rows] = n_per_row
    code = split_of_row
    start = np.zeros(n, dtype=np.int64)  # where each row's entries begin in its split's arrays
    out: dict[str, tuple] = {}
    for k, split in enumerate(SPLITS):
        idx = np.nonzero(code == k)[0]
        indptr = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(row_nnz[idx], out=indptr[1:])
        start[idx] = indptr[:-1]
        nnz = int(indptr[-1])
        out[split] = (np.empty(nnz, dtype=np.float32), np.empty(nnz, dtype=np.int32), indptr)
    del row_nnz
    for f, _, _ in pieces:
        with np.load(f) as z:
            r, c, v = z["row"], z["col"], z["val"]
        # entry i's place in its row: i minus the index of the row's first entry (entries are sorted by row)
        dest = start[r] + (np.arange(len(r)) - np.searchsorted(r, r, side="left"))
        kk = code[r]
        for k, split in enumerate(SPLITS):
            m = kk == k
            data, indices, _ = out[split]
            data[dest[m]] = v[m]
            indices[dest[m]] = c[m]
        f.unlink(missing_ok=True)
    X = {}
    for split, (data, indices, indptr) in out.items():
        if indptr[-1] < np.iinfo(np.int32).max:
            indptr = indptr.astype(np.int32)
        X[split] = sp.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, n_cols), copy=False)
        X[split].has_sorted_indices = True
    return X


def _map_shards(fn, items: list, workers: int) -> list:
    """fn over items, `workers` at a time, results in item order. Threads, not processes: each
    shard's work runs inside polars (Rust, GIL released), so threads run shards in parallel without
    starting interpreters or copying results between processes; memory is one shard per worker."""
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bag-of-events") as pool:
        return list(pool.map(fn, items))


def featurize(data: TaskData, *, feature_set: str = PAPER_B1, min_subject_frac: float = 0.01,
              workers: int | None = None) -> BagOfEvents:
    """Build (or load) bag-of-events features for every split of the task.

    Args:
        data: the task's samples; only events with time <= prediction time are read.
        feature_set: "paper_b1" (MEHRT paper appendix B.1: counts, gender, age at first event,
            ethnicity) or "extended" (ours: adds last numeric values, age at prediction, race and
            counts of the demographic codes); see the module docstring.
        min_subject_frac: keep codes present in at least this fraction of training subjects.
        workers: shards featurized at once (None: min(os.cpu_count(), number of shards)); the
            matrices do not depend on it.

    Returns:
        BagOfEvents with CSR matrices for train, tuning and held_out, rows in label order.
    """
    check_feature_set(feature_set)
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    # "extended" keeps the key of the features it replaces (numeric=True), so existing caches stay valid
    parts = [FEATURIZER_VERSION, min_subject_frac, True if feature_set == EXTENDED else feature_set,
             data.labels.select("subject_id", "prediction_time").hash_rows().sum()]
    truncate = _truncation(data.cohort)
    if truncate != DEFAULT_TRUNCATE:  # another profile's hierarchy gives other features (default: key as before)
        parts.append(sorted(truncate.items()))
    if data.task.input_window is not None:  # the task's input window changes what is visible (default: as before)
        parts.append(["input_window_s", data.task.input_lookback_s()])
    if feature_set == PAPER_B1:  # the excluded demographic codes depend on the profile
        parts.append(_demographic_prefixes(data.cohort))
    key = digest(parts, n=12)
    cache = data.work_dir / f"bag_of_events-{key}.npz"
    # Concurrent runs on one cache: one builds the features, the others wait and read its files.
    return cached_artifact(cache, lambda: _build(data, min_subject_frac, feature_set, workers), read=_read_cache,
                           write=lambda tmp, bag: _write_cache(cache, tmp, bag), suffix=".npz")


def _read_cache(cache: Path) -> BagOfEvents:
    """Load cached features (the names JSON is written before the .npz, so it is there)."""
    with np.load(cache, allow_pickle=False) as z:
        X = {s: sp.csr_matrix((z[f"{s}_data"], z[f"{s}_indices"], z[f"{s}_indptr"]), shape=tuple(z[f"{s}_shape"]))
             for s in SPLITS}
    return BagOfEvents(X, json.loads(cache.with_suffix(".json").read_text()))


def _write_cache(cache: Path, tmp: Path, bag: BagOfEvents) -> None:
    """Store features: the names JSON first, then the .npz (written to `tmp`, renamed onto `cache`
    last by cached_artifact, so its presence marks a complete entry)."""
    payload = {}
    for s in SPLITS:
        x = bag.X[s]
        payload.update({f"{s}_data": x.data, f"{s}_indices": x.indices, f"{s}_indptr": x.indptr,
                        f"{s}_shape": np.array(x.shape)})
    atomic_write(cache.with_suffix(".json"), json.dumps(bag.names))
    np.savez(tmp, **payload)


def _build(data: TaskData, min_subject_frac: float, feature_set: str, workers: int | None) -> BagOfEvents:
    """Compute the features of every split (see `featurize`).

    Two passes over per-shard results, `workers` shards at a time: (1) each shard's visible events
    are counted per (row, code) and spilled to a temp file with its samples' demographics, keeping
    in memory only its vocabulary counts and its training samples' race / ethnicity values; (2) once
    the vocabulary and the one-hot categories are known, each shard's counts and demographics become
    matrix entries, spilled again; they are then written in place into the per-split CSR arrays.
    Memory holds the shards in flight and the output, not all counts, entries or subjects at once.
    """
    extended = feature_set == EXTENDED
    numeric = extended
    cohort = data.cohort
    samples = data.labels.select("subject_id", "prediction_time", "split").with_row_index("row")
    # the task's input window (if any) travels as an input_start column the guard reads
    guarded = with_input_window(samples, data.task.input_lookback_s())
    files = cohort.data_files()
    cohort.scan()  # footer checks, schemas and the null-time rule, computed once before the workers share them
    # vocabulary from training subjects only
    train_rows = samples.filter(pl.col("split") == "train").select("row", "subject_id")
    n_train_subjects = max(train_rows["subject_id"].n_unique(), 1)
    exclude = () if extended else _demographic_prefixes(cohort)
    truncate = _truncation(cohort)
    n_workers = default_workers(len(files)) if workers is None else workers
    Path(data.work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data.work_dir, prefix=".bag_of_events-shards-") as tmp:
        parts = _map_shards(lambda job: _shard_pass(cohort, job[1], guarded, train_rows, numeric, exclude, truncate,
                                                    Path(tmp) / f"{job[0]}"),
                            list(enumerate(files)), n_workers)
        vocab = (pl.concat([p.vocab for p in parts]).group_by("code")
                 .agg(pl.col("k").sum(), pl.col("numeric").any())
                 .filter(pl.col("k") >= min_subject_frac * n_train_subjects).sort("code"))
        one_hot = one_hot_attributes(pl.concat([p.train_demo for p in parts]), extended)
        codes = vocab["code"].to_list()
        names = [f"count:{c}" for c in codes]
        # explicit schema: a task whose input window shows no timed event (W = 0) has an empty vocabulary
        code_idx = pl.DataFrame({"code": codes, "col": np.arange(len(codes), dtype=np.int64)},
                                schema={"code": pl.String, "col": pl.Int64})
        num_idx = None
        if numeric:
            num_codes = vocab.filter(pl.col("numeric"))["code"].to_list()
            num_idx = pl.DataFrame({"code": num_codes, "col": np.arange(len(num_codes), dtype=np.int64) + len(names)},
                                   schema={"code": pl.String, "col": pl.Int64})
            names += [f"last:{c}" for c in num_codes]
        names += demographic_names(extended, one_hot)
        pieces = _map_shards(lambda job: _shard_entries(job[1], code_idx, num_idx, one_hot, extended,
                                                        Path(tmp) / f"{job[0]}.entries.npz"),
                             list(enumerate(parts)), n_workers)
        del parts
        # split codes, not a numpy array of Python strings (~60 bytes a sample)
        split_code = samples["split"].replace_strict({s: k for k, s in enumerate(SPLITS)}, default=-1,
                                                     return_dtype=pl.Int8).to_numpy()
        X = _assemble(pieces, split_code, len(names))
    return BagOfEvents(X, names)
