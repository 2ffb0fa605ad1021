"""MEHRT: a Llama-style decoder-only transformer over tokenized multimodal patient timelines.

A patient timeline is a sequence of structured tokens (codes, binned values, time gaps) produced by
`encoders.mehrt.tokenizer`. Image studies (modalities such as ``ct``, ``wsi``, ``cxr``) sit in that
sequence at their time as *placeholder* positions: their input vector is not a token embedding but a
per-modality linear projection of the study's precomputed embedding plus a learned modality
embedding. A static polygenic-risk-score (PRS) vector is projected into ``n_prs_tokens`` soft tokens
as "Integrating Genomics into Multimodal EHR Foundation Models" (Amar et al., 2025) describes: a
2-layer MLP (Linear -> GELU -> Linear) with a scaled-sigmoid head, 2 sigmoid(z) - 1, so every value
lies in (-1, 1); 10 tokens. The tokens enter either through a cross-attention sublayer in every
decoder block (``prs_mode="cross_attention"``, the paper's GPT-PRS-CROSS) or as a prefix prepended
to the sequence (``prs_mode="prefix"``, the paper's soft-token variant). The causal LM loss scores
structured tokens only (never the soft tokens, as in the paper).

Architecture (Llama): pre-norm blocks, RMSNorm, rotary position embeddings (RoPE), grouped-query
attention through ``F.scaled_dot_product_attention`` (flash kernels on GPU), SwiGLU MLP, tied
input/output embeddings, no biases.

The file reads top to bottom: config, RMSNorm, RoPE, SwiGLU, attention, block,
model. Optimised kernels that are not the model's story (the fused cross-entropy) live in
`encoders.mehrt.kernels`.

Named sizes (tiny ... 982M) and their parameter counts: `encoders.mehrt.sizes`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# The fused loss kernel lives in kernels.py; both names stay importable from here.
from encoders.mehrt.kernels import IGNORE_INDEX, cross_entropy

PRS_MODES = ("prefix", "cross_attention")
# The Genomics paper's PRS MLP: hidden size 4096 for its 960-wide GPT-2 backbone (10 tokens of 960).
GENOMICS_PAPER_WIDTH, GENOMICS_PAPER_PRS_HIDDEN = 960, 4096


def prs_hidden_dim(d_model: int, multiple_of: int = 64) -> int:
    """PRS MLP hidden size: the Genomics paper's 4096 at its width 960, round_up(4096 d / 960, 64) elsewhere.

    Our choice, not the paper's (it reports one width): a fixed 4096 would make the PRS MLP the bulk
    of the small models (2.6M output weights at d_model=64, 4x the tiny backbone) and bend the
    scaling plot's parameter axis. ``MEHRTConfig(prs_hidden=...)`` sets any other size.
    """
    return multiple_of * math.ceil(GENOMICS_PAPER_PRS_HIDDEN * d_model / GENOMICS_PAPER_WIDTH / multiple_of)


def llama_ffn_dim(d_model: int, multiple_of: int = 64) -> int:
    """SwiGLU hidden size by Llama's rule: 2/3 of 4*d (same FLOPs as a 4*d GELU MLP), rounded up.

    Args:
        d_model: model width.
        multiple_of: round up to a multiple of this (keeps matmuls tile-friendly on GPUs).

    Returns:
        The hidden size.
    """
    return multiple_of * math.ceil(int(8 * d_model / 3) / multiple_of)


# --------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class MEHRTConfig:
    """Hyperparameters of one MEHRT model (frozen; `config_hash` identifies it).

    ``n_kv_heads=None`` means plain multi-head attention and ``d_ff=None`` means `llama_ffn_dim`;
    both are resolved at construction so equal models have equal configs and hashes.
    ``image_dims`` maps modality name -> study-embedding size, in the order that ``image_index``
    counts from 1. ``n_prs_tokens`` soft tokens come out of the PRS MLP (hidden size
    ``prs_hidden``, None = `prs_hidden_dim`). ``cross_attention_every=k`` puts a cross-attention
    sublayer in blocks 0, k, 2k, ... (only with ``prs_mode="cross_attention"``); the default 1 is
    every block, as in the Genomics paper.
    """

    vocab_size: int
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None
    d_ff: int | None = None
    max_seq_len: int = 2048
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    tie_embeddings: bool = True
    image_dims: tuple[tuple[str, int], ...] = ()
    prs_dim: int | None = None
    prs_mode: str | None = None
    n_prs_tokens: int = 10
    prs_hidden: int | None = None
    cross_attention_every: int = 1

    def __post_init__(self) -> None:
        # Frozen dataclass: normalise through object.__setattr__ (lists from JSON -> tuples).
        object.__setattr__(self, "image_dims", tuple((str(n), int(d)) for n, d in self.image_dims))
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", llama_ffn_dim(self.d_model))
        if self.prs_hidden is None:
            object.__setattr__(self, "prs_hidden", prs_hidden_dim(self.d_model))
        problems = []
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            problems.append(f"d_model={self.d_model} must split into n_heads={self.n_heads} heads "
                            "of even size (RoPE rotates pairs of dimensions)")
        if self.n_heads % self.n_kv_heads:
            problems.append(f"n_heads={self.n_heads} must be a multiple of "
                            f"n_kv_heads={self.n_kv_heads}")
        if self.prs_mode not in (None, *PRS_MODES):
            problems.append(f"prs_mode={self.prs_mode!r} must be one of {PRS_MODES} or None")
        if (self.prs_mode is None) != (self.prs_dim is None):
            problems.append("prs_dim and prs_mode must be set together (or both left None)")
        names = [n for n, _ in self.image_dims]
        if len(set(names)) != len(names) or any(d <= 0 for _, d in self.image_dims):
            problems.append(f"image_dims={self.image_dims} needs unique names and positive sizes")
        if min(self.vocab_size, self.n_layers, self.max_seq_len, self.n_prs_tokens, self.prs_hidden,
               self.cross_attention_every) <= 0:
            problems.append("vocab_size, n_layers, max_seq_len, n_prs_tokens, prs_hidden and "
                            "cross_attention_every must be positive")
        if problems:
            raise ValueError("invalid MEHRTConfig: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def n_prefix_tokens(self) -> int:
        """Soft tokens prepended to every sequence (the PRS prefix), 0 without one."""
        return self.n_prs_tokens if self.prs_mode == "prefix" else 0

    @property
    def image_embed_dim(self) -> int:
        """E, the width of ``image_values`` (largest modality embedding; 0 without images)."""
        return max((d for _, d in self.image_dims), default=0)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (``image_dims`` as a list of [name, dim] pairs)."""
        out = dataclasses.asdict(self)
        out["image_dims"] = [[n, d] for n, d in self.image_dims]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MEHRTConfig:
        """Inverse of `to_dict`; unknown keys are an error (a config from another version).

        Args:
            data: a dict as written by `to_dict`.

        Returns:
            The config.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown MEHRTConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**data)

    def config_hash(self) -> str:
        """Stable 16-hex-digit hash of all fields (same across processes and machines)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------- layers
