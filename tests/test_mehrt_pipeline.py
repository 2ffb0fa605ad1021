"""MEHRT/EHRT runner models end to end: leakage, every task kind, representation cache, probes."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import polars as pl
import pytest
import torch

from benchmark.metrics.binary import auroc
from benchmark.model_api import BUDGETS
from benchmark.registry import get_model
from encoders.mehrt import pipeline as P
from encoders.mehrt.probe import Probe, cox_fit, cv_folds, loguniform_candidates
from encoders.mehrt.tokenizer import PREFIX_LEN
from tests.contracts.test_model_contract import (LEAK_MAX_AUROC, SIGNAL_MIN_AUROC, TASK_OF_KIND, _check_prediction,
                                                 build_leak_cohort, task_data_for)

# tiny model, a few steps: seconds. MEHRT reads its size and steps from the budget's level name
# (pipeline.LEVELS); this module adds a level of its own for the tests (fixture below).
BUDGET = replace(BUDGETS["smoke"], name="mehrt-test")


@pytest.fixture(scope="module", autouse=True)
def _test_level():
    mp = pytest.MonkeyPatch()
    mp.setitem(P.LEVELS, "mehrt-test", ("tiny", 6))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def leak(tmp_path_factory):
    """The contract's leak cohort (signal before, leak after the prediction time) + a private cache."""
    root = tmp_path_factory.mktemp("mehrt_leak") / "cohort"
    truth = build_leak_cohort(root)
    mp = pytest.MonkeyPatch()
    mp.setenv("MEHR_BENCH_CACHE", str(tmp_path_factory.mktemp("mehrt_cache")))
    torch.set_num_threads(1)
    yield root, truth, tmp_path_factory.mktemp("mehrt_work")
    mp.undo()


def fitted(name: str, kind: str, leak, which: str = "signal", seed: int = 0):
    root, truth, work = leak
    data = task_data_for(kind, root, truth, work / f"{name}-{kind}-{which}", which=which)
    return data, get_model(name).factory(budget=BUDGET, seed=seed).fit(data)


# ------------------------------------------------------------------------------ registry
def test_specs_run_every_kind_without_task_modalities():
    for name, mods in (("mehrt", {"structured", "ct", "wsi", "cxr", "prs"}), ("ehrt", {"structured"})):
        spec = get_model(name)
        assert set(spec.modalities) == mods and spec.requires == () and spec.kind == "foundation"
        assert set(spec.task_kinds) == {"binary", "multilabel", "survival", "regression"}
    # registering must not import torch (`benchmark models` stays light)
    code = "import sys, benchmark.registry as r; r.get_model('mehrt'); r.get_model('ehrt'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_budgets_pick_sizes():
    assert P.settings_for(BUDGETS["smoke"], True).size == "tiny"
    # the generic Budget no longer carries MEHRT's size and steps; MEHRT maps each level to the
    # values `make run` has always used (smoke tiny/60, default small/600, full small/5000)
    for level, size, steps in (("smoke", "tiny", 60), ("default", "small", 600), ("full", "small", 5000)):
        s = P.settings_for(BUDGETS[level], True)
        assert (s.size, s.steps) == (size, steps), level
    with pytest.raises(ValueError, match="no size and steps for budget level 'custom'"):
        P.settings_for(replace(BUDGETS["smoke"], name="custom"), True)
    assert P.settings_for(replace(BUDGETS["smoke"], name="custom"), True, size="tiny", steps=6).steps == 6
    assert P.settings_for(BUDGETS["default"], True).size == "small"
    assert P.settings_for(BUDGETS["default"], False).stage == "1"
    assert P.settings_for(BUDGETS["default"], True).stage == "3"


@pytest.mark.parametrize("name,size", [("mehrt-tiny", "tiny"), ("mehrt-small", "small"), ("mehrt-9m", "9M")])
def test_sized_entries_fix_the_size_whatever_the_budget(name, size):
    """mehrt-<size> (scaling plot series) keeps its size under every budget, and the rest of `mehrt`."""
    spec = get_model(name)
    assert spec.name == name and spec.modalities == get_model("mehrt").modalities
    for budget in BUDGETS.values():
        pipe = spec.factory(budget=budget, seed=3)
        assert pipe.settings().size == size and pipe.settings().steps == P.LEVELS[budget.name][1]
        assert pipe.multimodal and pipe.seed == 3 and pipe.budget == budget


