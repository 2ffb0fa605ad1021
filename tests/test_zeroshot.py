"""Zero-shot prediction from generated trajectories (encoders/mehrt/generate.py, zeroshot.py).

Oracles: full recomputes of the model (KV cache), an exact enumeration of every path on a tiny
vocabulary (both estimators are unbiased for the probability it computes), the path formula recomputed
along sampled paths, and benchmark.metrics' AUROC CI on a planted task.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.predicate_maps import load_predicate_map
from benchmark.task_registry import load_tasks
from encoders.mehrt.generate import Sampling, Target, decode, prefill, sample_paths
from encoders.mehrt.model import MEHRT, MEHRTConfig
from encoders.mehrt.tokenizer import Tokenizer, fixed_tokens
from encoders.mehrt.zeroshot import ZeroShotNotApplicable, task_target

REPO = Path(__file__).resolve().parents[1]
# tiny vocabulary: 0 PAD, 1 BOS (never drawn), 2 EOS (stops), 3 the outcome, 4 a 60-minute time token, 5-7 others
PAD, BOS, EOS, OUT, TIME = 0, 1, 2, 3, 4
V = 8


def tiny_model(seed: int = 0, scale: float = 2.0, **kw) -> MEHRT:
    torch.manual_seed(seed)
    m = MEHRT(MEHRTConfig(vocab_size=V, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64, **kw)).eval()
    with torch.no_grad():  # far from uniform next-token distributions, so paths differ in probability
        m.tok_emb.weight.mul_(scale)
    return m


def target(start: float = 0.0, end: float = 90.0, outcome=(OUT,)) -> Target:
    minutes = np.zeros(V)
    minutes[TIME] = 60.0
    return Target(outcome_ids=tuple(outcome), step_minutes=minutes, start_min=start, end_min=end,
                  stop_ids=(EOS,), banned_ids=(PAD, BOS))


def prompts(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    T = max(map(len, rows))
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    return {"input_ids": ids, "lengths": torch.tensor([len(r) for r in rows])}


def next_probs(model: MEHRT, seq: list[int], tgt: Target) -> np.ndarray:
    """Untempered next-token distribution by a full forward pass (banned tokens masked)."""
    with torch.no_grad():
        logits = model(torch.tensor([seq]))["logits"][0, -1].double()
    logits[list(tgt.banned_ids)] = -np.inf
    return torch.softmax(logits, -1).numpy()


# ------------------------------------------------------------------------------ KV cache
@pytest.mark.parametrize("prs_mode", [None, "prefix", "cross_attention"])
def test_kv_cached_decoding_equals_full_recompute(prs_mode):
    kw = {} if prs_mode is None else {"prs_dim": 3, "prs_mode": prs_mode, "n_prs_tokens": 2}
    m = tiny_model(scale=1.0, **kw)
    rows = [[1, 5, 6, 7, 5], [1, 6, 6, 5, 7, 4, 5, 6, 3], [1, 7, 5, 6, 4, 4, 6]]  # right-padded, lengths differ
    batch = prompts(rows)
    prs = torch.randn(3, 3) if prs_mode else None
    if prs_mode:
        batch["prs"] = prs
    logits, cache = prefill(m, batch, extra=5)
    seqs = [list(r) for r in rows]
    for _ in range(5):
        for i, s in enumerate(seqs):
            with torch.no_grad():
                full = m(torch.tensor([s]), prs=None if prs is None else prs[i:i + 1])["logits"][0, -1]
            assert torch.allclose(logits[i], full, atol=1e-5), (i, len(s))
        tok = logits.argmax(-1)
        for i, s in enumerate(seqs):
            s.append(int(tok[i]))
        logits = decode(m, cache, tok)


# ------------------------------------------------------------------------------ estimators vs enumeration
def exact_probability(model, seq, tgt, K, clock=0.0, depth=0) -> float:
    """P(the outcome is drawn inside the window within K tokens), summed over every path."""
    if depth == K:
        return 0.0
    p = next_probs(model, seq, tgt)
    inside = tgt.start_min <= clock <= tgt.end_min
    total = 0.0
    for tok in range(V):
        if p[tok] == 0:
            continue
        if tok in tgt.outcome_ids and inside:
            total += p[tok]
            continue
        c = clock + tgt.step_minutes[tok]
        if tok in tgt.stop_ids or c > tgt.end_min:
            continue
        total += p[tok] * exact_probability(model, seq + [tok], tgt, K, c, depth + 1)
    return total


def expected_path_estimate(model, seq, tgt, K, clock=0.0, depth=0, survive=1.0) -> float:
    """E[path-computed probability] over paths drawn as sample_paths draws them (outcome redrawn in the
    window), by enumeration: sum over paths of q(path) * sum_i prod_{j<i}(1 - p_j) p_i."""
    if depth == K:
        return 0.0
    p = next_probs(model, seq, tgt)
    inside = tgt.start_min <= clock <= tgt.end_min
    p_out = p[list(tgt.outcome_ids)].sum() if inside else 0.0
    value = survive * p_out
    q = p.copy()
    if inside:
        q[list(tgt.outcome_ids)] = 0.0
        q /= q.sum()
    for tok in range(V):
        c = clock + tgt.step_minutes[tok]
        if q[tok] == 0 or tok in tgt.stop_ids or c > tgt.end_min:
            continue
        value += q[tok] * expected_path_estimate(model, seq + [tok], tgt, K, c, depth + 1, survive * (1 - p_out))
    return value


@pytest.mark.parametrize("start,end", [(0.0, 90.0), (60.0, 150.0)])
def test_path_estimator_is_unbiased_against_brute_force_enumeration(start, end):
    m, tgt, K, prompt = tiny_model(), target(start, end), 3, [1, 5, 6]
    exact = exact_probability(m, prompt, tgt, K)
    assert 0.01 < exact < 0.95  # a probability the test can tell apart
    assert expected_path_estimate(m, prompt, tgt, K) == pytest.approx(exact, abs=1e-9)
    # Monte Carlo: both estimators' means over many sampled paths approach the enumerated probability
    paths = sample_paths(m, prompts([prompt]), tgt, Sampling(n_paths=4000, max_new_tokens=K, seed=1))
    assert paths.path_prob.mean() == pytest.approx(exact, abs=0.02)
    assert paths.hit.mean() == pytest.approx(exact, abs=4 * np.sqrt(exact * (1 - exact) / 4000))
    # and along each sampled path, the value is the paper's formula with p_i from a full recompute
    for n in range(20):
        seq, clock, survive, value = list(prompt), 0.0, 1.0, 0.0
        for tok in paths.tokens[0, n]:
            if tok < 0:
                break
            p_out = next_probs(m, seq, tgt)[OUT] if tgt.start_min <= clock <= tgt.end_min else 0.0
            value, survive = value + survive * p_out, survive * (1 - p_out)
            seq.append(int(tok))
            clock += tgt.step_minutes[tok]
        assert paths.path_prob[0, n] == pytest.approx(value, abs=1e-6)


def test_path_estimator_has_more_operating_points_than_the_frequency():
    m, tgt = tiny_model(), target(0.0, 1e9)
    rows = [[1, 5 + i % 3, 6 + i % 2, 7 - i % 3] for i in range(12)]
    p = sample_paths(m, prompts(rows), tgt, Sampling(n_paths=10, max_new_tokens=6, seed=0))
    assert len(np.unique(p.hit.mean(1))) <= 11  # N + 1 values at most
    assert len(np.unique(p.path_prob.mean(1))) == 12


# ------------------------------------------------------------------------------ seeds
def test_same_seed_same_trajectories_other_seed_differs():
    m, tgt, batch = tiny_model(), target(0.0, 1e9), prompts([[1, 5, 6], [1, 7]])
    s = Sampling(n_paths=8, max_new_tokens=6, seed=3, temperature=1.3, top_p=0.9)
    a, b = sample_paths(m, batch, tgt, s), sample_paths(m, batch, tgt, s)
    c = sample_paths(m, batch, tgt, Sampling(n_paths=8, max_new_tokens=6, seed=4, temperature=1.3, top_p=0.9))
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.path_prob, b.path_prob)
    assert not np.array_equal(a.tokens, c.tokens)
    assert not np.isin(a.tokens, [PAD, BOS]).any()  # banned tokens are never drawn


# ------------------------------------------------------------------------------ the task in token terms
@pytest.fixture(scope="module")
def synthetic_map():
    return load_predicate_map(REPO / "data_prep" / "datasets" / "synthetic" / "predicates.yaml")


def tokenizer_with(*tokens: str) -> Tokenizer:
    tok = Tokenizer()
    tok.vocab = fixed_tokens() + list(tokens)
    return tok


def test_outcome_tokens_of_shipped_tasks(synthetic_map):
    tasks = load_tasks()
    tok = tokenizer_with("MEDS_DEATH", "ONCOLOGY/PROGRESSION", "ICD10PCS/302")
    codes = ["MEDS_DEATH", "ONCOLOGY/PROGRESSION", "ICD10PCS/30233N1", "ICD10PCS/30233R1", "LOINC/2160-0"]
    t, info = task_target(tasks["oncology/mortality_1y"], synthetic_map, codes, tok)
    assert info["outcome_tokens"] == {"MEDS_DEATH": ["MEDS_DEATH"]} and t.end_min == 365 * 24 * 60
    assert t.outcome_ids == (tok.vocab.index("MEDS_DEATH"),)
    _, info = task_target(tasks["oncology/progression_free_survival_1y"], synthetic_map, codes, tok)
    assert set(info["outcome_tokens"]) == {"MEDS_DEATH", "ONCOLOGY/PROGRESSION"}  # any_of_predicates
    _, info = task_target(tasks["oncology/transfusion_1y"], synthetic_map, codes, tok)
    assert info["outcome_tokens"] == {"ICD10PCS/302": ["ICD10PCS/30233N1", "ICD10PCS/30233R1"]}
    assert t.step_minutes[tok.vocab.index("[T_1h-2h]")] == 60.0  # the bucket's lower bound


@pytest.mark.parametrize("task,outcome,codes,vocab,words", [
    ("survival/mace", None, [], (), "survival task"),
    ("icu/los_gt3d_24h", None, [], (), "not 'outcome within a window'"),
    ("oncology/neutropenic_fever_1y", None, [], (), "derived from measured values"),
    ("oncology/mortality_1y", "fever", ["LOINC/8310-5"], ("LOINC/8310-5",), "depends on a measured value"),
    ("oncology/metastasis_1y", None, ["ICD10CM/C78.1"], (), "none of which the tokenizer can emit"),
    ("oncology/transfusion_1y", None, ["ICD10PCS/30233N1", "ICD10PCS/30243N1"], ("ICD10PCS/302",),
     "also stands for code 'ICD10PCS/30243N1'"),
])
def test_refusals_by_name(synthetic_map, task, outcome, codes, vocab, words):
    spec = load_tasks()[task]
    if outcome:
        spec = spec.model_copy(update={"label": spec.label.model_copy(update={"outcome": outcome})})
    with pytest.raises(ZeroShotNotApplicable) as e:
        task_target(spec, synthetic_map, codes, tokenizer_with(*vocab))
    assert words in str(e.value) and spec.name in str(e.value)


def test_registered_specs_are_binary_only():
    from encoders.mehrt.register_ehrt_zeroshot import SPECS as EHRT
    from encoders.mehrt.register_mehrt_zeroshot import SPECS as MEHRT_SPECS
    names = [s.name for s in (*EHRT, *MEHRT_SPECS)]
    assert names == ["ehrt-zeroshot-path", "ehrt-zeroshot-freq", "mehrt-zeroshot-path", "mehrt-zeroshot-freq"]
    mace = load_tasks()["survival/mace"]
    assert "does not support survival tasks" in EHRT[0].fits(mace)
    model = EHRT[1].factory(budget=None, seed=0)
    assert model.estimator == "freq" and model.sampling.n_paths == 10


# ------------------------------------------------------------------------------ a planted task
@pytest.mark.slow  # about 18 s: 150 training steps
def test_planted_frequent_outcome_gets_zero_shot_auroc_above_chance():
    """A tiny model trained briefly on timelines where token 5 ("high risk") is followed by the outcome
    half the time and token 6 ("low risk") rarely: zero-shot scores separate the two groups, with the
    AUROC's CI (benchmark.metrics.evaluate) above 0.5 for both estimators."""
    from benchmark.metrics.evaluate import evaluate

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    m = MEHRT(MEHRTConfig(vocab_size=V, d_model=32, n_layers=2, n_heads=4, max_seq_len=64))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)

    def timeline(risk: int) -> list[int]:
        rate = 0.5 if risk == 5 else 0.05
        body = rng.choice([OUT, 7], size=6, p=[rate, 1 - rate]).tolist()
        return [BOS, risk, 7] + body

    for _ in range(150):
        seqs = torch.tensor([timeline(int(rng.choice([5, 6]))) for _ in range(32)])
        loss = m(seqs, labels=seqs)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    groups = np.array([5, 6] * 60)
    hit_rate = np.where(groups == 5, 1 - 0.5 ** 4, 1 - 0.95 ** 4)  # the true process, K = 4
    y = (rng.random(len(groups)) < hit_rate).astype(int)
    paths = sample_paths(m, prompts([[BOS, int(g), 7] for g in groups]), target(0.0, 1e9),
                         Sampling(n_paths=10, max_new_tokens=4, seed=0))
    for score in (paths.path_prob.mean(1), paths.hit.mean(1)):
        auroc = evaluate("binary", y, score, n_boot=200, seed=0)["auroc"]
        assert auroc.ci_low > 0.5, auroc
