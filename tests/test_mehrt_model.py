"""Unit tests for encoders/mehrt/model.py: loss, causality, masking, PRS modes, GQA, configs."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from encoders.mehrt.kernels import IGNORE_INDEX, cross_entropy
from encoders.mehrt.model import MEHRT, Attention, CrossAttention, MEHRTConfig, PRSProjection, apply_rope
from encoders.mehrt.sizes import REFERENCE_VOCAB, SIZES, config_for, parameter_table

V = 37
IMAGE_DIMS = (("ct", 6), ("wsi", 5), ("cxr", 8))


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def tiny(**overrides) -> MEHRTConfig:
    base = dict(vocab_size=V, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64)
    return MEHRTConfig(**{**base, **overrides})


def build(cfg: MEHRTConfig, seed: int = 0) -> MEHRT:
    """A tiny model in eval mode (cross-attention has no gate: the PRS path is live from the start)."""
    torch.manual_seed(seed)
    return MEHRT(cfg).eval()


def image_batch(B: int = 2, T: int = 16, seed: int = 1):
    """Random tokens with a few image placeholders of each modality (values zero-padded to E)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (B, T), generator=g)
    index = torch.zeros(B, T, dtype=torch.long)
    index[:, 3], index[:, 7], index[:, 10] = 1, 2, 3
    values = torch.zeros(B, T, max(d for _, d in IMAGE_DIMS))
    for m, (_, dim) in enumerate(IMAGE_DIMS, start=1):
        values[..., :dim] += torch.randn(B, T, dim, generator=g) * (index == m)[..., None]
    return ids, index, values


# ----------------------------------------------------------------------------- training signal
def test_overfits_one_batch():
    torch.manual_seed(0)
    cfg = tiny(d_model=64)
    model = MEHRT(cfg)
    x = torch.randint(0, V, (4, 32))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    first = None
    for _ in range(300):
        loss = model(x, labels=x)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert first > 3.0  # ~log(37) at init: the model did start from chance
    assert loss.item() < 0.05


def test_fused_cross_entropy_matches_torch():
    torch.manual_seed(0)
    logits = torch.randn(12, V, dtype=torch.float64)
    targets = torch.randint(0, V, (12,))
    targets[[2, 5, 11]] = IGNORE_INDEX
    ours_in = logits.clone().float().requires_grad_()
    ref_in = logits.clone().float().requires_grad_()
    ours = cross_entropy(ours_in * 2.0, targets)  # the * 2 checks the chain rule into the input
    ref = F.cross_entropy(ref_in * 2.0, targets, ignore_index=IGNORE_INDEX)
    (3.0 * ours).backward()
    (3.0 * ref).backward()
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(ours_in.grad, ref_in.grad)
    assert ours_in.grad[[2, 5, 11]].abs().sum() == 0
    # backward may run twice (retain_graph): the saved gradient buffer is not consumed
    again = logits.clone().float().requires_grad_()
    loss = cross_entropy(again * 2.0, targets)
    loss.backward(retain_graph=True)
    loss.backward()
    torch.testing.assert_close(again.grad, 2 * ref_in.grad / 3.0)
    leaf = logits.clone().float().requires_grad_()  # the buffer handed to autograd stays intact
    loss = cross_entropy(leaf, targets)
    loss.backward(retain_graph=True)
    first = leaf.grad.clone()
    loss.backward()
    torch.testing.assert_close(leaf.grad, 2 * first)
    expected = torch.func.grad(lambda z: F.cross_entropy(z, targets, ignore_index=IGNORE_INDEX))
    torch.testing.assert_close(first, expected(logits.float()))
    with torch.no_grad():  # the evaluation path (plain F.cross_entropy) agrees too
        torch.testing.assert_close(cross_entropy(logits.float() * 2.0, targets), ref)

    none_kept = torch.full((12,), IGNORE_INDEX)
    z = logits.clone().float().requires_grad_()
    loss = cross_entropy(z, none_kept)
    loss.backward()
    assert loss.item() == 0.0 and z.grad.abs().sum() == 0