# ------------------------------------------------------------------------------ leakage
@pytest.mark.parametrize("name", ["mehrt", "ehrt"])
def test_no_access_after_prediction_time_but_visible_signal_is_learned(leak, name):
    data, m = fitted(name, "binary", leak, which="leak")
    a = auroc(data.y("held_out"), m.predict(data, "held_out").score)
    assert a <= LEAK_MAX_AUROC, f"{name} reaches AUROC {a:.3f} on a label seen only after the prediction time"
    data, m = fitted(name, "binary", leak, which="signal")
    a = auroc(data.y("held_out"), m.predict(data, "held_out").score)
    assert a >= SIGNAL_MIN_AUROC, f"{name} misses a visible signal (AUROC {a:.3f})"


def test_task_timelines_hold_nothing_after_the_prediction_time(leak):
    """The leak marker is in the vocabulary (pretraining sees whole training records), yet no task
    timeline carries it, and only the pre-prediction CT study and the CXR at the prediction time
    become placeholders (the post-prediction studies do not)."""
    from encoders.mehrt.collate import collator
    data, m = fitted("mehrt", "binary", leak, which="leak")
    tok = m.meta_["tokenizer"]
    probe_id = tok.token_id("SYNTH/LEAK_PROBE")
    assert tok.vocab[probe_id] == "SYNTH/LEAK_PROBE"
    corpus = P.task_corpus(m.model_, tok, data, "held_out", data.samples("held_out"), multimodal=True)
    assert len(corpus) == data.frame("held_out").height
    assert not (np.asarray(corpus.tokens) == probe_id).any()
    ct, cxr = tok.token_id("[IMG_ct]"), tok.token_id("[IMG_cxr]")
    for d in range(len(corpus)):
        ids, rows = corpus.doc(d)
        assert (ids == ct).sum() == 1 and (ids == cxr).sum() == 1
    # the post-prediction lab value (5.0 or 0.5 two hours later) would be the last value token
    coll = collator(corpus, tok, m.model_.config)
    assert coll.multimodal and coll.use_prs


# ------------------------------------------------------------------------------ every kind
@pytest.mark.parametrize("kind", list(TASK_OF_KIND))
def test_every_task_kind_fits_predicts_and_reports(leak, kind):
    data, m = fitted("mehrt", kind, leak)
    test = m.predict(data, "held_out")
    _check_prediction(kind, data, test, "held_out")
    _check_prediction(kind, data, m.predict(data, "tuning"), "tuning")
    info = test.info
    import json
    json.dumps(info)
    assert info["representation"] in (*P.REPRESENTATIONS, P.STUDY_REPRESENTATION) and info["stage"].startswith("3")
    assert info["n_parameters"] > 0 and info["tokens_per_s"] > 0 and np.isfinite(info["held_out_perplexity"])
    assert set(info["pretraining"]) == {"1", "2", "3"} and info["probe"]
    assert "hyperparameters" in info and "cv_score" in info and "structured" in info["modalities_used"]
    if kind == "survival":
        assert test.surv_prob is not None
    if kind == "multilabel":
        prior = data.y(("train", "tuning"))[:, 13].mean()
        assert np.allclose(test.score[:, 13], prior)


def test_same_seed_same_predictions_and_ehrt_reuses_stage1(leak):
    data, a = fitted("ehrt", "survival", leak, seed=5)
    _, b = fitted("ehrt", "survival", leak, seed=5)
    np.testing.assert_array_equal(a.predict(data, "held_out").score, b.predict(data, "held_out").score)
    _, mm = fitted("mehrt", "survival", leak, seed=5)
    assert a.meta_["stages"]["1"]["key"] == mm.meta_["stages"]["1"]["key"]
    assert a.predict(data, "held_out").info["modalities_used"] == ["structured"]