class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * w: LayerNorm without centring or bias (Zhang & Sennrich)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., d] -> [..., d]
        # Statistics in float32: squaring bf16 activations loses too much precision.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight


def rope_tables(head_dim: int, max_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for rotary position embeddings (Su et al., RoFormer).

    Dimension pair (i, i + head_dim/2) of a query/key at position p is rotated by the angle
    p * theta^(-2i/head_dim), so q.k depends on positions only through their difference.

    Args:
        head_dim: attention head size (even).
        max_len: number of positions to tabulate.
        theta: RoPE base.

    Returns:
        (cos, sin), each [max_len, head_dim] float32.
    """
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # [hd/2]
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)  # [L, hd/2]
    angles = torch.cat([angles, angles], dim=-1)  # [L, hd]: same angle for both halves of a pair
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin); HF Llama's "rotate-half" layout.

    Args:
        x: [B, H, T, hd] queries or keys.
        cos: [T, hd] or [B, 1, T, hd] (per-row positions), in x's dtype.
        sin: same shape as cos.

    Returns:
        [B, H, T, hd].
    """
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class SwiGLU(nn.Module):
    """MLP: down(silu(x W_gate) * (x W_up)) (Shazeer 2020, "GLU variants improve transformers")."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        # Separate gate/up matmuls: on CPU, splitting one fused output makes silu run on strided
        # halves and its backward concatenate them, which costs more than the extra matmul call.
        self.gate = nn.Linear(d_model, d_ff, bias=False)
        self.up = nn.Linear(d_model, d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, d] -> [B, T, d]
        return self.down(F.silu(self.gate(x)) * self.up(x))  # inner tensors [B, T, d_ff]


class Attention(nn.Module):
    """Causal self-attention with grouped-query attention (GQA, Ainslie et al. 2023).

    ``n_kv_heads`` key/value heads are shared by groups of ``n_heads / n_kv_heads`` query heads:
    query head h reads kv head h // group (SDPA's ``enable_gqa``, equal to repeat_interleave).
    """

    def __init__(self, cfg: MEHRTConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.dropout = cfg.dropout
        kv_width = cfg.n_kv_heads * cfg.head_dim
        self.qkv = nn.Linear(cfg.d_model, cfg.d_model + 2 * kv_width, bias=False)  # fused q|k|v
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, T, d]; mask None (plain causal) or bool [B, 1, T, T] (True = may attend)."""
        B, T, _ = x.shape
        H, Hkv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        q, k, v = self.qkv(x).split([H * hd, Hkv * hd, Hkv * hd], dim=-1)
        q = q.view(B, T, H, hd).transpose(1, 2)  # [B, H, T, hd]
        k = k.view(B, T, Hkv, hd).transpose(1, 2)  # [B, Hkv, T, hd]
        v = v.view(B, T, Hkv, hd).transpose(1, 2)  # [B, Hkv, T, hd]
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)  # bf16 under autocast: no fp32 promotion
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(  # softmax(q k^T / sqrt(hd) + mask) v
            q, k, v, attn_mask=mask, is_causal=mask is None,
            dropout_p=self.dropout if self.training else 0.0, enable_gqa=Hkv != H)
        return self.out(y.transpose(1, 2).reshape(B, T, H * hd))  # [B, T, d]


