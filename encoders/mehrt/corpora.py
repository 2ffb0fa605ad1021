"""MEHRT pretraining corpora: the tokenizer fitted on the training split, train and held-out documents.

The pretraining corpus is the *training split's* subjects, each with its whole record (there is no
prediction time in pretraining; the leakage guard is applied with an unbounded one). The tuning
and held-out subjects are never used for pretraining; held-out subjects' records only give the
test perplexity reported per stage. The vocabulary and value bins are fitted on the training
split (one lazy polars query over all its events).

Tokenization is shard-parallel (issue 19): each MEDS data shard (a subject never spans shards) is
tokenized by a worker process, one shard at a time, into its own small corpus; the shards are then
concatenated, in subject order, into one flat on-disk corpus (``tokens.npy`` + ``offsets.npy`` ...,
written through ``np.lib.format.open_memmap`` and opened with ``mmap_mode="r"``), so neither a worker
nor the merging process holds more than one shard's events. The result is identical, array for
array, to tokenizing the whole split at once (`Tokenizer.tokenize`; tested). Corpora are built once
per cohort under ``cache_dir()/mehrt/<fingerprint>/`` and reused.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import current_process, get_context
from pathlib import Path

import numpy as np
import polars as pl

from benchmark.artifacts import atomic_write
from benchmark.parallel import thread_budget
from encoders.mehrt.tokenizer import (IMAGE_MODALITIES, TOKENIZER_VERSION, Corpus, Tokenizer, guarded_inputs,
                                      placeholder, pretraining_documents)

PRS_MODALITY = "prs"


# ====================================================================================== corpora (cached)
def mehrt_cache() -> Path:
    """cache_dir()/mehrt."""
    from benchmark.paths import cache_dir
    return cache_dir() / "mehrt"


@contextmanager
def file_lock(path: Path):
    """An exclusive lock file: concurrent runs wait for the one doing the work."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class Corpora:
    """The tokenizer (fitted on train) and the train / held-out pretraining corpora of a cohort."""

    tokenizer: Tokenizer
    train: Corpus
    held_out: Corpus
    folder: Path


def corpora_folder(cohort, min_subjects: int = 5) -> Path:
    """cache_dir()/mehrt/<fingerprint>/tok-v<version>-k<min_subjects>: where `prepare_corpora` publishes."""
    return mehrt_cache() / cohort.fingerprint() / f"tok-v{TOKENIZER_VERSION}-k{min_subjects}"


def prepare_corpora(cohort, min_subjects: int = 5, workers: int | None = None) -> Corpora:
    """Fit the tokenizer on the training split and tokenize train and held-out records (cached).

    Args:
        cohort: the Cohort.
        min_subjects: rare-token threshold of the tokenizer.
        workers: tokenizer processes, each one shard at a time (default: min(CPUs, shards); the
            cached result does not depend on it).

    Returns:
        Corpora, loaded memory-mapped from cache_dir()/mehrt/<fingerprint>/.
    """
    folder = corpora_folder(cohort, min_subjects)
    done = folder / "done.json"
    if not done.exists():
        with file_lock(folder.with_suffix(".lock")):
            if not done.exists():
                folder.mkdir(parents=True, exist_ok=True)
                train_docs = pretraining_documents(cohort, "train")
                ev, imgs, prs = guarded_inputs(cohort, train_docs, IMAGE_MODALITIES, PRS_MODALITY)
                tok = Tokenizer(min_subjects, hierarchy=cohort.code_truncation).fit(ev.drop("prediction_time"))
                tok.save(folder / "tokenizer.json")
                for split, docs in (("train", train_docs), ("held_out", pretraining_documents(cohort, "held_out"))):
                    tokenize_sharded(cohort, tok, docs, folder / split, workers=workers)
                atomic_write(done, json.dumps({"tokenizer": tok.hash()}, indent=1))
    tok = Tokenizer.load(folder / "tokenizer.json")
    return Corpora(tok, Corpus.load(folder / "train"), Corpus.load(folder / "held_out"), folder)