# ------------------------------------------------------------------------------ representations
def test_representations_match_their_definitions(leak):
    from encoders.mehrt.collate import collator, model_inputs, recent_starts
    data, m = fitted("mehrt", "binary", leak)
    tok, model = m.meta_["tokenizer"], m.model_
    samples = data.samples("held_out").head(5)
    corpus = P.task_corpus(model, tok, data, "held_out", samples, multimodal=True)
    coll = collator(corpus, tok, model.config)
    W = 14  # shorter than the timelines: exercises truncation (prefix + most recent tokens)
    # bf16 encoding (where the CPU has it): batch shape may change GEMM rounding slightly
    tol = dict(rtol=2e-2, atol=2e-2) if P.bf16_supported(torch.device("cpu")) else dict(rtol=1e-4, atol=1e-5)
    reps = P.represent(model, coll, W, (*P.REPRESENTATIONS, P.STUDY_REPRESENTATION), encode_tokens=64)
    lengths = corpus.lengths(True)
    assert (lengths > W).any()
    seen = set()
    for d in range(len(corpus)):
        one = np.array([d])
        start = recent_starts(lengths, one, W)
        b = coll(one, start, W)
        ids, _ = corpus.doc(d)
        n = min(len(ids), W)
        kept = np.concatenate([ids[:PREFIX_LEN], ids[start[0]:start[0] + W - PREFIX_LEN]])
        np.testing.assert_array_equal(b["input_ids"][0, :n].numpy(), kept[:n])
        inputs = {k: v for k, v in model_inputs(b, torch.device("cpu")).items() if k != "labels"}
        with torch.no_grad(), P.encode_autocast(torch.device("cpu")):
            h = model.encode(**inputs)[0]
            e = coll(one, start, W, repeat=True)
            he = model.encode(**{k: v for k, v in model_inputs(e, torch.device("cpu")).items() if k != "labels"})[0]
        h, he = h.float(), he.float()
        torch.testing.assert_close(torch.from_numpy(reps["last"][d]), h[n - 1], **tol)
        torch.testing.assert_close(torch.from_numpy(reps["mean"][d]), h[:n].mean(0), **tol)
        torch.testing.assert_close(torch.from_numpy(reps["echo"][d]), he[n:2 * n].mean(0), **tol)
        # mean + the state at the latest placeholder of each modality (ct, wsi absent -> 0, cxr)
        studies = [h[:n].mean(0)]
        for k in range(1, len(model.config.image_dims) + 1):
            at = np.flatnonzero(b["image_index"][0, :n].numpy() == k)
            studies.append(h[at[-1]] if len(at) else torch.zeros(model.config.d_model))
        torch.testing.assert_close(torch.from_numpy(reps[P.STUDY_REPRESENTATION][d]), torch.cat(studies), **tol)
        seen.update(k for k in range(1, 4) if (b["image_index"][0, :n] == k).any())
    assert seen, "no placeholder inside the windows: the study part of the check did not run"


def test_representation_cache_encodes_each_sample_once(leak, monkeypatch):
    import shutil
    data, m = fitted("ehrt", "regression", leak)
    shutil.rmtree(P._rep_folder(m.meta_, m.settings_, m.model_, data.task))
    calls = []
    real = P.represent

    def counting(model, coll, *a, **k):
        calls.append(len(coll.corpus))
        return real(model, coll, *a, **k)
    monkeypatch.setattr(P, "represent", counting)
    first = P.encode_split(m.model_, m.meta_, data, "held_out", m.settings_)
    again = P.encode_split(m.model_, m.meta_, data, "held_out", m.settings_)
    assert calls == [data.frame("held_out").height]
    for k in first:
        np.testing.assert_array_equal(first[k], again[k])
    both = P.encode_split(m.model_, m.meta_, data, ("tuning", "held_out"), m.settings_)
    assert calls == [data.frame("held_out").height, data.frame("tuning").height]  # only the new samples
    held = (data.frame(("tuning", "held_out"))["split"] == "held_out").to_numpy()  # label order, not split order
    for k in first:
        np.testing.assert_array_equal(both[k][held], first[k])


# ------------------------------------------------------------------------------ probes
def test_candidates_are_one_log_uniform_draw_per_stratum():
    c = loguniform_candidates(8, seed=3)
    np.testing.assert_array_equal(c, loguniform_candidates(8, seed=3))
    strata = np.floor((np.log10(c) + 10) / 2.5).astype(int)
    assert strata.tolist() == list(range(8)) and (c >= 1e-10).all() and (c <= 1e10).all()


def test_cv_folds_keep_subjects_together_and_stratify():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 60, 300)
    y = (rng.random(300) < 0.2).astype(int)
    folds = cv_folds("binary", y, groups, 5, seed=1)
    assert len(folds) == 5
    for tr, va in folds:
        assert not set(groups[tr]) & set(groups[va])
        assert 0 < y[va].mean() < 0.5
    assert sorted(np.concatenate([va for _, va in folds]).tolist()) == list(range(300))


