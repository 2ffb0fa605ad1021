"""MEHRT tokenizer: exact token sequences, train-only vocabulary and bins, the time cut, determinism."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pytest

from benchmark.data.cohort import Cohort
from benchmark.data.leakage import visible_events, visible_modality
from encoders.mehrt.tokenizer import (BOS, EOS, PREFIX_LEN, UNK, UNK_ID, Corpus, Tokenizer, guarded_inputs,
                                      pretraining_documents)
from tests.cohort_factory import make_cohort

N_TRAIN = 10
CREAT = "LOINC/2160-0"


def creat_value(s: int) -> float:
    return 0.55 + 0.1 * s  # 0.65 .. 1.55 over the training subjects, away from bin edges for s=5


def write_sidecar(root, name: str, rows: list[tuple], dim: int, id_col: str | None = "study_id") -> None:
    """rows: (subject_id, time str | None, study id, embedding list)."""
    data = {"subject_id": [r[0] for r in rows],
            "time": [datetime.fromisoformat(r[1]) if r[1] else None for r in rows]}
    if id_col:
        data[id_col] = [r[2] for r in rows]
    data["embedding"] = [list(map(float, r[3])) for r in rows]
    schema = {"subject_id": pl.Int64, "time": pl.Datetime("us"), **({id_col: pl.Int64} if id_col else {}),
              "embedding": pl.Array(pl.Float32, dim)}
    (root / "modalities").mkdir(exist_ok=True)
    pl.DataFrame(data, schema=schema).write_parquet(root / "modalities" / f"{name}.parquet")


def hand_cohort(root, shuffle: bool = False) -> Cohort:
    """10 train subjects with the same timeline shape, 2 held-out subjects; CT, WSI and PRS sidecars."""
    events = []
    for s in range(1, N_TRAIN + 3):
        events += [(s, None, "GENDER/F"), (s, None, "RACE/WHITE"), (s, None, "ETHNICITY/HISPANIC"),
                   (s, "1960-01-01", "MEDS_BIRTH"),
                   (s, "2020-01-01 10:00", "ICD10CM/R11.10"),
                   (s, "2020-01-01 10:00", CREAT, creat_value(s)),
                   (s, "2020-01-01 10:02", "RXNORM/123"),           # 2 min later: no time token
                   (s, "2020-01-08 10:02", "ICD10PCS/30233N1")]     # 7 days later
        if s <= 3:
            events.append((s, "2020-01-09", "ICD10CM/Z99.89"))      # rare: 3 train subjects < k = 5
        if s > N_TRAIN:
            events.append((s, "2020-01-09", "HELDOUT/ONLY"))         # never in training
    if shuffle:
        rng = np.random.default_rng(0)
        events = [events[i] for i in rng.permutation(len(events))]
    splits = {s: "train" if s <= N_TRAIN else "held_out" for s in range(1, N_TRAIN + 3)}
    root = make_cohort(root, events, splits=splits)
    ct = []
    for s in range(1, N_TRAIN + 3):
        # two slices of one study at the time of the PCS code: the placeholder carries their mean
        ct += [(s, "2020-01-08 10:02", 100 + s, [s, 0, 2]), (s, "2020-01-08 10:02", 100 + s, [s, 2, 4])]
    write_sidecar(root, "ct", ct, 3)
    write_sidecar(root, "wsi", [(s, "2020-01-05 00:00", 200 + s, [1, s]) for s in range(1, N_TRAIN + 3)], 2,
                  id_col="slide_id")
    write_sidecar(root, "prs", [(s, None, None, [s, -s]) for s in range(1, N_TRAIN + 3)], 2, id_col=None)
    return Cohort(root)


def fit_tokenizer(cohort: Cohort, k: int = 5) -> Tokenizer:
    docs = pretraining_documents(cohort, "train")
    ev, _, _ = guarded_inputs(cohort, docs)
    return Tokenizer(min_subjects=k).fit(ev.drop("prediction_time"))


def tokens_of(tok: Tokenizer, corpus: Corpus, d: int) -> list[str]:
    ids, _ = corpus.doc(d)
    return tok.decode(ids)


def expected_bin(v: float) -> int:
    train = np.array([creat_value(s) for s in range(1, N_TRAIN + 1)], dtype=np.float32)
    edges = np.quantile(train.astype(np.float64), np.arange(1, 10) / 10).astype(np.float32)
    return int(np.searchsorted(edges, np.float32(v), side="right"))


def test_exact_token_sequence_with_images(tmp_path):
    cohort = hand_cohort(tmp_path / "c")
    tok = fit_tokenizer(cohort)
    docs = pretraining_documents(cohort, "train")
    corpus = tok.tokenize(*_inputs(cohort, docs), eos=True)
    s = 5
    got = tokens_of(tok, corpus, s - 1)
    assert got == [BOS, "GENDER/F", "RACE/WHITE", "ETHNICITY/HISPANIC", "AGE//60-64",
                   "ICD10CM/R11", "ICD10CM/10", CREAT, f"[Q{expected_bin(creat_value(s))}]", "RXNORM/123",
                   "[IMG_wsi]",     # 2020-01-05: between the events, no time token of its own
                   "[T_1w-2w]", "ICD10PCS/302", "ICD10PCS/33", "ICD10PCS/N1",
                   "[IMG_ct]",      # after the structured events of its time
                   EOS]
    ids, rows = corpus.doc(s - 1)
    ct_pos = got.index("[IMG_ct]")
    wsi_pos = got.index("[IMG_wsi]")
    assert (rows >= 0).sum() == 2
    # CT: mean of the study's two slices, zero-padded to the widest modality (3); WSI as is
    np.testing.assert_allclose(corpus.images[rows[ct_pos]], [s, 1, 3])
    np.testing.assert_allclose(corpus.images[rows[wsi_pos]], [1, s, 0])
    assert corpus.image_dims == (("ct", 3), ("wsi", 2))
    np.testing.assert_allclose(corpus.prs[s - 1], [s, -s])
    # the rare code's subjects: hierarchy tokens seen in < 5 subjects are [UNK]
    rare = tokens_of(tok, corpus, 0)
    assert rare[-5:] == ["[IMG_ct]", "[T_12h-1d]", UNK, UNK, EOS], rare  # Z99 and 89: 3 subjects
    assert "ICD10CM/Z99" not in tok.vocab


def _inputs(cohort, docs):
    ev, imgs, prs = guarded_inputs(cohort, docs)
    return ev, docs, imgs, prs


def test_value_bins_are_per_code_quantiles_of_the_training_split(tmp_path):
    cohort = hand_cohort(tmp_path / "c")
    tok = fit_tokenizer(cohort)
    row = tok.bins.filter(pl.col("code") == CREAT)
    train = np.array([creat_value(s) for s in range(1, N_TRAIN + 1)])
    np.testing.assert_allclose(row.select(pl.exclude("code")).row(0), np.quantile(train, np.arange(1, 10) / 10),
                               rtol=1e-6)
    # held-out values never move the bins: subjects 11, 12 have larger values than any train subject
    assert tok.bins["code"].to_list() == [CREAT]
    docs = pretraining_documents(cohort, "held_out")
    corpus = tok.tokenize(*_inputs(cohort, docs))
    for d in range(len(corpus)):
        assert "[Q9]" in tokens_of(tok, corpus, d)
        assert "HELDOUT/ONLY" not in tok.vocab and UNK in tokens_of(tok, corpus, d)


def test_timeline_is_cut_at_the_prediction_time(tmp_path):
    cohort = hand_cohort(tmp_path / "c")
    tok = fit_tokenizer(cohort)
    docs = pl.DataFrame({"subject_id": [4, 4], "prediction_time": [datetime(2020, 1, 5), datetime(2020, 1, 1, 10)]},
                        schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us")})
    ev = visible_events(cohort.scan(), docs)
    imgs = {m: visible_modality(cohort.modality(m), docs) for m in ("ct", "wsi")}
    corpus = tok.tokenize(ev, docs, imgs, visible_modality(cohort.modality("prs"), docs))
    first = tokens_of(tok, corpus, 0)
    assert first[PREFIX_LEN:] == ["ICD10CM/R11", "ICD10CM/10", CREAT, f"[Q{expected_bin(creat_value(4))}]",
                                  "RXNORM/123", "[IMG_wsi]"]  # WSI at exactly 01-05 00:00 is visible
    second = tokens_of(tok, corpus, 1)
    assert second[PREFIX_LEN:] == ["ICD10CM/R11", "ICD10CM/10", CREAT, f"[Q{expected_bin(creat_value(4))}]"]
    assert "[IMG_ct]" not in first + second and EOS not in first
    assert corpus.keys["prediction_time"].to_list() == docs["prediction_time"].to_list()


def test_same_timeline_same_tokens_whatever_the_row_order(tmp_path):
    a = hand_cohort(tmp_path / "a")
    b = hand_cohort(tmp_path / "b", shuffle=True)
    tok_a, tok_b = fit_tokenizer(a), fit_tokenizer(b)
    assert tok_a.hash() == tok_b.hash()
    ca = tok_a.tokenize(*_inputs(a, pretraining_documents(a, "train")), eos=True)
    cb = tok_b.tokenize(*_inputs(b, pretraining_documents(b, "train")), eos=True)
    again = tok_a.tokenize(*_inputs(a, pretraining_documents(a, "train")), eos=True)
    for c in (cb, again):
        np.testing.assert_array_equal(ca.tokens, c.tokens)
        np.testing.assert_array_equal(ca.offsets, c.offsets)
        np.testing.assert_array_equal(ca.image_rows, c.image_rows)
        np.testing.assert_array_equal(ca.images, c.images)


def test_corpus_roundtrip_is_memory_mapped_and_tokenizer_roundtrips(tmp_path):
    cohort = hand_cohort(tmp_path / "c")
    tok = fit_tokenizer(cohort)
    corpus = tok.tokenize(*_inputs(cohort, pretraining_documents(cohort, "train")), eos=True)
    corpus.save(tmp_path / "corpus")
    back = Corpus.load(tmp_path / "corpus")
    assert isinstance(back.tokens, np.memmap)
    np.testing.assert_array_equal(back.tokens, corpus.tokens)
    np.testing.assert_array_equal(back.lengths(False), corpus.lengths(False))
    assert (corpus.lengths(True) - corpus.lengths(False)).tolist() == [2] * N_TRAIN
    assert back.keys.equals(corpus.keys) and back.image_dims == corpus.image_dims
    tok.save(tmp_path / "tok.json")
    again = Tokenizer.load(tmp_path / "tok.json")
    assert again.vocab == tok.vocab and again.hash() == tok.hash()


def test_icd_hierarchy_split():
    tok = Tokenizer(min_subjects=1)
    ev = pl.DataFrame({"subject_id": [1, 1, 1, 1], "time": [datetime(2020, 1, d) for d in (1, 2, 3, 4)],
                       "code": ["ICD10CM/C50.911", "ICD10CM/C61", "ICD9CM/250.00", "LOINC/1-8"],
                       "numeric_value": [None] * 4}, schema_overrides={"numeric_value": pl.Float32})
    tok.fit(ev)
    for t in ("ICD10CM/C50", "ICD10CM/91", "ICD10CM/1", "ICD10CM/C61", "ICD9CM/250", "ICD9CM/00", "LOINC/1-8"):
        assert t in tok.vocab, t
    assert "ICD10CM/C50.911" not in tok.vocab


def test_synthetic_cohort_tokenization_is_well_formed(small_cohort):
    docs = pretraining_documents(small_cohort, "train")
    ev, imgs, prs = guarded_inputs(small_cohort, docs)
    tok = Tokenizer().fit(ev.drop("prediction_time"))
    corpus = tok.tokenize(ev, docs, imgs, prs, eos=True)
    n = len(corpus)
    assert n == docs.height
    starts, ends = corpus.offsets[:-1], corpus.offsets[1:] - 1
    assert (np.asarray(corpus.tokens)[starts] == tok.token_id(BOS)).all()
    assert (np.asarray(corpus.tokens)[ends] == tok.token_id(EOS)).all()
    assert np.mean(np.asarray(corpus.tokens) == UNK_ID) < 0.01
    # one placeholder per distinct study of the training subjects
    train = set(docs["subject_id"].to_list())
    n_studies = sum(small_cohort.modality(m).filter(pl.col("subject_id").is_in(list(train)))
                    .select("subject_id", "time", pl.col("study_id" if m != "wsi" else "slide_id"))
                    .unique().collect().height for m in ("ct", "wsi", "cxr"))
    assert int(corpus.n_images().sum()) == n_studies
    assert corpus.prs.shape == (n, 32) and corpus.has_prs.all()


def test_documents_without_studies_among_guarded_rows_of_other_samples(tmp_path):
    """Sidecar rows visible to other samples of the split but to none of the documents being
    tokenized (the representation cache asks for a few missing samples) give no placeholders.
    (polars 1.44 panics on an empty join result carrying an array column: the tokenizer must not
    join embedding columns.)"""
    cohort = hand_cohort(tmp_path / "c")
    tok = fit_tokenizer(cohort)
    split = pl.DataFrame({"subject_id": [4, 5], "prediction_time": [datetime(2020, 1, 9), datetime(2020, 1, 2)]},
                         schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us")})
    ev = visible_events(cohort.scan(), split)
    imgs = {m: visible_modality(cohort.modality(m), split) for m in ("ct", "wsi")}
    prs = visible_modality(cohort.modality("prs"), split)
    corpus = tok.tokenize(ev, split.tail(1), imgs, prs)
    assert len(corpus) == 1 and int(corpus.n_images()[0]) == 0 and corpus.images.shape[0] == 0
    np.testing.assert_allclose(corpus.prs[0], [5, -5])
    both = tok.tokenize(ev, split, imgs, prs)
    assert both.n_images().tolist() == [2, 0]
