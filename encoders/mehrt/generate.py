"""Batched Monte Carlo trajectories from a MEHRT / EHRT, with a key/value cache.

    paths = sample_paths(model, batch, target, Sampling(n_paths=10, max_new_tokens=128, seed=0))
    paths.hit        bool [B, N]   the outcome was drawn inside the window (the frequency estimate)
    paths.path_prob  float [B, N]  sum_i prod_{j<i} (1 - p_j) p_i along each path (the path estimate)

Both estimates come from the same forward passes (one per generated token), so their compute is equal.

The cache. `model.py` has no cache (training never needs one), and it stays unchanged: `_layer` runs
one decoder block with the block's own modules (norms, fused q|k|v, RoPE, SwiGLU, cross-attention)
and keeps each layer's keys and values in preallocated tensors, so a new token costs one position
instead of a recompute of the whole sequence. The attention lines repeat `Attention.forward`'s
(about ten lines); `tests/test_zeroshot.py` checks the cached logits against full recomputes.
Positions are explicit per row (the prompt's real tokens at P..P+L-1, the k-th new token at
P+L+k), so right-padded prompts of different lengths decode exactly as unpadded ones.

The estimators (Integrating Genomics into Multimodal EHR Foundation Models, Amar et al. 2025, 2.4).
p_i = sum over the outcome tokens of the model's probability at step i, from the *untempered*
distribution (temperature and top-p shape only which token is drawn). Each step draws a token from
the (tempered, top-p) distribution. If it is an outcome token inside the window, the path is a hit
for the frequency estimate, and the path continues with a token redrawn with the outcome tokens
masked out. The path the path estimator reads is therefore a draw from the model conditioned on
"no outcome yet", and sum_i prod_{j<i}(1 - p_j) p_i over it is an unbiased estimate of
P(outcome in the window within K tokens): summing over all outcome-free prefixes x_<i,
P(x_<i) p_i = prod_{j<i}(1 - p_j) q(x_<i) p_i with q the masked distribution. The frequency estimate
is unbiased for the same probability, since up to its first hit the path is an ordinary draw. Both
are exact expectations at temperature 1 and top-p 1 (the defaults); otherwise both estimate the
tempered process's probability only approximately (p_i stays untempered, as the issue asks). The
paper reads p_i along ordinary draws and does not say what happens after a hit; the redraw is ours,
to make the estimator unbiased while sharing the frequency estimate's paths.

The clock. Each time-interval token advances a path's clock by its bucket's lower bound
(`step_minutes`); a token counts for the window (start, end] when start <= clock <= end, the clock
read before the token (tokens before the first time token are at clock 0, just after the prediction
time). A path stops at [EOS] (its record ends: a negative, as a record that ends without the
outcome), when a time token moves the clock past the window's end, or after K tokens (a truncated
path: a negative, as in the paper, which generates K tokens). Tokens that cannot be generated
([PAD], [BOS], image placeholders, whose input is a study embedding) are masked out of every step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from encoders.mehrt.model import MEHRT, apply_rope


@dataclass(frozen=True)
class Sampling:
    """How trajectories are drawn (recorded in the model info).

    Args:
        n_paths: N trajectories per sample (the paper: 10).
        max_new_tokens: K tokens at most per trajectory.
        temperature: softmax temperature of the draws (p_i is always untempered).
        top_p: nucleus sampling mass (1 = the full distribution).
        seed: the draws' random seed (same seed, same inputs, same device -> same trajectories).
    """

    n_paths: int = 10
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_paths < 1 or self.max_new_tokens < 1 or self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"invalid Sampling {self}: need n_paths, max_new_tokens >= 1, temperature > 0, "
                             "0 < top_p <= 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Target:
    """What the sampler needs to know of the task, in token terms.

    Args:
        outcome_ids: token ids whose emission is the outcome.
        step_minutes: float [V], minutes each token moves the clock (0 for non-time tokens).
        start_min, end_min: the label window (start, end] in minutes after the prediction time (end may be inf).
        stop_ids: tokens that end a path ([EOS]).
        banned_ids: tokens never drawn.
    """

    outcome_ids: tuple[int, ...]
    step_minutes: np.ndarray
    start_min: float
    end_min: float
    stop_ids: tuple[int, ...] = ()
    banned_ids: tuple[int, ...] = ()


@dataclass
class Paths:
    """Sampled trajectories of B prompts x N paths.

    Attributes:
        tokens: int64 [B, N, K] generated ids (-1 after the path stopped).
        hit: bool [B, N], the outcome was drawn inside the window.
        path_prob: float64 [B, N], the path-computed probability.
        stop: int8 [B, N]: 0 = K tokens reached (truncated), 1 = past the window's end, 2 = [EOS].
    """

    tokens: np.ndarray
    hit: np.ndarray
    path_prob: np.ndarray
    stop: np.ndarray


# ------------------------------------------------------------------------------ cached decoding
@dataclass
class KVCache:
    """Keys and values per layer [R, Hkv, S_max, hd], which key slots are real [R, S_max], the next
    slot to write, each row's next RoPE position [R], and the PRS cross-attention memory (or None)."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]
    real: torch.Tensor
    length: int
    next_pos: torch.Tensor
    memory: torch.Tensor | None

    def repeat(self, n: int) -> KVCache:
        """Each row repeated n times in place (row r -> rows r*n .. r*n+n-1): N paths per prompt."""
        rep = lambda t: t.repeat_interleave(n, dim=0)  # noqa: E731
        return KVCache([rep(t) for t in self.k], [rep(t) for t in self.v], rep(self.real), self.length,
                       rep(self.next_pos), None if self.memory is None else rep(self.memory))


