"""Building blocks of the fusion heads: tokenizers with learned missing tokens, masked pooling,
bidirectional cross-attention and guided (co-)attention.

Shapes: B = batch, De = structured EHR width, T = time bins, F = features per bin, K = studies per
modality, d = model width. Masks are bool with True = a real token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def mlp(d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    """Two-layer perceptron (Linear, GELU, Dropout, Linear)."""
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_hidden, d_out))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the valid tokens.

    Args:
        x: [B, N, d].
        mask: [B, N] bool.

    Returns:
        [B, d] (zeros where a row has no valid token).
    """
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp(min=1.0)


def param(*shape: int, std: float = 0.02) -> nn.Parameter:
    """A learned tensor initialised N(0, std^2)."""
    return nn.Parameter(torch.randn(*shape) * std)


class EHRTokenizer(nn.Module):
    """EHR tokens: one always-valid [EHR] token, S tokens from the structured vector, T time-bin tokens.

    The structured vector (bag of events) is mapped by one linear layer to S tokens (a learned
    "feature tokenizer", cf. FT-Transformer, Gorishniy et al. 2021); each time bin is a token
    (linear map of its F features + a learned bin-position embedding) masked until the first
    measurement. Output [B, 1 + S + T, d] and its mask.
    """

    def __init__(self, ehr_dim: int, ts_shape: tuple[int, int] | None, d: int, n_struct_tokens: int = 4):
        super().__init__()
        self.d = d
        self.cls = param(1, 1, d)
        self.n_struct = n_struct_tokens if ehr_dim > 0 else 0
        if self.n_struct:
            self.struct = nn.Linear(ehr_dim, self.n_struct * d)
            self.struct_type = param(1, 1, d)
        self.has_ts = ts_shape is not None and ts_shape[1] > 0
        if self.has_ts:
            t, f = ts_shape
            self.ts = nn.Linear(f, d)
            self.ts_pos = param(1, t, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(next(iter(b.values())))
        toks = [self.cls.expand(n, -1, -1)]
        masks = [torch.ones(n, 1, dtype=torch.bool)]
        if self.n_struct:
            toks.append(self.struct(b["ehr"]).view(n, self.n_struct, self.d) + self.struct_type)
            masks.append(torch.ones(n, self.n_struct, dtype=torch.bool))
        if self.has_ts:
            toks.append(self.ts(b["ts"]) + self.ts_pos)
            masks.append(b["ts_obs"])
        return self.norm(torch.cat(toks, 1)), torch.cat(masks, 1)


class SideTokenizer(nn.Module):
    """Side-modality tokens: one always-valid [IMG] token, then K study tokens per modality.

    Each modality m has a projection (d_m -> d), a type embedding, a recency-position embedding
    and a learned MISSING token: a sample without any visible study of m (or whose m was dropped
    by modality dropout) gets the missing token in slot 0 of m, so the head can tell "absent"
    from any real study and attention never sees an empty set.
    """

    def __init__(self, modalities: dict[str, tuple[int, int]], d: int):
        super().__init__()
        self.names = list(modalities)
        self.cls = param(1, 1, d)
        self.proj = nn.ModuleDict({m: nn.Linear(dm, d) for m, (dm, _) in modalities.items()})
        self.mod_type = nn.ParameterDict({m: param(1, 1, d) for m in modalities})
        self.pos = nn.ParameterDict({m: param(1, k, d) for m, (_, k) in modalities.items()})
        self.missing = nn.ParameterDict({m: param(d) for m in modalities})
        self.norm = nn.LayerNorm(d)

    def forward(self, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(next(iter(b.values())))
        toks = [self.cls.expand(n, -1, -1)]
        masks = [torch.ones(n, 1, dtype=torch.bool)]
        for m in self.names:
            tok = self.proj[m](b[f"{m}.seq"]) + self.pos[m]                 # [B, K, d]
            mask = b[f"{m}.seq_mask"] & b[f"{m}.present"][:, None]         # [B, K]
            absent = ~mask.any(1)                                          # [B]
            first = torch.where(absent[:, None], self.missing[m].expand(n, -1), tok[:, 0])
            tok = torch.cat([first[:, None], tok[:, 1:]], 1) + self.mod_type[m]
            mask = torch.cat([(mask[:, 0] | absent)[:, None], mask[:, 1:]], 1)
            toks.append(tok)
            masks.append(mask)
        return self.norm(torch.cat(toks, 1)), torch.cat(masks, 1)


class BiCrossAttentionLayer(nn.Module):
    """One bidirectional cross-attention layer (pre-norm), as in the CT + EHR fusion paper's EHR x image fusion.

    EHR tokens attend to image tokens and image tokens attend to EHR tokens (both from the
    layer's input, so the update is symmetric), each followed by a feed-forward block:

        e' = e + MHA(LN(e), LN(i), LN(i));  i' = i + MHA(LN(i), LN(e), LN(e));  x'' = x' + FFN(LN(x'))

    Padding masks make invalid tokens invisible as keys (ViLBERT-style co-attentional
    transformer layer, Lu et al. 2019, without the self-attention sublayer).
    """

    def __init__(self, d: int, n_heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.ln_e, self.ln_i = nn.LayerNorm(d), nn.LayerNorm(d)
        self.e2i = nn.MultiheadAttention(d, n_heads, dropout=dropout, batch_first=True)
        self.i2e = nn.MultiheadAttention(d, n_heads, dropout=dropout, batch_first=True)
        self.ff_e = nn.Sequential(nn.LayerNorm(d), mlp(d, 2 * d, d, dropout))
        self.ff_i = nn.Sequential(nn.LayerNorm(d), mlp(d, 2 * d, d, dropout))

    def forward(self, e: torch.Tensor, e_mask: torch.Tensor, i: torch.Tensor, i_mask: torch.Tensor,
                need_weights: bool = False):
        """Args: e [B, Ne, d], e_mask [B, Ne], i [B, Ni, d], i_mask [B, Ni].

        Returns:
            (e' [B, Ne, d], i' [B, Ni, d]) and, with need_weights, the two attention maps
            ([B, Ne, Ni] EHR->image, [B, Ni, Ne] image->EHR, averaged over heads).
        """
        en, inn = self.ln_e(e), self.ln_i(i)
        de, w_ei = self.e2i(en, inn, inn, key_padding_mask=~i_mask, need_weights=need_weights)
        di, w_ie = self.i2e(inn, en, en, key_padding_mask=~e_mask, need_weights=need_weights)
        e = e + de
        i = i + di
        e = e + self.ff_e(e)
        i = i + self.ff_i(i)
        if need_weights:
            return e, i, w_ei, w_ie
        return e, i


class GuidedAttention(nn.Module):
    """Attention over a token set guided by a vector (one step of alternating co-attention).

    Lu, Yang, Batra & Parikh 2016, "Hierarchical question-image co-attention for visual question
    answering": H = tanh(W_x X + W_g g 1^T), a = softmax(w_h^T H) over valid tokens, x_hat = sum a X.
    """

    def __init__(self, d: int):
        super().__init__()
        self.wx = nn.Linear(d, d)
        self.wg = nn.Linear(d, d)
        self.wh = nn.Linear(d, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x [B, N, d], mask [B, N], g [B, d]. Returns (x_hat [B, d], weights [B, N])."""
        h = torch.tanh(self.wx(x) + self.wg(g)[:, None])
        logits = self.wh(h).squeeze(-1).masked_fill(~mask, float("-inf"))
        a = F.softmax(logits, dim=-1)
        return (a.unsqueeze(-1) * x).sum(1), a