class PRSProjection(nn.Module):
    """PRS vector -> soft tokens: Linear -> GELU -> Linear, then the scaled sigmoid 2 sigmoid(z) - 1.

    The Genomics paper (Amar et al., 2025, Methods): 2-layer MLP, GELU in the middle, a sigmoid
    head scaled to (-1, 1), 10 tokens of the model width (hidden 4096 at width 960). It names the
    range, not the formula: 2 sigmoid(z) - 1 (= tanh(z / 2)) is the sigmoid mapped onto (-1, 1).
    Both layers keep biases (a plain MLP), unlike the bias-free backbone.
    """

    def __init__(self, cfg: MEHRTConfig):
        super().__init__()
        self.n_tokens, self.d_model = cfg.n_prs_tokens, cfg.d_model
        self.fc1 = nn.Linear(cfg.prs_dim, cfg.prs_hidden)
        self.fc2 = nn.Linear(cfg.prs_hidden, cfg.n_prs_tokens * cfg.d_model)

    def forward(self, prs: torch.Tensor) -> torch.Tensor:  # [B, prs_dim] -> [B, n_prs_tokens, d]
        z = self.fc2(F.gelu(self.fc1(prs)))  # [B, n_prs_tokens * d]
        return (2.0 * torch.sigmoid(z) - 1.0).view(prs.shape[0], self.n_tokens, self.d_model)


class CrossAttention(nn.Module):
    """Cross-attention from timeline positions to the PRS tokens: x + Attn(norm(x), prs_tokens).

    The Genomics paper's GPT-PRS-CROSS is Hugging Face GPT-2 with cross-attention: in every block a
    pre-norm sublayer between self-attention and the MLP, added to the residual without a gate
    (its "45M" extra parameters at width 960, 12 layers = 12 x 4 x 960^2: q, k, v, out). Ours
    follows the Llama backbone (RMSNorm, no biases); no RoPE or mask: the PRS is static.
    """

    def __init__(self, cfg: MEHRTConfig):
        super().__init__()
        self.n_heads, self.head_dim = cfg.n_heads, cfg.head_dim
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.q = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model, bias=False)
        self.out = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """x [B, T, d], memory [B, M, d] (PRS tokens) -> the sublayer's output [B, T, d] (no residual)."""
        B, T, _ = x.shape
        H, hd, M = self.n_heads, self.head_dim, memory.shape[1]
        q = self.q(self.norm(x)).view(B, T, H, hd).transpose(1, 2)  # [B, H, T, hd]
        k, v = self.kv(memory).view(B, M, 2, H, hd).permute(2, 0, 3, 1, 4)  # each [B, H, M, hd]
        y = F.scaled_dot_product_attention(q, k, v)  # [B, H, T, hd]
        return self.out(y.transpose(1, 2).reshape(B, T, H * hd))