def _layer(block, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache, i: int,
           at: slice, mask: torch.Tensor) -> torch.Tensor:
    """One decoder block over new positions x [R, t, d], writing their keys/values into cache slots `at`.

    Same computation as `Block.forward` with `Attention.forward` reading cached keys and values.
    """
    a = block.attn
    R, t, _ = x.shape
    H, Hkv, hd = a.n_heads, a.n_kv_heads, a.head_dim
    q, k, v = a.qkv(block.attn_norm(x)).split([H * hd, Hkv * hd, Hkv * hd], dim=-1)
    q = apply_rope(q.view(R, t, H, hd).transpose(1, 2), cos, sin)  # [R, H, t, hd]
    cache.k[i][:, :, at] = apply_rope(k.view(R, t, Hkv, hd).transpose(1, 2), cos, sin)
    cache.v[i][:, :, at] = v.view(R, t, Hkv, hd).transpose(1, 2)
    S = at.stop
    y = F.scaled_dot_product_attention(q, cache.k[i][:, :, :S], cache.v[i][:, :, :S], attn_mask=mask,
                                       enable_gqa=Hkv != H)  # [R, H, t, hd]
    x = x + a.out(y.transpose(1, 2).reshape(R, t, H * hd))
    if block.xattn is not None and cache.memory is not None:
        x = x + block.xattn(x, cache.memory)
    return x + block.mlp(block.mlp_norm(x))


