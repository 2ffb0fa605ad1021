"""MEHRT/EHRT cells made cheap (issue 19 item 5): one forward pass per window for every
representation, representations (masked ones included) encoded once per sample and reused across
tasks, and the `prepare` step that pretrains before the cells."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import torch

from benchmark.ablation import leave_one_out
from benchmark.registry import get_model
from encoders.mehrt import pipeline as P
from encoders.mehrt import pretrain
from encoders.mehrt.collate import collator, model_inputs, recent_starts
from encoders.mehrt.corpora import mehrt_cache
from tests.contracts.test_model_contract import task_data_for
from tests.test_mehrt_pipeline import BUDGET, _test_level, leak  # noqa: F401 - the pipeline tests' fixtures: its level and leak cohort


def _data(leak, kind: str):
    root, truth, work = leak
    return task_data_for(kind, root, truth, work / kind, which="signal")


class _Spy:
    """Counts documents through `represent` and forward passes through `model.encode`."""

    def __init__(self, monkeypatch, model=None):
        self.docs: list[int] = []
        self.passes = 0
        real = P.represent

        def counting(m, coll, *a, **k):
            self.docs.append(len(coll.corpus))
            return real(m, coll, *a, **k)
        monkeypatch.setattr(P, "represent", counting)
        if model is not None:
            encode = model.encode

            def forward(*a, **k):
                self.passes += 1
                return encode(*a, **k)
            monkeypatch.setattr(model, "encode", forward)


# ------------------------------------------------------------------------------ one pass
def test_echo_last_and_mean_come_from_one_forward_pass(leak, monkeypatch):
    """Before: a window was encoded twice when echo was a candidate (x, then [x; x]). Under causal
    attention the first copy of [x; x] has x's own hidden states, so one pass gives all three; the
    values still match their definitions (separate passes) to float precision (fp32 here)."""
    monkeypatch.setattr(P, "bf16_supported", lambda device: False)
    data = _data(leak, "binary")
    m = get_model("mehrt").factory(budget=BUDGET, seed=0)
    model, meta = P.load_pretrained(data.cohort, m.settings())
    tok = meta["tokenizer"]
    samples = data.samples("held_out")
    corpus = P.task_corpus(model, tok, data, "held_out", samples, multimodal=True)
    coll = collator(corpus, tok, model.config)
    spy = _Spy(monkeypatch, model)
    W = 14  # shorter than the timelines: truncation (prefix + most recent tokens)
    names = (*P.REPRESENTATIONS, P.STUDY_REPRESENTATION)
    reps = P.represent(model, coll, W, names, encode_tokens=10 ** 6)
    assert spy.passes == 1  # one batch, one pass (before: 2)
    lengths = corpus.lengths(True)
    docs = np.arange(len(corpus))
    starts = recent_starts(lengths, docs, W)
    n = np.minimum(lengths, W)
    with torch.inference_mode():
        b = coll(docs, starts, W)
        h = model.encode(**{k: v for k, v in model_inputs(b, torch.device("cpu")).items() if k != "labels"})
        e = coll(docs, starts, W, repeat=True)
        he = model.encode(**{k: v for k, v in model_inputs(e, torch.device("cpu")).items() if k != "labels"})
    d = model.config.d_model
    for i in docs:
        k = int(n[i])
        np.testing.assert_allclose(reps["last"][i], h[i, k - 1].numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(reps["mean"][i], h[i, :k].mean(0).numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(reps["echo"][i], he[i, k:2 * k].mean(0).numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(reps[P.STUDY_REPRESENTATION][i, :d], reps["mean"][i])
        for j in range(1, len(model.config.image_dims) + 1):
            # the study state comes from the first copy only (the second repeats the placeholders)
            at = np.flatnonzero(b["image_index"][i, :k].numpy() == j)
            want = h[i, at[-1]].numpy() if len(at) else np.zeros(d, np.float32)
            np.testing.assert_allclose(reps[P.STUDY_REPRESENTATION][i, j * d:(j + 1) * d], want, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ encode once per sample
def test_second_task_with_the_same_prediction_times_encodes_nothing(leak, monkeypatch):
    """Two tasks over the same samples (here binary and survival labels): the second cell, with its
    leave-one-modality-out attribution, runs no forward pass at all. Before, the masked held-out
    representations were re-encoded in every cell (4 modalities x the held-out set)."""
    first, second = _data(leak, "binary"), _data(leak, "survival")
    shutil.rmtree(mehrt_cache() / "reps", ignore_errors=True)  # cold representation cache
    a = get_model("mehrt").factory(budget=BUDGET, seed=0).fit(first)
    full_a = a.predict(first, "held_out")
    loo_a = leave_one_out(a, first)
    assert set(loo_a) >= {"ct", "prs"}
    spy = _Spy(monkeypatch, a.model_)
    b = get_model("mehrt").factory(budget=BUDGET, seed=0).fit(second)
    full_b = b.predict(second, "held_out")
    loo_b = leave_one_out(b, second)
    assert b.model_ is a.model_  # the in-process model, so the spy sees its passes
    assert spy.docs == [] and spy.passes == 0
    # the same vectors as a cold encode: cached masked representations change nothing
    shutil.rmtree(mehrt_cache() / "reps")
    spy.docs.clear()
    fresh = get_model("mehrt").factory(budget=BUDGET, seed=0).fit(second)
    np.testing.assert_array_equal(fresh.predict(second, "held_out").score, full_b.score)
    for mod, pred in leave_one_out(fresh, second).items():
        np.testing.assert_array_equal(pred.score, loo_b[mod].score)
    assert sum(spy.docs) > 0
    assert not np.array_equal(full_a.score, loo_a["ct"].score)  # masking CT changes the prediction


def test_masked_representations_are_kept_apart_by_modality_checkpoint_and_window(leak, monkeypatch):
    """Planted: a CT-masked vector must never serve a PRS-masked, unmasked, other-checkpoint or
    other-window request for the same sample."""
    data = _data(leak, "binary")
    m = get_model("mehrt").factory(budget=BUDGET, seed=0).fit(data)
    e = get_model("ehrt").factory(budget=BUDGET, seed=0).fit(data)
    folder = P._rep_folder
    base = folder(m.meta_, m.settings_, m.model_, data.task)
    ct = folder(m.meta_, m.settings_, m.model_, data.task, ("ct",))
    prs = folder(m.meta_, m.settings_, m.model_, data.task, ("prs",))
    both = folder(m.meta_, m.settings_, m.model_, data.task, ("prs", "ct"))
    windowed = data.task.model_copy(update={"input_window": "24h"})
    assert len({base, ct, prs, both, folder(m.meta_, m.settings_, m.model_, windowed, ("ct",)),
                folder(e.meta_, e.settings_, e.model_, data.task, ("ct",))}) == 6
    assert both == folder(m.meta_, m.settings_, m.model_, data.task, ("ct", "prs"))  # a set: order-free
    n = data.frame("held_out").height
    everyone = np.ones(n, dtype=bool)
    shutil.rmtree(mehrt_cache() / "reps")
    no_ct = m.predict_masked(data, "held_out", {"ct": everyone}).score
    spy = _Spy(monkeypatch)
    no_prs = m.predict_masked(data, "held_out", {"prs": everyone}).score
    assert spy.docs == [n]  # encoded: the CT-masked vectors were not reused
    assert not np.array_equal(no_ct, no_prs)
    # two modalities masked on some rows and one on others: one folder per set
    half = np.arange(n) % 2 == 0
    mixed = m.predict_masked(data, "held_out", {"ct": everyone, "prs": half}).score
    assert spy.docs == [n, int(half.sum())]  # the CT-only rows came from the cache
    np.testing.assert_array_equal(mixed[~half], no_ct[~half])
    assert not np.array_equal(mixed[half], no_ct[half])


# ------------------------------------------------------------------------------ prepare
def test_prepare_pretrains_once_before_the_cells(leak, monkeypatch):
    """`prepare` runs the curriculum the model encodes with; fit then trains nothing, and prepare on
    a cached cohort says so quickly (also in a fresh process: the stages are on disk)."""
    data = _data(leak, "binary")
    root, _, _ = leak
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(root.parent / "prepare_cache"))
    P._MODELS.clear()
    trained: list[str] = []
    real = pretrain._train_one

    def spy(stage, *a, **k):
        trained.append(stage)
        return real(stage, *a, **k)
    monkeypatch.setattr(pretrain, "_train_one", spy)
    joint = get_model("mehrt").factory(budget=BUDGET, seed=0)
    joint.stage = "3joint"
    said = get_model("mehrt").factory(budget=BUDGET, seed=0).prepare(data.cohort)
    assert trained == ["1", "2", "3"] and said.startswith("pretrained stages 1, 2, 3 (tiny, 6 steps) in ")
    get_model("mehrt").factory(budget=BUDGET, seed=1).fit(data)
    assert trained == ["1", "2", "3"]
    P._MODELS.clear()  # as in another process: only the disk cache is left
    t0 = time.perf_counter()
    assert get_model("ehrt").factory(budget=BUDGET, seed=0).prepare(data.cohort) == \
        "pretraining cached (stages 1, tiny, 6 steps)"
    assert get_model("mehrt").factory(budget=BUDGET, seed=0).prepare(data.cohort) == \
        "pretraining cached (stages 1, 2, 3, tiny, 6 steps)"
    assert time.perf_counter() - t0 < 30 and trained == ["1", "2", "3"]
    assert joint.prepare(data.cohort).startswith("pretrained stages 3joint ")  # Stage 1 reused
    assert trained == ["1", "2", "3", "3joint"]


def test_mehrt_family_declares_its_resources_and_a_prepare_step():
    """Ray schedules a MEHRT / EHRT cell on two cores and a GPU (when the cluster has one), and every
    MEHRT-family model, the zero-shot ones included, pretrains in the runner's prepare step."""
    from benchmark.registry import get_model
    from benchmark.runner import resolve_budget

    for name in ("ehrt", "mehrt", "mehrt-joint", "ehrt-zeroshot-path", "mehrt-zeroshot-freq"):
        spec = get_model(name)
        assert (spec.resources.cpus, spec.resources.gpus) == (2, 1.0), name
        assert callable(getattr(spec.factory(resolve_budget("smoke"), seed=0), "prepare", None)), name
    assert get_model("catboost").resources.gpus == 0
