"""MEHRT pretraining corpus tokenized shard by shard in worker processes (issue 19): identical to the
one-shot tokenizer, whatever the shard layout, and memory-mapped on disk."""

from __future__ import annotations

import shutil

import numpy as np
import polars as pl
import pytest

from benchmark.data.cohort import Cohort
from encoders.mehrt.corpora import PRS_MODALITY, prepare_corpora, tokenize_sharded
from encoders.mehrt.tokenizer import IMAGE_MODALITIES, Corpus, Tokenizer, guarded_inputs, pretraining_documents

ARRAYS = ("tokens", "offsets", "image_rows", "images", "prs", "has_prs")


@pytest.fixture(scope="module")
def sharded_cohort(tmp_path_factory) -> Cohort:
    """300 subjects in shards of at most 40 per split (6 training shards), with image / PRS sidecars."""
    from data_prep.synthetic import generate
    return Cohort(generate(tmp_path_factory.mktemp("sh") / "cohort", n_subjects=300, seed=2, images=False,
                           shard_size=40))


def one_shot(cohort: Cohort, split: str = "train") -> tuple[Tokenizer, pl.DataFrame, Corpus]:
    """The tokenizer fitted on train and the corpus of a split tokenized all at once (the pre-issue-19 path)."""
    train = pretraining_documents(cohort, "train")
    ev, _, _ = guarded_inputs(cohort, train, IMAGE_MODALITIES, PRS_MODALITY)
    tok = Tokenizer(5, hierarchy=cohort.code_truncation).fit(ev.drop("prediction_time"))
    docs = pretraining_documents(cohort, split)
    ev, imgs, prs = guarded_inputs(cohort, docs, IMAGE_MODALITIES, PRS_MODALITY)
    return tok, docs, tok.tokenize(ev, docs, imgs, prs, eos=True)


def assert_same(old: Corpus, new: Corpus) -> None:
    for n in ARRAYS:
        a, b = getattr(old, n), np.asarray(getattr(new, n))
        assert a.dtype == b.dtype and a.shape == b.shape, (n, a.dtype, b.dtype, a.shape, b.shape)
        np.testing.assert_array_equal(a, b, err_msg=n)
    assert old.keys.equals(new.keys) and old.image_dims == new.image_dims


@pytest.mark.parametrize("workers", [1, 2])
def test_shard_parallel_corpus_is_identical_to_one_shot(sharded_cohort, tmp_path, workers):
    assert len([f for f in sharded_cohort.data_files() if f.parent.name == "train"]) > 1
    tok, docs, old = one_shot(sharded_cohort)
    assert old.images.shape[0] > 0 and old.prs.shape[1] > 0  # studies and PRS are exercised
    new = Corpus.load(tokenize_sharded(sharded_cohort, tok, docs, tmp_path / "train", workers=workers))
    assert isinstance(new.tokens, np.memmap) and isinstance(new.image_rows, np.memmap)
    assert_same(old, new)
    assert not [p for p in tmp_path.iterdir() if p.name != "train"]  # shard parts cleaned up


def test_subjects_spread_over_shards_and_subjects_without_events(sharded_cohort, tmp_path):
    """Shards need not hold subject ranges (rows re-dealt at random, so documents interleave across
    shards) and a split subject may have no data row at all: the merged corpus is still the one-shot one."""
    root = tmp_path / "cohort"
    shutil.copytree(sharded_cohort.root, root, ignore=shutil.ignore_patterns(".fingerprint"))
    files = sorted((root / "data" / "train").glob("*.parquet"))
    df = pl.concat([pl.read_parquet(f) for f in files])
    subjects = df["subject_id"].unique().sort()
    gone = subjects[3]  # a training subject whose every data row is removed (sidecars kept)
    rng = np.random.default_rng(0)
    deal = pl.DataFrame({"subject_id": subjects, "_f": rng.integers(0, len(files), len(subjects))})
    df = df.filter(pl.col("subject_id") != gone).join(deal, on="subject_id", maintain_order="left")
    for i, f in enumerate(files):
        df.filter(pl.col("_f") == i).drop("_f").write_parquet(f)
    cohort = Cohort(root)
    tok, docs, old = one_shot(cohort)
    assert gone in docs["subject_id"].to_list()
    assert_same(old, Corpus.load(tokenize_sharded(cohort, tok, docs, tmp_path / "train", workers=1)))


def test_prepare_corpora_is_memory_mapped_and_in_subject_order(sharded_cohort, cache):
    corpora = prepare_corpora(sharded_cohort, workers=2)
    assert corpora.train.keys["subject_id"].to_list() == sharded_cohort.subjects("train").sort().to_list()
    assert isinstance(corpora.train.tokens, np.memmap) and isinstance(corpora.held_out.tokens, np.memmap)
    _, _, held = one_shot(sharded_cohort, "held_out")
    assert_same(held, corpora.held_out)


def test_tokenizer_workers_stay_in_process_inside_a_pool_worker():
    """`run --jobs K` pretrains in a daemonic pool worker, which may not start processes: the corpus
    is then tokenized in that process (seen as 'daemonic processes are not allowed to have children'
    before); outside a pool the request holds, capped at one process per shard."""
    from multiprocessing import get_context

    from encoders.mehrt.corpora import corpus_workers

    assert corpus_workers(4, 3) == 3 and corpus_workers(2, 8) == 2 and corpus_workers(1, 8) == 1
    with get_context("spawn").Pool(1) as pool:  # daemonic workers, as benchmark.executors.LocalPool's
        assert pool.apply(corpus_workers, (4, 8)) == 1
