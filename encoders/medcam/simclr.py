"""Image-only contrastive pretraining (SimCLR, Chen et al. 2020, "A simple framework for contrastive
learning of visual representations"): two random views of each image (random resized crop,
horizontal flip, brightness / contrast jitter, Gaussian noise), a 2-layer projection head, NT-Xent.

Augmentations are drawn per image from a seeded torch.Generator and applied to the whole batch at
once (one affine grid per image), so pretraining is vectorized and deterministic for a seed.
"""

from __future__ import annotations

import numpy as np

from encoders.medcam.losses import nt_xent
from encoders.medcam.pretrain import minibatch_epochs


def augment(x, gen, min_scale: float = 0.6):
    """Random view of each image of a batch.

    Args:
        x: [B, 1, S, S] normalised images.
        gen: torch.Generator (the randomness).
        min_scale: smallest crop side as a fraction of the image side.

    Returns:
        [B, 1, S, S] tensor.
    """
    import torch
    import torch.nn.functional as F
    b = x.shape[0]

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    scale = u(min_scale, 1.0)                                    # crop side / image side
    tx, ty = (1 - scale) * u(-1, 1), (1 - scale) * u(-1, 1)       # crop centre stays inside
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = scale * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = scale, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    v = v * u(0.8, 1.2).view(b, 1, 1, 1) + u(-0.2, 0.2).view(b, 1, 1, 1)   # contrast, brightness
    return v + 0.05 * torch.randn(v.shape, generator=gen)


def simclr_pretrain(cnn, images: np.ndarray, *, epochs: int, seed: int, batch_size: int = 128,
                    lr: float = 1e-3, tau: float = 0.2, proj_dim: int = 64) -> dict:
    """Train the encoder with SimCLR on unlabeled images (in place).

    Args:
        cnn: the image encoder (encoders.medcam.cnn.make_cnn).
        images: uint8 [n, S, S] training images.
        epochs: passes over the images.
        seed: randomness of batches and augmentations.
        batch_size: images per batch (2x views).
        lr: Adam learning rate.
        tau: NT-Xent temperature.
        proj_dim: projection head output size.

    Returns:
        {"epochs", "loss_first", "loss_last"} (mean loss of the first / last epoch).
    """
    import torch
    from torch import nn

    from encoders.medcam.cnn import to_tensor

    n = len(images)
    if epochs <= 0 or n < 4:
        return {"epochs": 0}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    head = nn.Sequential(nn.Linear(cnn.out_dim, cnn.out_dim), nn.ReLU(), nn.Linear(cnn.out_dim, proj_dim))
    opt = torch.optim.Adam(list(cnn.parameters()) + list(head.parameters()), lr=lr)
    x_all = to_tensor(images)

    def loss_of(idx):
        x = x_all[idx]
        return nt_xent(head(cnn(augment(x, gen))), head(cnn(augment(x, gen))), tau)

    cnn.train()
    losses = minibatch_epochs(n, epochs, batch_size, gen, opt, loss_of)
    cnn.eval()
    return {"epochs": epochs, "loss_first": losses[0], "loss_last": losses[-1]}