def test_joint_logistic_solver_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    from encoders.mehrt.probe import logistic_fit
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6))
    Y = np.column_stack([(X @ rng.normal(size=6) + rng.normal(size=400) > 0) for _ in range(3)]).astype(int)
    for C in (0.01, 1.0):
        W = logistic_fit(X, Y, C)
        for k in range(3):
            ref = LogisticRegression(C=C, tol=1e-10, max_iter=10000).fit(X, Y[:, k])
            np.testing.assert_allclose(W[k, :-1], ref.coef_[0], atol=2e-4)
            np.testing.assert_allclose(W[k, -1], ref.intercept_[0], atol=2e-4)


def test_cox_probe_matches_lifelines():
    lifelines = pytest.importorskip("lifelines")
    import pandas as pd
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    X = (X - X.mean(0)) / X.std(0, ddof=1)  # lifelines standardizes internally (ddof=1): keep it a no-op
    t = rng.exponential(np.exp(-X @ np.array([0.8, -0.5, 0, 0.3, 0])))
    c = rng.exponential(1.5, 300)
    time_, event = np.minimum(t, c), (t <= c).astype(float)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)]).assign(T=time_, E=event)
    for pen in (0.0, 0.1, 1.0):
        ref = lifelines.CoxPHFitter(penalizer=pen).fit(df, "T", "E").params_.to_numpy()
        np.testing.assert_allclose(cox_fit(X, time_, event, pen), ref, atol=2e-4)


@pytest.mark.parametrize("kind", ["binary", "survival", "regression", "multilabel"])
def test_probe_picks_the_informative_representation(kind):
    rng = np.random.default_rng(1)
    n, d = 600, 16
    signal = rng.normal(size=(n, d))
    z = signal[:, 0] - 0.5 * signal[:, 1]
    if kind == "binary":
        y = (z + rng.normal(size=n) > 0).astype(int)
    elif kind == "multilabel":
        y = np.column_stack([(z + rng.normal(size=n) > 0), (rng.random(n) < 0.3), np.zeros(n)]).astype(int)
    elif kind == "survival":
        t = rng.exponential(np.exp(-z))
        c = rng.exponential(1.0, n)
        y = np.column_stack([np.minimum(t, c), (t <= c).astype(float)])
    else:
        y = z + 0.5 * rng.normal(size=n)
    reps = {"noise": rng.normal(size=(n, d)), "signal": signal}
    tr = np.arange(n) < 450
    probe = Probe(kind, n_trials=8, n_folds=3, seed=0).fit({k: v[tr] for k, v in reps.items()}, y[tr], np.arange(450))
    assert probe.representation_ == "signal" and 1e-10 <= probe.C_ <= 1e10
    pred = probe.predict({k: v[~tr] for k, v in reps.items()})
    if kind in ("binary", "multilabel"):
        yy, pp = (y[~tr], pred) if kind == "binary" else (y[~tr, 0], pred[:, 0])
        assert auroc(yy, pp) > 0.75
    if kind == "multilabel":
        assert np.allclose(pred[:, 2], 0.0)  # never-positive label: its training prior
    if kind == "survival":
        from benchmark.metrics.survival import c_index_harrell
        assert c_index_harrell(y[~tr, 0], y[~tr, 1].astype(bool), pred) > 0.7
        curves = probe.survival_curves({k: v[~tr] for k, v in reps.items()}, np.array([0.2, 0.5, 1.0]))
        assert curves.shape == (150, 3) and (np.diff(curves, axis=1) <= 0).all()
    if kind == "regression":
        assert np.corrcoef(pred, y[~tr])[0, 1] > 0.8
    json_info = probe.info()
    assert json_info["representation"] == "signal" and set(json_info["cv_scores"]) == {"noise", "signal"}



def test_study_states_carry_the_image_signal(leak):
    """The leak cohort's pre-prediction CT carries the signal in its embedding: the placeholder
    states must expose it (mean pooling alone dilutes it over the window)."""
    from encoders.mehrt.collate import collator
    data, m = fitted("mehrt", "binary", leak)
    tok, model = m.meta_["tokenizer"], m.model_
    s = data.samples(("train", "tuning", "held_out"))
    corpus = P.task_corpus(model, tok, data, ("train", "tuning", "held_out"), s, multimodal=True)
    reps = P.represent(model, collator(corpus, tok, model.config), 256, (P.STUDY_REPRESENTATION,))
    d = model.config.d_model
    ct_state = reps[P.STUDY_REPRESENTATION][:, d:2 * d]  # ct is the first image modality of the config
    assert model.config.image_dims[0][0] == "ct" and (np.abs(ct_state).sum(1) > 0).all()
    y = data.y(("train", "tuning", "held_out"))
    probe = Probe("binary", 8, 3, 0).fit({"ct": ct_state}, y, s["subject_id"].to_numpy())
    assert probe.cv_["ct"] and max(probe.cv_["ct"].values()) > 0.75


