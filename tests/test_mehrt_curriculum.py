"""The MEHRT curriculum as the paper describes it (OpenReview ywFxZhMnuB, Sec. 2.1 / Fig. 1b): stage
lengths 10 : 5 : 5 : 10, Stages 2 / 3 / 3-Joint on imaging subjects only, and a test perplexity that
scores EHRT and MEHRT on the same target tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_model

import encoders.mehrt.trainer as T
from encoders.mehrt.collate import Collator, shared_recent_starts
from encoders.mehrt.model import IGNORE_INDEX
from encoders.mehrt.pretrain import (STAGE_EPOCHS, build_model, default_plan, stage1_ehrt, stage2_projections,
                                     stage3_joint, stage3_unfreeze, stage_steps)
from encoders.mehrt.tokenizer import PREFIX_LEN, Corpus
from tests.test_mehrt_pretrain import cfg, toy_collator, toy_config, toy_corpus

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def half_imaging_corpus(D: int = 24) -> tuple[Corpus, np.ndarray]:
    """The toy corpus with every odd document stripped of its studies (placeholders -> ordinary
    tokens). Returns (corpus, bool [D] has-images)."""
    c = toy_corpus(D)
    tokens, rows = np.array(c.tokens), np.array(c.image_rows)
    has = np.arange(D) % 2 == 0
    for d in np.flatnonzero(~has):
        a, b = c.offsets[d], c.offsets[d + 1]
        ph = np.flatnonzero(rows[a:b] >= 0) + a
        tokens[ph], rows[ph] = 12, -1
    out = Corpus(tokens=tokens, offsets=c.offsets, image_rows=rows, images=c.images, prs=c.prs,
                 has_prs=c.has_prs, keys=c.keys, image_dims=c.image_dims)
    assert ((out.n_images() > 0) == has).all()
    return out, has


# ------------------------------------------------------------------------------ stage lengths
def test_stage_lengths_follow_the_papers_epoch_ratio():
    """Stage 1 / 2 / 3 / 3-Joint: 10 / 5 / 5 / 10 epochs in the paper -> the same ratio of steps
    (before: Stages 2, 3 and 3-Joint each a quarter of Stage 1)."""
    assert STAGE_EPOCHS == {"1": 10, "2": 5, "3": 5, "3joint": 10}
    for size, steps in (("tiny", 60), ("small", 600), ("small", 5000)):
        plan = default_plan(size, steps)
        got = {k: c.steps for k, c in plan.stages.items()}
        assert got == {"1": steps, "2": steps // 2, "3": steps // 2, "3joint": steps}, got
        # joint adaptation trains as many multimodal steps as Stages 2 and 3 together
        assert got["3joint"] == got["2"] + got["3"]
    assert stage_steps(1, "2") == 1 and stage_steps(7, "3") == 4


# ------------------------------------------------------------------------------ stage data
def test_multimodal_stages_draw_only_subjects_with_images(tmp_path, monkeypatch):
    """A planted cohort where half the documents have no study: Stage 1 samples both halves,
    Stages 2, 3 and 3-Joint only the imaging half (the paper's "imaging patients")."""
    corpus, has = half_imaging_corpus()
    drawn: dict[str, set] = {}
    real = T.sample_windows

    def spy(lengths, probs, step, c, stage):
        docs, starts = real(lengths, probs, step, c, stage)
        drawn.setdefault(stage, set()).update(docs.tolist())
        return docs, starts
    monkeypatch.setattr(T, "sample_windows", spy)
    c = cfg(steps=6, batch_size=8)
    ehrt, _ = stage1_ehrt(toy_config(False), toy_collator(corpus, False), c, tmp_path / "s1", layout=T.Dist())
    save_model(ehrt, str(tmp_path / "ehrt.safetensors"))
    m2, _ = stage2_projections(toy_config(True), tmp_path / "ehrt.safetensors", toy_collator(corpus, True), c,
                               tmp_path / "s2", layout=T.Dist())
    save_model(m2, str(tmp_path / "s2.safetensors"))
    stage3_unfreeze(toy_config(True), tmp_path / "s2.safetensors", toy_collator(corpus, True), c, tmp_path / "s3",
                    layout=T.Dist())
    stage3_joint(toy_config(True), tmp_path / "ehrt.safetensors", toy_collator(corpus, True), c, tmp_path / "sj",
                 layout=T.Dist())
    imaging = set(np.flatnonzero(has).tolist())
    assert drawn["1"] - imaging, "Stage 1 should sample subjects without images too"
    for stage in ("2", "3", "3joint"):
        assert drawn[stage] and drawn[stage] <= imaging, (stage, sorted(drawn[stage] - imaging))


def test_multimodal_stages_refuse_a_corpus_without_images(tmp_path):
    corpus, _ = half_imaging_corpus()
    rows = np.full_like(np.asarray(corpus.image_rows), -1)
    none = Corpus(tokens=corpus.tokens, offsets=corpus.offsets, image_rows=rows, images=corpus.images,
                  prs=corpus.prs, has_prs=corpus.has_prs, keys=corpus.keys, image_dims=corpus.image_dims)
    ehrt = build_model(toy_config(False), 0)
    save_model(ehrt, str(tmp_path / "ehrt.safetensors"))
    with pytest.raises(ValueError, match="no training subject has an image study"):
        stage3_joint(toy_config(True), tmp_path / "ehrt.safetensors", toy_collator(none, True), cfg(steps=1),
                     tmp_path / "sj", layout=T.Dist())


# ------------------------------------------------------------------------------ perplexity
def _oracle_targets(corpus: Corpus, seq_len: int) -> tuple[int, list[np.ndarray]]:
    """Structured targets of every document's most recent multimodal window, counted directly:
    prefix + the last seq_len - PREFIX_LEN tokens, placeholders removed, minus the first token."""
    n, windows = 0, []
    for d in range(len(corpus)):
        ids, rows = corpus.doc(d)
        w = np.arange(len(ids))
        w = np.concatenate([w[:PREFIX_LEN], w[max(PREFIX_LEN, len(ids) - (seq_len - PREFIX_LEN)):]])
        kept = ids[w][rows[w] < 0]
        windows.append(kept)
        n += len(kept) - 1
    return n, windows


def test_ehrt_and_mehrt_perplexity_share_windows_and_target_tokens():
    """Same denominator: the structured-only model reads the multimodal window minus its
    placeholders, so both predict exactly the same tokens (before: EHRT's window was the last
    seq_len structured tokens, a longer stretch of the record with more targets)."""
    corpus = toy_corpus(seed=1)
    seq_len = 32
    assert (corpus.lengths(True) > seq_len).all() and (corpus.n_images() > 0).all()
    n_oracle, windows = _oracle_targets(corpus, seq_len)
    ehrt = T.perplexity_detail(build_model(toy_config(False), 0), toy_collator(corpus, False), seq_len)
    mehrt = T.perplexity_detail(build_model(toy_config(True), 0), toy_collator(corpus, True), seq_len)
    assert ehrt["n_tokens"] == mehrt["n_tokens"] == n_oracle
    assert ehrt["n_docs"] == mehrt["n_docs"] == len(corpus)
    assert np.isfinite(ehrt["perplexity"]) and np.isfinite(mehrt["perplexity"])
    # token by token: the two variants' target tokens are the same sequence
    docs = np.arange(len(corpus))
    for multimodal in (False, True):
        coll: Collator = toy_collator(corpus, multimodal)
        b = coll(docs, shared_recent_starts(corpus, docs, seq_len, multimodal), seq_len)
        for d in docs:
            lab = b["labels"][d].numpy()
            np.testing.assert_array_equal(lab[lab != IGNORE_INDEX], windows[d])
    assert T.perplexity(build_model(toy_config(False), 0), toy_collator(corpus, False), seq_len) == \
        pytest.approx(ehrt["perplexity"])