def test_matches_hugging_face_llama():
    """Without images and PRS, MEHRT is exactly a Llama: copy weights, compare logits and loss."""
    transformers = pytest.importorskip("transformers")
    cfg = tiny(vocab_size=300, d_model=64, n_heads=4, n_kv_heads=2)
    model = build(cfg)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads, max_position_embeddings=cfg.max_seq_len,
        rms_norm_eps=cfg.norm_eps, tie_word_embeddings=True, attn_implementation="sdpa",
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta})).eval()
    kv = cfg.n_kv_heads * cfg.head_dim
    state = {"model.embed_tokens.weight": model.tok_emb.weight,
             "model.norm.weight": model.norm.weight}
    for i, block in enumerate(model.blocks):
        q, k, v = block.attn.qkv.weight.split([cfg.d_model, kv, kv])
        p = f"model.layers.{i}."
        state.update({
            p + "self_attn.q_proj.weight": q, p + "self_attn.k_proj.weight": k,
            p + "self_attn.v_proj.weight": v, p + "self_attn.o_proj.weight": block.attn.out.weight,
            p + "mlp.gate_proj.weight": block.mlp.gate.weight,
            p + "mlp.up_proj.weight": block.mlp.up.weight,
            p + "mlp.down_proj.weight": block.mlp.down.weight,
            p + "input_layernorm.weight": block.attn_norm.weight,
            p + "post_attention_layernorm.weight": block.mlp_norm.weight})
    result = hf.load_state_dict({k: t.detach().clone() for k, t in state.items()}, strict=False)
    assert result.unexpected_keys == [] and set(result.missing_keys) <= {"lm_head.weight"}
    assert model.num_parameters() == sum(p.numel() for p in hf.parameters())
    x = torch.randint(0, cfg.vocab_size, (2, 40))
    ours = model(x, labels=x)
    with torch.no_grad():
        ref = hf(input_ids=x, labels=x)
    torch.testing.assert_close(ours["logits"], ref.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours["loss"], ref.loss, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------- causality
CAUSAL_VARIANTS = {
    "mha": dict(n_kv_heads=4),
    "gqa": dict(n_kv_heads=1),
    "prefix": dict(prs_dim=5, prs_mode="prefix", n_prs_tokens=3),
    "cross_attention": dict(prs_dim=5, prs_mode="cross_attention", cross_attention_every=1),
    "images": dict(image_dims=IMAGE_DIMS),
}


@pytest.mark.parametrize("variant", list(CAUSAL_VARIANTS))
def test_future_tokens_never_change_earlier_logits(variant):
    cfg = tiny(**CAUSAL_VARIANTS[variant])
    model = build(cfg)
    ids, index, values = image_batch()
    kwargs = dict(prs=torch.randn(2, 5)) if cfg.prs_mode else {}
    if cfg.image_dims:
        kwargs.update(image_index=index, image_values=values)
    with torch.no_grad():
        base = model(ids, **kwargs)["logits"]
        for t in (5, 9, 15):
            changed = ids.clone()
            changed[:, t] = (changed[:, t] + 1) % V
            out = model(changed, **kwargs)["logits"]
            assert torch.equal(out[:, :t], base[:, :t]), f"position < {t} saw token {t}"
            assert not torch.allclose(out[:, t], base[:, t])
        if cfg.image_dims:  # a later study must not leak backwards either
            later = values.clone()
            later[:, 10] += 1.0
            out = model(ids, **{**kwargs, "image_values": later})["logits"]
            assert torch.equal(out[:, :10], base[:, :10])
            assert not torch.allclose(out[:, 10:], base[:, 10:])


# ------------------------------------------------------------------------------------- images
def test_image_embedding_drives_loss_and_placeholders_are_not_targets():
    cfg = tiny(image_dims=IMAGE_DIMS)
    model = build(cfg)
    ids, index, values = image_batch()
    kw = dict(image_index=index, image_values=values)
    with torch.no_grad():
        loss = model(ids, labels=ids, **kw)["loss"]
        # The study embedding is the placeholder's input: changing it changes the loss.
        moved = values.clone()
        moved[:, 7, :5] += 2.0
        moved_loss = model(ids, labels=ids, **{**kw, "image_values": moved})["loss"]
        assert not torch.allclose(moved_loss, loss)
        # Entries beyond the modality's own dim (wsi uses 5 of E=8) are padding and ignored.
        padded = values.clone()
        padded[:, 7, 5:] = 9.0
        assert torch.equal(model(ids, labels=ids, **{**kw, "image_values": padded})["loss"], loss)
        # Labels at placeholder positions are never scored.
        relabeled = ids.clone()
        relabeled[index > 0] = (relabeled[index > 0] + 5) % V
        assert torch.equal(model(ids, labels=relabeled, **kw)["loss"], loss)
        # Oracle: plain cross-entropy over the structured-token targets only.
        logits = model(ids, **kw)["logits"]
        targets = ids[:, 1:].masked_fill(index[:, 1:] > 0, IGNORE_INDEX)
        expected = F.cross_entropy(logits[:, :-1].reshape(-1, V), targets.reshape(-1),
                                   ignore_index=IGNORE_INDEX)
        torch.testing.assert_close(loss, expected)


# ---------------------------------------------------------------------------- padding/packing
def test_padding_mask_matches_unpadded_runs():
    model = build(tiny())
    torch.manual_seed(3)
    a, b = torch.randint(0, V, (1, 12)), torch.randint(0, V, (1, 7))
    with torch.no_grad():
        alone_a, alone_b = model(a, labels=a), model(b, labels=b)
        for side in ("right", "left"):
            pad = torch.zeros(1, 5, dtype=torch.long)
            b_padded = torch.cat([b, pad], 1) if side == "right" else torch.cat([pad, b], 1)
            mask = torch.ones(2, 12, dtype=torch.bool)
            if side == "right":
                mask[1, 7:] = False
                real_b = slice(0, 7)
            else:
                mask[1, :5] = False
                real_b = slice(5, 12)
            batch = torch.cat([a, b_padded])
            out = model(batch, attention_mask=mask, labels=batch)
            assert torch.isfinite(out["logits"]).all()
            torch.testing.assert_close(out["logits"][0], alone_a["logits"][0], atol=1e-5, rtol=0)
            # Left padding shifts b's absolute positions; RoPE only sees relative ones.
            torch.testing.assert_close(out["logits"][1, real_b], alone_b["logits"][0],
                                       atol=1e-5, rtol=0)
            n_a, n_b = 11, 6  # scored targets: every token but the first
            expected = (alone_a["loss"] * n_a + alone_b["loss"] * n_b) / (n_a + n_b)
            torch.testing.assert_close(out["loss"], expected, atol=1e-6, rtol=1e-6)


def test_left_padding_rows_are_never_empty_and_real_tokens_ignore_padding():
    """A fully padded query row would be all -inf in softmax (NaN in kernels without a safe
    softmax) unless every position may attend to itself; real tokens never see padding."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = build(tiny())
    x = torch.randint(0, V, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, :3] = False
    allowed = model._attention_mask(mask, None, P=0, T=8)  # [B, 1, T, T]
    assert allowed.shape == (2, 1, 8, 8) and allowed.any(-1).all()
    assert not allowed[1, 0, 3:, :3].any()
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        out = model(x, attention_mask=mask, labels=x)
        alone = model(x[1:, 3:])["logits"]
    assert torch.isfinite(out["logits"]).all() and torch.isfinite(out["loss"])
    torch.testing.assert_close(out["logits"][1, 3:], alone[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("prs_mode", [None, "prefix", "cross_attention"])
def test_segment_ids_isolate_packed_documents(prs_mode):
    cfg = tiny(prs_dim=5 if prs_mode else None, prs_mode=prs_mode, cross_attention_every=1)
    model = build(cfg)
    torch.manual_seed(4)
    docs = [torch.randint(0, V, (1, n)) for n in (9, 6, 5)]
    prs = torch.randn(1, 5) if prs_mode else None
    packed = torch.cat(docs, 1)  # [1, 20]
    segments = torch.cat([torch.full((1, d.shape[1]), i) for i, d in enumerate(docs)], 1)
    with torch.no_grad():
        out = model(packed, segment_ids=segments, labels=packed, prs=prs)
        start, losses, counts = 0, [], []
        for d in docs:
            alone = model(d, labels=d, prs=prs)
            n = d.shape[1]
            torch.testing.assert_close(out["logits"][0, start:start + n], alone["logits"][0],
                                       atol=1e-5, rtol=0)
            losses.append(alone["loss"] * (n - 1))
            counts.append(n - 1)
            start += n
        # The first token of a document is not predicted from the previous document.
        torch.testing.assert_close(out["loss"], sum(losses) / sum(counts), atol=1e-6, rtol=1e-6)
        # Without segment ids the same row leaks across documents (the test can fail).
        leaky = model(packed, prs=prs)["logits"]
        assert not torch.allclose(leaky[0, 9:15], out["logits"][0, 9:15], atol=1e-4)


# ------------------------------------------------------------------------------------------ PRS
@pytest.mark.parametrize("prs_mode", ["prefix", "cross_attention"])
def test_prs_modes_run_and_prs_changes_output(prs_mode):
    cfg = tiny(prs_dim=5, prs_mode=prs_mode, n_prs_tokens=2)
    model = build(cfg)
    ids = torch.randint(0, V, (2, 10))
    prs = torch.randn(2, 5)
    with torch.no_grad():
        out = model(ids, prs=prs, labels=ids)
        assert out["logits"].shape == (2, 10, V) and out["hidden"].shape == (2, 10, cfg.d_model)
        assert torch.isfinite(out["loss"])
        other = model(ids, prs=prs + 1.0)["logits"]
        assert not torch.allclose(other, out["logits"])
    model.train()
    model(ids, prs=prs, labels=ids)["loss"].backward()
    assert model.prs_proj.fc1.weight.grad.abs().sum() > 0  # the PRS MLP learns jointly with the model


def test_prs_projection_is_the_genomics_papers_mlp():
    """Linear -> GELU -> Linear -> 2 sigmoid(z) - 1 into 10 soft tokens (Amar et al. 2025, Methods).
    Before: one Linear into 4 unbounded tokens."""
    cfg = tiny(prs_dim=5, prs_mode="prefix")
    assert cfg.n_prs_tokens == 10  # the paper's default number of soft tokens
    model = build(cfg)
    proj = model.prs_proj
    assert isinstance(proj, PRSProjection)
    assert (proj.fc1.in_features, proj.fc1.out_features) == (5, cfg.prs_hidden)
    assert (proj.fc2.in_features, proj.fc2.out_features) == (cfg.prs_hidden, 10 * cfg.d_model)
    prs = torch.randn(3, 5)
    with torch.no_grad():
        tokens = proj(prs)
        assert tokens.shape == (3, 10, cfg.d_model)
        # oracle: the formula written out with the module's own weights
        z = F.linear(F.gelu(F.linear(prs, proj.fc1.weight, proj.fc1.bias)), proj.fc2.weight, proj.fc2.bias)
        torch.testing.assert_close(tokens, (2 * torch.sigmoid(z) - 1).view(3, 10, cfg.d_model))
        # GELU in the middle (not ReLU, not identity): a planted hidden pre-activation tells them apart
        proj.fc1.weight.zero_()
        proj.fc1.bias.fill_(-0.5)  # GELU(-0.5) = -0.1543, ReLU = 0, identity = -0.5
        proj.fc2.weight.fill_(1.0 / cfg.prs_hidden)
        proj.fc2.bias.zero_()
        expected = 2 * torch.sigmoid(torch.tensor(-0.5 * 0.3085375387259869)) - 1  # GELU(x) = x Phi(x)
        torch.testing.assert_close(proj(prs), expected.expand(3, 10, cfg.d_model), atol=1e-5, rtol=1e-5)
    # bounded: huge inputs saturate at +-1 and never leave [-1, 1]; moderate ones stay strictly inside
    big = build(cfg, seed=1).prs_proj
    with torch.no_grad():
        for w in (big.fc1.weight, big.fc2.weight):
            w.mul_(50.0)
        huge = big(torch.randn(4, 5) * 1e6)
        assert torch.isfinite(huge).all() and huge.abs().max() <= 1.0 and huge.abs().max() > 0.99
        assert build(cfg).prs_proj(torch.randn(4, 5)).abs().max() < 1.0
    # the prefix variant prepends exactly these tokens
    assert model.config.n_prefix_tokens == 10


def test_prs_projection_and_cross_attention_sizes_at_the_papers_width():
    """At the Genomics paper's backbone (width 960, 12 layers, 8 heads, 3481 PRS) the MLP has
    hidden size 4096 and output 960 x 10, and cross-attention in every block adds 12 x 4 x 960^2
    weights (the paper's "additional 45M")."""
    cfg = MEHRTConfig(vocab_size=100, d_model=960, n_layers=12, n_heads=8, prs_dim=3481,
                      prs_mode="cross_attention")
    assert cfg.prs_hidden == 4096
    with torch.device("meta"):
        model = MEHRT(cfg)
    n_mlp = sum(p.numel() for p in model.prs_proj.parameters())
    assert n_mlp == 3481 * 4096 + 4096 + 4096 * 9600 + 9600
    n_x = sum(p.numel() for b in model.blocks for p in b.xattn.parameters())
    assert n_x == 12 * (4 * 960 ** 2 + 960)  # q, k, v, out + the sublayer's RMSNorm
    assert abs(n_x - 45e6) / 45e6 < 0.03


def test_cross_attention_is_in_every_block_ungated_after_self_attention():
    """GPT-PRS-CROSS (Hugging Face GPT-2 with cross-attention): a cross-attention sublayer in EVERY
    decoder block, between self-attention and the MLP, added without a gate. Before: every 2nd
    block, Flamingo tanh gate at 0 (so a fresh model ignored the PRS)."""
    cfg = tiny(n_layers=4, prs_dim=5, prs_mode="cross_attention")
    model = build(cfg)
    assert all(isinstance(b.xattn, CrossAttention) for b in model.blocks)
    assert not any("gate" in n for n, _ in model.named_parameters() if ".xattn." in n)
    ids, prs = torch.randint(0, V, (2, 9)), torch.randn(2, 5)
    with torch.no_grad():  # live at initialisation: no zero gate holds the PRS back
        assert not torch.allclose(model(ids, prs=prs)["logits"], model(ids, prs=prs + 1.0)["logits"])
    # oracle: one block written out in the GPT-2 order x + SA(n1 x); x + CA(n_x x, m); x + MLP(n2 x)
    block, T = model.blocks[0], ids.shape[1]
    x = torch.randn(2, T, cfg.d_model)
    memory = model.prs_proj(prs)
    cos, sin = model.rope_cos[:T], model.rope_sin[:T]
    with torch.no_grad():
        h = x + block.attn(block.attn_norm(x), cos, sin, None)
        h = h + block.xattn(h, memory)
        ref = h + block.mlp(block.mlp_norm(h))
        torch.testing.assert_close(block(x, cos, sin, None, memory), ref)
    # cross_attention_every=k still places sublayers in blocks 0, k, 2k, ... when asked
    sparse = MEHRT(tiny(n_layers=4, prs_dim=5, prs_mode="cross_attention", cross_attention_every=2))
    assert [b.xattn is not None for b in sparse.blocks] == [True, False, True, False]
    # the prefix variant has no cross-attention at all
    assert all(b.xattn is None for b in build(tiny(prs_dim=5, prs_mode="prefix")).blocks)


def test_prs_given_to_a_model_without_prs_is_an_error():
    model = build(tiny())
    with pytest.raises(ValueError, match="prs_mode=None"):
        model(torch.randint(0, V, (1, 4)), prs=torch.randn(1, 5))


# ------------------------------------------------------------------------------------------ GQA
def test_grouped_query_attention_matches_repeated_kv_reference():
    torch.manual_seed(0)
    cfg = tiny(d_model=48, n_heads=6, n_kv_heads=2)
    attn = Attention(cfg)
    model = MEHRT(cfg)
    B, T, H, Hkv, hd = 2, 11, 6, 2, cfg.head_dim
    x = torch.randn(B, T, cfg.d_model)
    cos, sin = model.rope_cos[:T], model.rope_sin[:T]
    with torch.no_grad():
        ours = attn(x, cos, sin, mask=None)
        q, k, v = attn.qkv(x).split([H * hd, Hkv * hd, Hkv * hd], dim=-1)
        q = apply_rope(q.view(B, T, H, hd).transpose(1, 2), cos, sin)
        k = apply_rope(k.view(B, T, Hkv, hd).transpose(1, 2), cos, sin)
        v = v.view(B, T, Hkv, hd).transpose(1, 2)
        k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)
        scores = q @ k.transpose(-1, -2) / hd ** 0.5  # [B, H, T, T]
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        ref = attn.out((scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H * hd))
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
        # and with an explicit boolean mask (the padding/packing path)
        causal = torch.ones(T, T, dtype=torch.bool).tril()[None, None].expand(B, 1, T, T)
        torch.testing.assert_close(attn(x, cos, sin, mask=causal), ref, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------- sizes, accounting
def test_named_sizes_parameter_counts_are_near_their_names():
    counts = {name: total for name, total, _ in parameter_table(REFERENCE_VOCAB)}
    assert set(counts) == set(SIZES)
    for name, total in counts.items():
        if name[0].isdigit():
            target = float(name[:-1]) * 1e6
            assert abs(total - target) / target < 0.25, f"{name}: {total / 1e6:.1f}M"
    assert counts["tiny"] < counts["small"] < 5e6


def test_num_parameters_and_flops():
    cfg = tiny(image_dims=IMAGE_DIMS, prs_dim=5, prs_mode="prefix")
    model = MEHRT(cfg)
    unique = {id(p): p.numel() for p in model.parameters()}
    assert model.num_parameters() == sum(unique.values())
    assert model.num_parameters(exclude_embeddings=True) == model.num_parameters() - V * cfg.d_model
    untied = MEHRT(dataclasses.replace(cfg, tie_embeddings=False))
    assert untied.num_parameters() == model.num_parameters() + V * cfg.d_model
    assert untied.num_parameters(exclude_embeddings=True) == model.num_parameters(True)
    # the PRS MLP runs once per sequence: not part of the per-token matmul weights
    n_prs = sum(p.numel() for p in model.prs_proj.parameters())
    n = model.num_parameters(exclude_embeddings=True) - n_prs + V * cfg.d_model
    assert model.flops_per_token(64) == 6 * n + 12 * cfg.n_layers * cfg.d_model * 64
    x = MEHRT(dataclasses.replace(cfg, prs_mode="cross_attention"))
    d, L, M = cfg.d_model, cfg.n_layers, cfg.n_prs_tokens
    n_x = x.num_parameters(exclude_embeddings=True) - n_prs - L * 2 * d * d + V * d  # k/v per sequence
    assert x.flops_per_token(64) == 6 * n_x + 12 * L * d * 64 + 12 * L * d * M


def test_llama_style_initialisation():
    cfg = tiny(d_model=128, n_layers=8, prs_dim=5, prs_mode="cross_attention",
               image_dims=IMAGE_DIMS)
    torch.manual_seed(0)
    model = MEHRT(cfg)
    residual = 0.02 / (2 * cfg.n_layers) ** 0.5
    for name, p in model.named_parameters():
        if name.endswith(("attn.out.weight", "mlp.down.weight", "xattn.out.weight")):
            assert abs(p.std().item() - residual) < 0.15 * residual, name
        elif name.endswith("norm.weight"):
            assert torch.equal(p, torch.ones_like(p)), name
        elif p.dim() == 2:
            assert abs(p.std().item() - 0.02) < 0.003, name


def test_config_for_and_sequence_limit():
    cfg = config_for("tiny", vocab_size=123, dropout=0.1)
    assert cfg.vocab_size == 123 and cfg.dropout == 0.1 and cfg.d_model == SIZES["tiny"].d_model
    with pytest.raises(ValueError, match="unknown MEHRT size"):
        config_for("huge", vocab_size=10)
    model = build(tiny(max_seq_len=8))
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_encode_returns_forward_hidden_states():
    cfg = tiny(image_dims=IMAGE_DIMS, prs_dim=5, prs_mode="prefix")
    model = build(cfg)
    ids, index, values = image_batch()
    kw = dict(image_index=index, image_values=values, prs=torch.randn(2, 5))
    with torch.no_grad():
        torch.testing.assert_close(model.encode(ids, **kw), model(ids, **kw)["hidden"])


# ---------------------------------------------------------------------------------- config hash
def test_config_hash_is_stable_and_roundtrips():
    cfg = MEHRTConfig(vocab_size=100)
    # A literal pins the hash across processes, machines and Python hash seeds.
    assert cfg.config_hash() == PINNED_HASH
    assert MEHRTConfig(vocab_size=100, n_kv_heads=4, d_ff=704).config_hash() == PINNED_HASH
    full = tiny(image_dims=IMAGE_DIMS, prs_dim=5, prs_mode="prefix")
    again = MEHRTConfig.from_dict(json.loads(json.dumps(full.to_dict())))
    assert again == full and again.config_hash() == full.config_hash()
    with pytest.raises(ValueError, match="unknown MEHRTConfig fields"):
        MEHRTConfig.from_dict({**full.to_dict(), "n_experts": 8})


PINNED_HASH = "d7576bc4a84a3fa5"  # issue 15: n_prs_tokens 10, prs_hidden, cross-attention every block


def _changed(name: str, value):
    """Another valid value for a config field."""
    if name == "image_dims":
        return (("ct", 7),)
    if name == "prs_mode":
        return "cross_attention"
    if name == "prs_dim":
        return 7
    if isinstance(value, bool):
        return not value
    if name == "d_model":
        return 64
    if name == "n_heads":
        return 2
    if name == "n_kv_heads":
        return 1
    return value * 2 if value else 0.5


def test_config_hash_changes_with_every_field():
    base = tiny(prs_dim=5, prs_mode="prefix", image_dims=IMAGE_DIMS)
    seen = {base.config_hash()}
    for f in dataclasses.fields(MEHRTConfig):
        changed = dataclasses.replace(base, **{f.name: _changed(f.name, getattr(base, f.name))})
        assert getattr(changed, f.name) != getattr(base, f.name)
        seen.add(changed.config_hash())
    assert len(seen) == len(dataclasses.fields(MEHRTConfig)) + 1


@pytest.mark.parametrize("bad", [
    dict(d_model=30, n_heads=4),  # heads of size 7.5
    dict(n_heads=4, n_kv_heads=3),  # groups must divide
    dict(prs_dim=5),  # prs_mode missing
    dict(prs_dim=5, prs_mode="film"),
    dict(image_dims=(("ct", 4), ("ct", 8))),
    dict(max_seq_len=0),
    dict(prs_dim=5, prs_mode="prefix", prs_hidden=0),
])
def test_invalid_configs_are_rejected(bad):
    with pytest.raises(ValueError, match="invalid MEHRTConfig"):
        tiny(**bad)


def test_docstring_parameter_table_matches_the_models():
    import encoders.mehrt.sizes as model_module  # the table moved from model.py to sizes.py

    for name, total, non_embedding in parameter_table(REFERENCE_VOCAB):
        row = next(line for line in model_module.__doc__.splitlines()
                   if line.split() and line.split()[0] == name)
        assert row.split()[-2:] == [f"{total / 1e6:.2f}M", f"{non_embedding / 1e6:.2f}M"], row


# ------------------------------------------------------------------------- mixed precision, bench
@pytest.mark.parametrize("prs_mode", [None, "prefix", "cross_attention"])
def test_bf16_autocast_training_step(prs_mode):
    """The GPU recipe (bf16 autocast over float32 weights) keeps dtypes consistent everywhere."""
    cfg = tiny(image_dims=IMAGE_DIMS, prs_dim=5 if prs_mode else None, prs_mode=prs_mode,
               cross_attention_every=1)
    model = build(cfg).train()
    ids, index, values = image_batch()
    segments = (torch.arange(16) >= 8).long().expand(2, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, image_index=index, image_values=values, segment_ids=segments, labels=ids,
                    prs=torch.randn(2, 5) if prs_mode else None)
    assert out["logits"].dtype == torch.bfloat16 and out["loss"].dtype == torch.float32
    out["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in model.parameters() if p.requires_grad)


def test_gpu_bench_smoke_runs_on_cpu(capsys):
    from encoders.mehrt import gpu_bench

    result = gpu_bench.main(["--device", "cpu", "--steps", "2", "--warmup", "1", "--images",
                             "--prs-mode", "prefix", "--json"])
    assert result["size"] == "tiny" and result["tokens_per_s"] > 0 and result["tflops"] > 0
    assert json.loads(capsys.readouterr().out)["n_parameters"] == result["n_parameters"]