def test_masking_a_modality_reencodes_only_those_samples_without_its_studies(leak):
    """predict_masked: nothing masked = predict; masked rows are re-encoded with no CT placeholder
    tokens (the same tokens as a tokenization that never saw those studies); other rows untouched."""
    from benchmark.ablation import is_maskable
    data, m = fitted("mehrt", "binary", leak)
    assert is_maskable(m) and {"ct", "cxr", "prs"} <= set(m.maskable_modalities())
    full = m.predict(data, "held_out")
    n = data.frame("held_out").height
    same = m.predict_masked(data, "held_out", {"ct": np.zeros(n, dtype=bool)})
    np.testing.assert_array_equal(same.score, full.score)
    rows = np.arange(n) % 2 == 0
    masked = m.predict_masked(data, "held_out", {"ct": rows})
    np.testing.assert_array_equal(masked.score[~rows], full.score[~rows])
    assert not np.allclose(masked.score[rows], full.score[rows])
    assert m.present_rows(data, "held_out", "ct").all()
    # the masked documents are exactly the documents of samples whose CT never existed
    tok, model = m.meta_["tokenizer"], m.model_
    keys = data.samples("held_out").filter(pl.Series(rows))
    got = P.task_corpus(model, tok, data, "held_out", keys, True, drop={"ct": keys})
    images = {k: data.visible_modality(k, "held_out") for k in ("cxr",)}
    prs = data.visible_modality("prs", "held_out")
    ref = tok.tokenize(data.visible_events("held_out", columns=("subject_id", "time", "code", "numeric_value")),
                       keys, images, prs, eos=False)
    np.testing.assert_array_equal(got.tokens, ref.tokens)
    with_ct = P.task_corpus(model, tok, data, "held_out", keys, True)
    assert len(with_ct.tokens) > len(got.tokens)  # the CT placeholders are gone
    # the signal is planted in a code and in the CT embedding: masking CT for everyone costs AUROC
    y = data.y("held_out")
    none = m.predict_masked(data, "held_out", {"ct": np.ones(n, dtype=bool)})
    assert auroc(y, none.score) < auroc(y, full.score)


# ------------------------------------------------------------------------------ issue 15: paper parity
def _declared_spec(name: str):
    """A model's spec through its pyproject.toml entry point (the installed metadata may predate it
    until the package is reinstalled)."""
    import tomllib
    from pathlib import Path

    from benchmark import registry
    declared = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    target = declared["project"]["entry-points"][registry.ENTRY_POINT_GROUP][name]
    return registry._load(name, target)


@pytest.mark.parametrize("level", list(P.LEVELS))
def test_ehrt_and_mehrt_choose_among_the_same_representations(level):
    """Probe parity: the same candidates for both models at every budget, the paper's echo embedding
    and last token among them (before: `mean+studies` for MEHRT only, no echo at the default budget)."""
    m, e = P.settings_for(BUDGETS[level], True), P.settings_for(BUDGETS[level], False)
    assert m.representations == e.representations == P.REPRESENTATIONS
    assert {"echo", "last"} <= set(m.representations)
    assert P.settings_for(BUDGETS[level], True, representations=("mean", P.STUDY_REPRESENTATION)).representations \
        == ("mean", P.STUDY_REPRESENTATION)  # MEHRT's study states stay available on request
    with pytest.raises(ValueError, match="not among"):
        P.settings_for(BUDGETS[level], False, representations=(P.STUDY_REPRESENTATION,))