# ====================================================================================== shard-parallel corpus
def tokenize_sharded(cohort, tok: Tokenizer, docs: pl.DataFrame, out: Path, workers: int | None = None) -> Path:
    """Tokenize pretraining documents shard by shard in worker processes into one on-disk corpus.

    Args:
        cohort: the Cohort.
        tok: the fitted tokenizer.
        docs: subject_id, prediction_time, one document per subject, sorted by subject (the
            output order).
        out: destination folder (a `Corpus.save` layout; replaced atomically).
        workers: processes (default min(thread budget, shards); always 1 in a daemonic process:
            `corpus_workers`); 1 tokenizes in this process. Each worker
            holds one shard's events at a time.

    Returns:
        `out`.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = list(cohort.data_files())
    workers = corpus_workers(workers, len(files))
    parts_dir = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.shards.", suffix=".tmp"))
    try:
        tok_file = parts_dir / "tokenizer.json"
        tok.save(tok_file)
        jobs = [(cohort, f, docs, tok_file, parts_dir / f"part-{i:05d}") for i, f in enumerate(files)]
        if workers == 1:
            parts = [_tokenize_shard(j) for j in jobs]
        else:
            # spawn, not fork: the parent may already run polars / torch threads
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                parts = list(pool.map(_tokenize_shard, jobs))
        # subjects of the split without a single data row (possible in MEDS): their document is the
        # prefix, [EOS] and any sidecar studies, as the one-shot tokenizer makes it
        seen = pl.concat([pl.read_parquet(p / "keys.parquet", columns=["subject_id"]) for p in parts if p is not None]
                         ) if any(p is not None for p in parts) else pl.DataFrame(schema={"subject_id": pl.Int64})
        rest = docs.join(seen, on="subject_id", how="anti", maintain_order="left")
        if rest.height:
            ev, imgs, prs = guarded_inputs(cohort, rest, IMAGE_MODALITIES, PRS_MODALITY, files=files[:1])
            tok.tokenize(ev, rest, imgs, prs, eos=True).save(parts_dir / "part-rest")
            parts.append(parts_dir / "part-rest")
        merge_corpora([Corpus.load(p) for p in parts if p is not None], tok, out)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)
    return out


def corpus_workers(requested: int | None, n_files: int) -> int:
    """Tokenizer processes to use: the request (default: this cell's thread budget,
    benchmark.parallel.thread_budget), at most one per shard, and 1 inside a daemonic process
    (a worker of `run --jobs K` pretraining in its prepare step may not start processes of its own).

    Args:
        requested: the `workers` argument (None: the thread budget).
        n_files: the number of shards.

    Returns:
        A positive process count.
    """
    if current_process().daemon:
        return 1
    return max(1, min(requested or thread_budget(), n_files))


def _tokenize_shard(job) -> Path | None:
    """Worker: the documents of one shard's subjects -> a Corpus folder (None if it has none)."""
    cohort, file, docs, tok_file, dest = job
    ids = cohort.scan(("subject_id",), files=[file]).select("subject_id").unique().collect()
    mine = docs.join(ids, on="subject_id", how="semi", maintain_order="left")
    if mine.height == 0:
        return None
    ev, imgs, prs = guarded_inputs(cohort, mine, IMAGE_MODALITIES, PRS_MODALITY, files=[file])
    Tokenizer.load(tok_file).tokenize(ev, mine, imgs, prs, eos=True).save(dest)
    return dest


