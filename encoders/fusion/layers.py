"""Building blocks of the fusion heads: MLPs (fixed and input-scaled widths), masked pooling,
scaled dot-product attention of one query over a masked key set.

Shapes: B = batch, K = studies per modality (keys), d = model width. Masks are bool with True = a
real token.
"""

from __future__ import annotations

import torch
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


def scaled_widths(d_in: int, factors: tuple[float, ...] = (0.5, 0.25), floor: int = 16) -> tuple[int, ...]:
    """Hidden widths proportional to the input width (the CT + EHR fusion paper: "hidden-layer widths
    are scaled proportionally to the input embedding dimensionality"; the factors 1/2, 1/4 and the
    floor are ours, the paper gives none).

    Args:
        d_in: input width.
        factors: one per hidden layer.
        floor: smallest width.

    Returns:
        The hidden widths, e.g. 256 -> (128, 64), 40 -> (20, 16).
    """
    return tuple(max(int(floor), int(round(d_in * f))) for f in factors)


def scaled_mlp(d_in: int, d_out: int, dropout: float = 0.0, factors: tuple[float, ...] = (0.5, 0.25),
               floor: int = 16) -> nn.Sequential:
    """MLP whose hidden widths scale with its input (`scaled_widths`): (Linear, ReLU, Dropout) per
    hidden layer, then a linear output layer."""
    layers: list[nn.Module] = []
    w = d_in
    for h in scaled_widths(d_in, factors, floor):
        layers += [nn.Linear(w, h), nn.ReLU(), nn.Dropout(dropout)]
        w = h
    return nn.Sequential(*layers, nn.Linear(w, d_out))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention of one query per sample over its key set.

    A = softmax(q K^T / sqrt(d_k)) V, invalid keys masked out (every row needs one valid key).

    Args:
        q: [B, d] queries.
        k: [B, N, d] keys.
        v: [B, N, d] values.
        mask: [B, N] bool (None = all valid).

    Returns:
        (A [B, d], weights [B, N]).
    """
    logits = torch.einsum("bd,bnd->bn", q, k) / float(q.shape[-1]) ** 0.5
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    w = torch.softmax(logits, dim=-1)
    return torch.einsum("bn,bnd->bd", w, v), w