def _rope(model: MEHRT, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [R, 1, t, hd] at per-row positions [R, t]."""
    if int(positions.max()) >= model.rope_cos.shape[0]:
        raise ValueError(f"position {int(positions.max())} exceeds the model's RoPE table "
                         f"({model.rope_cos.shape[0]}): shorten the prompt or K")
    return model.rope_cos[positions][:, None], model.rope_sin[positions][:, None]


@torch.inference_mode()
def prefill(model: MEHRT, batch: dict[str, torch.Tensor], extra: int) -> tuple[torch.Tensor, KVCache]:
    """Run right-padded prompts once, keeping every layer's keys and values.

    Args:
        model: a MEHRT in eval mode.
        batch: collate output (input_ids [B, T], lengths [B]; image_index, image_values, prs when multimodal).
        extra: cache slots to reserve for generated tokens (K).

    Returns:
        (next-token logits [B, V] at each prompt's last real token, the cache).
    """
    cfg = model.config
    dev = next(model.parameters()).device
    ids, lengths = batch["input_ids"].to(dev), batch["lengths"].to(dev)
    B, T = ids.shape
    x = model.embed_inputs(ids, *(batch[k].to(dev) if k in batch else None for k in ("image_index", "image_values")))
    memory, P = None, 0
    if batch.get("prs") is not None and model.prs_proj is not None:
        prs_tokens = model.prs_proj(batch["prs"].to(dev, x.dtype))
        if cfg.prs_mode == "prefix":
            x, P = torch.cat([prs_tokens, x], dim=1), cfg.n_prs_tokens
        else:
            memory = prs_tokens
    S = P + T
    real = torch.zeros(B, S + extra, dtype=torch.bool, device=dev)
    real[:, :P] = True
    real[:, P:S] = torch.arange(T, device=dev)[None, :] < lengths[:, None]
    shape = (B, cfg.n_kv_heads, S + extra, cfg.head_dim)
    cache = KVCache([x.new_zeros(shape) for _ in model.blocks], [x.new_zeros(shape) for _ in model.blocks],
                    real, S, P + lengths, memory)
    ar = torch.arange(S, device=dev)
    mask = (ar[None, :] <= ar[:, None])[None] & real[:, None, :S]  # [B, S, S] causal, real keys
    mask = (mask | torch.eye(S, dtype=torch.bool, device=dev)[None])[:, None]  # padding rows see themselves
    cos, sin = _rope(model, ar.expand(B, S))
    for i, block in enumerate(model.blocks):
        x = _layer(block, x, cos, sin, cache, i, slice(0, S), mask)
    h = model.norm(x)
    last = model.lm_head(h[torch.arange(B, device=dev), P + lengths - 1])  # [B, V]
    return last.float(), cache


@torch.inference_mode()
def decode(model: MEHRT, cache: KVCache, ids: torch.Tensor) -> torch.Tensor:
    """Feed one new token per row; returns next-token logits [R, V] (the cache advances by one)."""
    x = model.tok_emb(ids[:, None])  # [R, 1, d]
    s = cache.length
    cache.real[:, s] = True
    cos, sin = _rope(model, cache.next_pos[:, None])
    mask = cache.real[:, None, None, :s + 1]  # [R, 1, 1, s+1]: every real key is in the past
    for i, block in enumerate(model.blocks):
        x = _layer(block, x, cos, sin, cache, i, slice(s, s + 1), mask)
    cache.length, cache.next_pos = s + 1, cache.next_pos + 1
    return model.lm_head(model.norm(x))[:, 0].float()


# ------------------------------------------------------------------------------ sampling
def _draw(logits: torch.Tensor, s: Sampling, gen: torch.Generator) -> torch.Tensor:
    """One token per row from softmax(logits / temperature), restricted to the top-p nucleus."""
    probs = torch.softmax(logits / s.temperature, dim=-1)
    if s.top_p < 1.0:
        sp, order = probs.sort(dim=-1, descending=True)
        keep = (sp.cumsum(-1) - sp) < s.top_p  # the smallest prefix whose mass reaches top_p
        probs = torch.zeros_like(probs).scatter(-1, order, sp * keep)
    return torch.multinomial(probs, 1, generator=gen).squeeze(1)


@torch.inference_mode()
def sample_paths(model: MEHRT, batch: dict[str, torch.Tensor], target: Target, sampling: Sampling,
                 chunk: int = 0) -> Paths:
    """N trajectories per prompt, with both estimators read along them (see the module docstring).

    Args:
        model: a MEHRT in eval mode.
        batch: collated prompts (right-padded), B of them.
        target: outcome tokens, clock and window.
        sampling: N, K, temperature, top-p, seed.
        chunk: folded into the seed, so successive batches of one run draw different numbers.

    Returns:
        Paths.
    """
    dev = next(model.parameters()).device
    N, K = sampling.n_paths, sampling.max_new_tokens
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(sampling.seed) * 1_000_003 + int(chunk))
    logits, cache = prefill(model, batch, K)
    B = logits.shape[0]
    cache, logits = cache.repeat(N), logits.repeat_interleave(N, dim=0)
    R = B * N
    V = logits.shape[1]
    banned = torch.zeros(V, dtype=torch.bool, device=dev)
    banned[list(target.banned_ids)] = True
    outcome = torch.zeros(V, dtype=torch.bool, device=dev)
    outcome[list(target.outcome_ids)] = True
    stop_tok = torch.zeros(V, dtype=torch.bool, device=dev)
    stop_tok[list(target.stop_ids)] = True
    minutes = torch.as_tensor(np.asarray(target.step_minutes, np.float64), device=dev)
    clock = torch.zeros(R, dtype=torch.float64, device=dev)
    alive = torch.ones(R, dtype=torch.bool, device=dev)
    hit = torch.zeros(R, dtype=torch.bool, device=dev)
    survive = torch.ones(R, dtype=torch.float64, device=dev)  # prod_{j<i} (1 - p_j) over in-window steps
    path_prob = torch.zeros(R, dtype=torch.float64, device=dev)
    stop = torch.zeros(R, dtype=torch.int8, device=dev)
    tokens = torch.full((R, K), -1, dtype=torch.long, device=dev)
    for step in range(K):
        logits = logits.masked_fill(banned, float("-inf"))
        p_out = torch.softmax(logits, dim=-1)[:, outcome].sum(-1).double()  # untempered p_i
        inside = alive & (clock >= target.start_min) & (clock <= target.end_min)
        path_prob += torch.where(inside, survive * p_out, 0.0)
        survive = torch.where(inside, survive * (1.0 - p_out), survive)
        tok = _draw(logits, sampling, gen)
        redraw = inside & outcome[tok]
        hit |= redraw
        if redraw.any():  # the path continues outcome-free (see the module docstring)
            rows = redraw.nonzero().squeeze(1)
            masked = logits[rows].masked_fill(outcome, float("-inf"))
            ok = torch.isfinite(masked).any(-1)  # every allowed token is an outcome token: nothing to draw
            tok[rows[ok]] = _draw(masked[ok], sampling, gen)
            alive[rows[~ok]] = False
        tokens[:, step] = torch.where(alive, tok, -1)
        clock = torch.where(alive, clock + minutes[tok], clock)
        past = alive & (clock > target.end_min)
        eos = alive & stop_tok[tok]
        stop = torch.where(past, 1, torch.where(eos, 2, stop)).to(torch.int8)
        alive &= ~(past | eos)
        if not alive.any():
            break
        logits = decode(model, cache, torch.where(alive, tok, 0))
    shape = (B, N)
    return Paths(tokens=tokens.view(B, N, K).cpu().numpy(), hit=hit.view(shape).cpu().numpy(),
                 path_prob=path_prob.view(shape).cpu().numpy(), stop=stop.view(shape).cpu().numpy())