def merge_corpora(parts: list[Corpus], tok: Tokenizer, out: Path) -> None:
    """Concatenate shard corpora into one, documents in subject order, streaming into .npy memmaps.

    Image rows are renumbered into the order a one-shot `Tokenizer.tokenize` gives them (modality,
    then document, then the shard's own order: time, study), so the merged arrays are identical to
    tokenizing all documents at once.

    Args:
        parts: shard corpora (disjoint subjects, each sorted by subject).
        tok: the tokenizer (placeholder token ids -> modality).
        out: destination folder (replaced atomically).
    """
    out = Path(out)
    # --- document order: by subject over all shards
    keys = pl.concat([c.keys.with_columns(pl.lit(i, pl.Int32).alias("_s"),
                                          pl.int_range(pl.len(), dtype=pl.Int64).alias("_l"))
                      for i, c in enumerate(parts)]) if parts else None
    if keys is None:
        raise ValueError("no documents to tokenize")
    keys = keys.sort("subject_id", maintain_order=True)
    shard, local = keys["_s"].to_numpy(), keys["_l"].to_numpy()
    D = len(keys)
    lengths = np.concatenate([np.diff(c.offsets) for c in parts])
    base = np.cumsum([0] + [len(c) for c in parts])[:-1]
    doc_len = lengths[base[shard] + local]
    offsets = np.concatenate([[0], np.cumsum(doc_len)]).astype(np.int64)

    # --- image modalities and widths: the union over shards (a shard without studies of a modality
    # read from a list-typed column reports width 0)
    order = {m: k for k, m in enumerate(IMAGE_MODALITIES)}
    dims: dict[str, int] = {}
    for c in parts:
        for m, d in c.image_dims:
            dims[m] = max(dims.get(m, 0), int(d))
    image_dims = tuple(sorted(dims.items(), key=lambda kv: order[kv[0]]))
    width = max(dims.values(), default=0)
    modality_of = {tok.token_id(placeholder(m)): order[m] for m in dims}

    # --- image rows: global row = rank of (modality, global document, shard-local row)
    lut = np.full(tok.vocab_size, -1, np.int64)
    for t, k in modality_of.items():
        lut[t] = k
    global_doc = [np.empty(len(c), np.int64) for c in parts]
    for i in range(len(parts)):
        at_i = np.flatnonzero(shard == i)
        global_doc[i][local[at_i]] = at_i
    row_keys, remaps = [], []
    for i, c in enumerate(parts):
        rows = np.asarray(c.image_rows)
        pos = np.flatnonzero(rows >= 0)
        doc_of_tok = np.searchsorted(np.asarray(c.offsets), pos, side="right") - 1
        m = lut[np.asarray(c.tokens)[pos]]
        r = rows[pos].astype(np.int64)
        row_keys.append(np.stack([m, global_doc[i][doc_of_tok], np.full(len(r), i), r], axis=1))
        remaps.append(np.full(len(c.images), -1, np.int64))
    allk = np.concatenate(row_keys) if row_keys else np.zeros((0, 4), np.int64)
    rank = np.lexsort((allk[:, 3], allk[:, 2], allk[:, 1], allk[:, 0]))
    new_row = np.empty(len(allk), np.int64)
    new_row[rank] = np.arange(len(allk))
    at = 0
    for i, k in enumerate(row_keys):
        remaps[i][k[:, 3]] = new_row[at:at + len(k)]
        at += len(k)
    if any((r < 0).any() for r in remaps):  # every study row has exactly one placeholder token
        raise ValueError("a shard corpus has an image row without its placeholder token")
    n_img = len(allk)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        N = int(offsets[-1])
        tokens = np.lib.format.open_memmap(tmp / "tokens.npy", "w+", np.int32, (N,))
        image_rows = np.lib.format.open_memmap(tmp / "image_rows.npy", "w+", np.int32, (N,))
        images = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.float32, (n_img, width))
        P = max((c.prs.shape[1] for c in parts), default=0)
        prs = np.zeros((D, P), np.float32)
        has_prs = np.zeros(D, bool)
        # copy maximal runs of consecutive documents of one shard (whole shards when shards hold
        # subject ranges, single documents when subjects are spread at random)
        brk = np.flatnonzero((np.diff(shard) != 0) | (np.diff(local) != 1)) + 1
        for a, b in zip(np.r_[0, brk], np.r_[brk, D]):
            c, l0, l1 = parts[shard[a]], local[a], local[b - 1] + 1
            src = slice(int(c.offsets[l0]), int(c.offsets[l1]))
            dst = slice(int(offsets[a]), int(offsets[b]))
            tokens[dst] = c.tokens[src]
            r = np.asarray(c.image_rows[src])
            # index the shard's remap only at image tokens: a shard without any study has an
            # empty remap (np.where would evaluate the lookup everywhere: the MIMIC demo's shards)
            rows = np.full(len(r), -1, np.int64)
            at_image = r >= 0
            rows[at_image] = remaps[shard[a]][r[at_image]]
            image_rows[dst] = rows
            prs[a:b, :c.prs.shape[1]] = c.prs[l0:l1]
            has_prs[a:b] = c.has_prs[l0:l1]
        for i, c in enumerate(parts):
            if len(c.images):
                images[remaps[i], :c.images.shape[1]] = c.images
        for arr in (tokens, image_rows, images):
            arr.flush()
        del tokens, image_rows, images
        np.save(tmp / "offsets.npy", offsets)
        np.save(tmp / "prs.npy", prs)
        np.save(tmp / "has_prs.npy", has_prs)
        keys.select("subject_id", "prediction_time").write_parquet(tmp / "keys.parquet")
        (tmp / "meta.json").write_text(json.dumps({"image_dims": [list(x) for x in image_dims]}))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