def test_mehrt_joint_is_registered_and_encodes_with_the_stage_3joint_weights(leak):
    from safetensors.torch import load_file

    from encoders.mehrt.corpora import mehrt_cache
    spec = _declared_spec("mehrt-joint")
    assert spec.name == "mehrt-joint" and spec.modalities == get_model("mehrt").modalities
    root, truth, work = leak
    data = task_data_for("binary", root, truth, work / "joint-binary", which="signal")
    m = spec.factory(budget=BUDGET, seed=0).fit(data)
    assert m.settings_.stage == "3joint" and set(m.meta_["stages"]) == {"1", "3joint"}
    st = m.meta_["stages"]["3joint"]
    assert st["train_config"]["steps"] == m.meta_["stages"]["1"]["train_config"]["steps"]  # 10 : 10 epochs
    saved = load_file(str(mehrt_cache() / "ckpt" / st["key"] / "model.safetensors"))
    own = m.model_.state_dict()
    assert len(saved) > 10
    for k, v in saved.items():  # (tied embeddings are saved once)
        assert torch.equal(own[k], v), k
    _, gradual = fitted("mehrt", "binary", leak)
    assert gradual.meta_["stages"]["3"]["key"] != st["key"]
    assert not torch.equal(gradual.model_.state_dict()["tok_emb.weight"], own["tok_emb.weight"])
    info = m.predict(data, "held_out").info
    assert info["stage"] == "3-Joint" and set(info["pretraining"]) == {"1", "3joint"}
    assert info["hyperparameters"]["representation"] in info["hyperparameters"]["representation_candidates"]


def test_every_stage_reports_perplexity_on_the_same_target_tokens(leak):
    """EHRT (Stage 1) and MEHRT (Stages 2, 3, 3-Joint) perplexities share one denominator."""
    data, m = fitted("mehrt", "binary", leak)
    _, e = fitted("ehrt", "binary", leak)
    info, einfo = m.predict(data, "held_out").info, e.predict(data, "held_out").info
    counts = {k: v["perplexity_tokens"] for k, v in info["pretraining"].items()}
    counts["ehrt"] = einfo["pretraining"]["1"]["perplexity_tokens"]
    assert len(set(counts.values())) == 1 and counts["1"] > 0, counts
    assert info["pretraining"]["2"]["steps"] * 2 == info["pretraining"]["1"]["steps"]  # 10 : 5 epochs
    for v in info["pretraining"].values():
        assert np.isfinite(v["held_out_perplexity"]) and v["size"] == "tiny" and v["n_parameters"] > 0
    assert info["hyperparameters"]["representation_candidates"] == list(P.REPRESENTATIONS) == \
        einfo["hyperparameters"]["representation_candidates"]


def test_representation_cache_keeps_input_windows_apart(leak, monkeypatch):
    """A task's input window changes what a (subject, prediction time) encodes to, so the same samples
    under the task with a 24 h window are encoded again, never read from the unwindowed task's cache
    (before issue 15 the cache ignored the window)."""
    data, m = fitted("ehrt", "regression", leak)  # the contract lifts icu/los_days_24h's window
    assert data.task.input_window is None
    P.encode_split(m.model_, m.meta_, data, "held_out", m.settings_)  # cached without a window
    windowed = replace(data, task=data.task.model_copy(update={"input_window": "24h"}))
    assert P._rep_folder(m.meta_, m.settings_, m.model_, windowed.task) != P._rep_folder(m.meta_, m.settings_, m.model_, data.task)
    calls = []
    real = P.represent

    def counting(model, coll, *a, **k):
        calls.append(len(coll.corpus))
        return real(model, coll, *a, **k)
    monkeypatch.setattr(P, "represent", counting)
    P.encode_split(m.model_, m.meta_, windowed, "held_out", m.settings_)
    assert calls == [data.frame("held_out").height]


def test_a_windows_representation_does_not_depend_on_the_windows_encoded_with_it(leak):
    """Bitwise the same representations whether each window is encoded alone, in small batches or
    in large ones: batches hold one window length only, so no window is padded to a neighbour's
    length (padding changes the kernels' rounding, ~1e-2 in bf16), and the batch size does not
    change the numbers. So a cell's numbers do not depend on which other tasks or grids filled the
    representation cache first."""
    data, m = fitted("mehrt", "binary", leak)
    tok, model = m.meta_["tokenizer"], m.model_
    samples = data.samples("held_out")
    corpus = P.task_corpus(model, tok, data, "held_out", samples, multimodal=True)
    coll = P.collator(corpus, tok, model.config)
    lengths = np.minimum(corpus.lengths(True), 40)
    assert len(np.unique(lengths)) > 3  # windows of several lengths, which large batches would mix
    names = (*P.REPRESENTATIONS, P.STUDY_REPRESENTATION)
    alone = P.represent(model, coll, 40, names, encode_tokens=1)  # one window per batch
    for budget in (300, 10**6):
        together = P.represent(model, coll, 40, names, encode_tokens=budget)
        for n in names:
            np.testing.assert_array_equal(together[n], alone[n], err_msg=f"{n}, {budget} tokens per batch")