class Block(nn.Module):
    """Pre-norm decoder block: x + Attn(norm x), [x + CrossAttn(norm x, PRS)], x + MLP(norm x)."""

    def __init__(self, cfg: MEHRTConfig, cross_attention: bool):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.xattn = CrossAttention(cfg) if cross_attention else None
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg.d_model, cfg.d_ff)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None, memory: torch.Tensor | None) -> torch.Tensor:
        """x [B, T, d] -> [B, T, d]; memory [B, M, d] PRS tokens or None."""
        x = x + self.drop(self.attn(self.attn_norm(x), cos, sin, mask))
        if self.xattn is not None and memory is not None:
            x = x + self.drop(self.xattn(x, memory))  # GPT-2's place: after self-attention, before the MLP
        return x + self.drop(self.mlp(self.mlp_norm(x)))


# ---------------------------------------------------------------------------------------- model
class MEHRT(nn.Module):
    """The multimodal EHR transformer. See the module docstring for the overall design.

    Args:
        config: the model's hyperparameters.
    """

    def __init__(self, config: MEHRTConfig):
        super().__init__()
        cfg = self.config = config
        d = cfg.d_model
        self.tok_emb = nn.Embedding(cfg.vocab_size, d)
        # One projection per image modality, study embedding -> model width. No bias: the learned
        # per-modality embedding added after it plays that role (and tells modalities apart).
        self.image_proj = nn.ModuleDict({name: nn.Linear(dim, d, bias=False)
                                         for name, dim in cfg.image_dims})
        self.modality_emb = nn.Parameter(torch.zeros(len(cfg.image_dims), d))  # [M, d]
        # PRS vector -> n_prs_tokens soft tokens in (-1, 1) (prefix or cross-attention memory).
        self.prs_proj = PRSProjection(cfg) if cfg.prs_mode else None
        self.blocks = nn.ModuleList(
            Block(cfg, cross_attention=cfg.prs_mode == "cross_attention"
                  and i % cfg.cross_attention_every == 0)
            for i in range(cfg.n_layers))
        self.norm = RMSNorm(d, cfg.norm_eps)
        self.lm_head = nn.Linear(d, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:  # one matrix embeds tokens and scores next tokens (Press & Wolf)
            self.lm_head.weight = self.tok_emb.weight
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len + cfg.n_prefix_tokens, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)  # [max_len, hd]
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Llama/GPT-2 init: N(0, 0.02) weights; residual output projections get 0.02/sqrt(2L).

        Each block adds two residual branches; shrinking their last projection by sqrt(2L) keeps
        the residual stream's variance roughly independent of depth at initialisation.
        """
        std = 0.02
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, RMSNorm):
                nn.init.ones_(module.weight)
        nn.init.normal_(self.modality_emb, mean=0.0, std=std)
        for name, p in self.named_parameters():
            if name.endswith(("attn.out.weight", "mlp.down.weight", "xattn.out.weight")):
                nn.init.normal_(p, mean=0.0, std=std / math.sqrt(2 * self.config.n_layers))

    # ---------------------------------------------------------------------------- inputs
    def embed_inputs(self, input_ids: torch.Tensor, image_index: torch.Tensor | None,
                     image_values: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with image placeholders replaced by projected study embeddings.

        Args:
            input_ids: [B, T] long token ids (the id at a placeholder is not used).
            image_index: [B, T] long, 0 = ordinary token, m = the m-th modality of image_dims.
            image_values: [B, T, E] float, the study embedding at placeholder positions.

        Returns:
            [B, T, d].
        """
        x = self.tok_emb(input_ids)  # [B, T, d]
        if image_index is None or not self.config.image_dims:
            return x
        if image_values is None:
            raise ValueError("image_index was given without image_values")
        for m, (name, dim) in enumerate(self.config.image_dims, start=1):
            # Dense projection + where() rather than gathering placeholder rows: static shapes
            # (torch.compile-friendly) and the extra FLOPs are ~1% of a block.
            study = self.image_proj[name](image_values[..., :dim].to(x.dtype))  # [B, T, d]
            x = torch.where((image_index == m).unsqueeze(-1), study + self.modality_emb[m - 1], x)
        return x

    def _positions(self, segment_ids: torch.Tensor | None, P: int, T: int) -> torch.Tensor | None:
        """RoPE positions: None = 0..P+T-1 for every row; with packed documents each restarts at P.

        The start of the current document is a running max of "index where a new segment begins".
        """
        if segment_ids is None:
            return None
        B = segment_ids.shape[0]
        idx = torch.arange(T, device=segment_ids.device).expand(B, T)  # [B, T]
        new_doc = torch.ones_like(segment_ids, dtype=torch.bool)
        new_doc[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
        start = torch.where(new_doc, idx, torch.zeros_like(idx)).cummax(dim=1).values  # [B, T]
        prefix = torch.arange(P, device=idx.device).expand(B, P)
        return torch.cat([prefix, idx - start + P], dim=1)  # [B, P + T]

    def _attention_mask(self, attention_mask: torch.Tensor | None,
                        segment_ids: torch.Tensor | None, P: int, T: int) -> torch.Tensor | None:
        """Boolean [B, 1, S, S] mask (S = P + T, True = may attend), or None for plain causal.

        allowed[q, k] = k <= q  and  key k is real  and  (same document or k is a prefix token).
        Each position may also attend to itself, so a fully masked row (left padding) still has a
        finite softmax; real tokens never see padding, so their outputs are unaffected.
        """
        if attention_mask is None and segment_ids is None:
            return None  # SDPA's is_causal path: no mask tensor, flash kernels on GPU
        ref = attention_mask if attention_mask is not None else segment_ids
        B, S, dev = ref.shape[0], P + T, ref.device
        ar = torch.arange(S, device=dev)
        allowed = (ar[None, :] <= ar[:, None]).expand(B, S, S)  # [B, S, S] causal
        if attention_mask is not None:
            key_real = torch.cat([torch.ones(B, P, dtype=torch.bool, device=dev),
                                  attention_mask.bool()], dim=1)  # [B, S]
            allowed = allowed & key_real[:, None, :]
        if segment_ids is not None:
            seg = torch.cat([segment_ids.new_zeros(B, P), segment_ids], dim=1)  # [B, S]
            same_doc = seg[:, :, None] == seg[:, None, :]  # [B, S, S]
            allowed = allowed & (same_doc | (ar < P)[None, None, :])  # the prefix is shared
        allowed = allowed | torch.eye(S, dtype=torch.bool, device=dev)[None]
        return allowed[:, None]  # [B, 1, S, S], broadcast over heads

    # --------------------------------------------------------------------------- forward
    def encode(self, input_ids: torch.Tensor, *, image_index: torch.Tensor | None = None,
               image_values: torch.Tensor | None = None, prs: torch.Tensor | None = None,
               attention_mask: torch.Tensor | None = None,
               segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Final (normalised) hidden states, e.g. for linear probes.

        Args:
            input_ids: [B, T] long.
            image_index: [B, T] long, 0 = token, m = m-th image modality (config order).
            image_values: [B, T, E] float, study embeddings (first dim_m entries used).
            prs: [B, prs_dim] float, or None to skip the PRS pathway.
            attention_mask: [B, T] bool, True = real token, False = padding.
            segment_ids: [B, T] int, document id per position for packed sequences (contiguous).

        Returns:
            [B, T, d] hidden states (PRS prefix positions removed).
        """
        cfg = self.config
        B, T = input_ids.shape
        x = self.embed_inputs(input_ids, image_index, image_values)  # [B, T, d]
        memory, P = None, 0
        if prs is not None:
            if self.prs_proj is None:
                raise ValueError("prs was given but this MEHRT config has prs_mode=None")
            prs_tokens = self.prs_proj(prs.to(x.dtype))  # [B, n_prs, d], values in (-1, 1)
            if cfg.prs_mode == "prefix":
                x, P = torch.cat([prs_tokens, x], dim=1), cfg.n_prs_tokens  # [B, P + T, d]
            else:
                memory = prs_tokens  # [B, n_prs, d], read by the cross-attention sublayers
        if P + T > self.rope_cos.shape[0]:
            raise ValueError(f"sequence of {T} tokens exceeds max_seq_len={cfg.max_seq_len}")
        positions = self._positions(segment_ids, P, T)
        if positions is None:
            cos, sin = self.rope_cos[: P + T], self.rope_sin[: P + T]  # [S, hd]
        else:
            cos, sin = self.rope_cos[positions][:, None], self.rope_sin[positions][:, None]
        mask = self._attention_mask(attention_mask, segment_ids, P, T)
        for block in self.blocks:
            x = block(x, cos, sin, mask, memory)
        return self.norm(x)[:, P:]  # [B, T, d]

    def forward(self, input_ids: torch.Tensor, *, image_index: torch.Tensor | None = None,
                image_values: torch.Tensor | None = None, prs: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor | None]:
        """Next-token logits and, given labels, the causal LM loss over structured tokens.

        Args:
            input_ids, image_index, image_values, prs, attention_mask, segment_ids: as in `encode`.
            labels: [B, T] long, usually input_ids; -100 marks positions to skip. The model shifts
                them (position t predicts labels[t + 1]).

        Returns:
            dict with logits [B, T, V], loss (scalar or None), hidden [B, T, d].
        """
        hidden = self.encode(input_ids, image_index=image_index, image_values=image_values,
                             prs=prs, attention_mask=attention_mask, segment_ids=segment_ids)
        logits = self.lm_head(hidden)  # [B, T, V]
        loss = None
        if labels is not None:
            loss = self.lm_loss(logits, labels, image_index=image_index,
                                attention_mask=attention_mask, segment_ids=segment_ids)
        return {"logits": logits, "loss": loss, "hidden": hidden}

    @staticmethod
    def lm_loss(logits: torch.Tensor, labels: torch.Tensor, *,
                image_index: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Mean next-token cross-entropy over structured-token targets only.

        Target t+1 of position t is skipped when it is an image placeholder (studies are inputs,
        not predictions), padding, the first token of another packed document (that document
        is invisible from t), or when position t itself is padding. PRS prefix positions never
        appear here: `encode` has already removed them.

        Args:
            logits: [B, T, V].
            labels: [B, T] long (unshifted).
            image_index, attention_mask, segment_ids: as in `encode`.

        Returns:
            Scalar loss (0 with a zero gradient if no target is left).
        """
        B, T, V = logits.shape
        targets = labels[:, 1:]  # [B, T-1], targets[:, t] is predicted at position t
        skip = targets == IGNORE_INDEX
        if image_index is not None:
            skip = skip | (image_index[:, 1:] > 0)
        if attention_mask is not None:
            real = attention_mask.bool()
            skip = skip | ~real[:, 1:] | ~real[:, :-1]
        if segment_ids is not None:
            skip = skip | (segment_ids[:, 1:] != segment_ids[:, :-1])
        targets = targets.masked_fill(skip, IGNORE_INDEX)
        # Pad the last position with an ignored target instead of slicing logits[:, :-1], which
        # would copy the whole [B, T, V] tensor.
        targets = F.pad(targets, (0, 1), value=IGNORE_INDEX)  # [B, T]
        return cross_entropy(logits.reshape(B * T, V), targets.reshape(-1))

    # --------------------------------------------------------------------------- accounting
    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Number of parameters (a tied matrix counts once).

        Args:
            exclude_embeddings: drop the token embedding (and an untied output head), as in
                Kaplan et al.'s "non-embedding" count.

        Returns:
            The count.
        """
        n = sum(p.numel() for p in self.parameters())  # parameters() yields shared tensors once
        if exclude_embeddings:
            n -= self.tok_emb.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward), the PaLM/Chinchilla MFU formula.

        6 N + 12 L d S: each matmul weight costs 2 FLOPs per token forward and 4 backward, and
        attention scores plus the weighted sum of values cost 2 * 2 * S * d per layer forward
        (x3 with backward). N: non-embedding parameters plus the output head, less the PRS MLP and
        cross-attention k/v weights (run once per sequence, not per position); each cross-attention
        sublayer adds 12 d M (M = n_prs_tokens keys). Causal masking's skipped half is counted, as
        in PaLM, so MFU stays comparable across implementations.

        Args:
            seq_len: tokens per sequence S (include the PRS prefix if one is used).

        Returns:
            FLOPs per token.
        """
        cfg = self.config
        per_sequence = sum(p.numel() for n, p in self.named_parameters()
                           if n.startswith("prs_proj.") or ".xattn.kv." in n)
        n_matmul = (self.num_parameters(exclude_embeddings=True) - per_sequence
                    + cfg.vocab_size * cfg.d_model)
        n_xattn = sum(b.xattn is not None for b in self.blocks)
        return (6.0 * n_matmul + 12.0 * cfg.n_layers * cfg.d_model * seq_len
                + 12.0 * n_xattn * cfg.d_model * cfg.n_prs_tokens)
