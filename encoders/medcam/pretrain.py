"""MedCAM's adaptation step: the image encoder and an EHR LSTM trained together with
L_overall = L_global + L_local (eq. 8) on the training rows that have both a CXR and a time series.

Both encoders are updated (the image encoder is adapted, not frozen); afterwards only the image
encoder is kept: the EHR LSTM is discarded and never used at prediction time.
"""

from __future__ import annotations

import numpy as np

from encoders.medcam.ehr_lstm import make_ehr_lstm
from encoders.medcam.losses import global_loss, local_loss


def align(cnn, images: np.ndarray, ehr: np.ndarray, *, epochs: int, seed: int, k: int = 10, tau: float = 0.1,
          batch_size: int = 64, lr: float = 1e-3) -> dict:
    """Align the image encoder to the EHR time series (in place).

    Args:
        cnn: the image encoder (its features are z_CXR; the EHR is projected into that space).
        images: uint8 [n, S, S], the CXR of each aligned row.
        ehr: float32 [n, t, F], the binned time series of the same rows (encoders.timeline).
        epochs: passes over the pairs.
        seed: randomness of initialisation and batches.
        k: top-k EHR steps per image in the local loss (the paper: 10).
        tau: temperature of both losses.
        batch_size: pairs per batch (B).
        lr: Adam learning rate.

    Returns:
        {"epochs", "n_pairs", "loss_first", "loss_last"}.
    """
    import torch

    from encoders.medcam.cnn import to_tensor

    n = len(images)
    if epochs <= 0 or n < 4:
        return {"epochs": 0, "n_pairs": int(n)}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    lstm = make_ehr_lstm(ehr.shape[2], cnn.out_dim)
    opt = torch.optim.Adam(list(cnn.parameters()) + list(lstm.parameters()), lr=lr)
    x_all, e_all = to_tensor(images), torch.from_numpy(np.ascontiguousarray(ehr, np.float32))

    def loss_of(idx):
        z_cxr = cnn(x_all[idx])
        z_ehr, z_steps = lstm(e_all[idx])
        return global_loss(z_cxr, z_ehr, tau) + local_loss(z_cxr, z_steps, k, tau)

    cnn.train()
    losses = minibatch_epochs(n, epochs, batch_size, gen, opt, loss_of)
    cnn.eval()
    return {"epochs": epochs, "n_pairs": int(n), "loss_first": losses[0], "loss_last": losses[-1]}


def minibatch_epochs(n: int, epochs: int, batch_size: int, gen, opt, loss_of) -> list[float]:
    """Shuffled minibatch passes shared by the alignment and SimCLR: per epoch a permutation from
    `gen`, batches of `batch_size` rows (a batch of fewer than 2 is skipped: a contrastive loss needs a
    negative), one optimizer step on `loss_of(idx)` each.

    Returns:
        The mean loss per epoch (rows-weighted).
    """
    import torch

    losses = []
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        tot, cnt = 0.0, 0
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            if len(idx) < 2:
                continue
            loss = loss_of(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot, cnt = tot + loss.item() * len(idx), cnt + len(idx)
        losses.append(tot / max(cnt, 1))
    return losses
