"""Named MEHRT sizes: `SIZES`, `config_for(size, vocab_size)` and their measured parameter counts.

Named sizes (``SIZES``; parameter counts measured with ``python -m encoders.mehrt.sizes`` at the
reference vocabulary of 8192 tokens, no image projections, no PRS; embeddings counted once):

=======  =======  ========  =======  ==========  =====  ===========  =============
size     d_model  n_layers  n_heads  n_kv_heads  d_ff   parameters   non-embedding
=======  =======  ========  =======  ==========  =====  ===========  =============
tiny          64         2        4           2    192        0.62M          0.10M
small        192         6        6           2    512        3.93M          2.36M
9M           256         9        4           2    704        8.74M          6.64M
28M          384        16        6           2   1024       28.32M         25.18M
56M          576        14        9           3   1536       54.28M         49.56M
109M         768        16       12           4   2048      106.98M        100.69M
256M        1024        21       16           8   2752      252.03M        243.64M
535M        1536        21       24           8   4096      541.13M        528.55M
982M        2048        22       32           8   5504      991.52M        974.74M
=======  =======  ========  =======  ==========  =====  ===========  =============
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from encoders.mehrt.model import MEHRT, MEHRTConfig

REFERENCE_VOCAB = 8192


def _size(d: int, layers: int, heads: int, kv: int, max_len: int = 2048) -> MEHRTConfig:
    return MEHRTConfig(vocab_size=REFERENCE_VOCAB, d_model=d, n_layers=layers, n_heads=heads,
                       n_kv_heads=kv, max_seq_len=max_len)


# tiny/small run on CPU (tests, smoke budgets); the rest are the MEHRT paper's scales (OpenReview ywFxZhMnuB). Larger models
# keep head_dim = 64 (flash-attention friendly) and use GQA to shrink K/V.
SIZES: dict[str, MEHRTConfig] = {
    "tiny": _size(64, 2, 4, 2, max_len=512),
    "small": _size(192, 6, 6, 2, max_len=1024),
    "9M": _size(256, 9, 4, 2),
    "28M": _size(384, 16, 6, 2),
    "56M": _size(576, 14, 9, 3),
    "109M": _size(768, 16, 12, 4),
    "256M": _size(1024, 21, 16, 8),
    "535M": _size(1536, 21, 24, 8),
    "982M": _size(2048, 22, 32, 8),
}


def config_for(size: str, vocab_size: int, **overrides: Any) -> MEHRTConfig:
    """The named size's config for a given vocabulary, with optional field overrides.

    Args:
        size: a key of `SIZES` ("tiny", "small", "9M", ..., "982M").
        vocab_size: the tokenizer's vocabulary size.
        **overrides: any other MEHRTConfig fields (image_dims, prs_dim, prs_mode, dropout, ...).

    Returns:
        The config.
    """
    if size not in SIZES:
        raise ValueError(f"unknown MEHRT size {size!r}; choose one of {list(SIZES)}")
    return dataclasses.replace(SIZES[size], vocab_size=vocab_size, **overrides)


def parameter_table(vocab_size: int = REFERENCE_VOCAB) -> list[tuple[str, int, int]]:
    """Real parameter counts of the named sizes (models built on the meta device, no memory).

    Args:
        vocab_size: vocabulary to count with.

    Returns:
        (size, parameters, non-embedding parameters) per entry of `SIZES`.
    """
    rows = []
    for name in SIZES:
        with torch.device("meta"):
            model = MEHRT(config_for(name, vocab_size))
        rows.append((name, model.num_parameters(), model.num_parameters(exclude_embeddings=True)))
    return rows


if __name__ == "__main__":
    print(f"{'size':>6} {'d_model':>7} {'layers':>6} {'heads':>5} {'kv':>3} {'d_ff':>5} "
          f"{'params':>10} {'non-emb':>10}   (vocab {REFERENCE_VOCAB})")
    for name, total, non_emb in parameter_table():
        c = SIZES[name]
        print(f"{name:>6} {c.d_model:>7} {c.n_layers:>6} {c.n_heads:>5} {c.n_kv_heads:>3} "
              f"{c.d_ff:>5} {total / 1e6:>9.2f}M {non_emb / 1e6:>9.2f}M")
