"""The training loop of every head: AdamW minibatches, modality dropout, early stopping on tuning.

Each epoch shuffles the training rows with a seeded generator, applies modality dropout (a side
modality of a sample is hidden with probability p, so the head learns to use its missing token;
Neverova et al. 2016, "ModDrop"), and after the epoch evaluates the loss on the whole tuning
split. Training stops after `patience` epochs without improvement (or `max_epochs`) and the
best tuning-loss weights are restored. Without a tuning split the training loss is monitored.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class TrainConfig:
    """Optimisation settings of one training stage."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 128
    max_epochs: int = 60
    patience: int = 8
    min_delta: float = 1e-4
    modality_dropout: float = 0.15
    grad_clip: float = 5.0
    seed: int = 0


def take(batch: dict, idx: torch.Tensor) -> dict:
    """Rows idx of every tensor of a batch dict."""
    return {k: v[idx] for k, v in batch.items()}


def drop_modalities(batch: dict, modalities: tuple[str, ...], p: float, gen: torch.Generator) -> dict:
    """Hide each side modality of each sample with probability p (present=False, no valid study).

    Args:
        batch: batch dict with "<m>.present" and "<m>.seq_mask".
        modalities: side modality names.
        p: drop probability.
        gen: random generator.

    Returns:
        A new dict (the input is not modified).
    """
    if p <= 0 or not modalities:
        return batch
    out = dict(batch)
    n = len(next(iter(batch.values())))
    for m in modalities:
        drop = torch.rand(n, generator=gen) < p
        out[f"{m}.present"] = batch[f"{m}.present"] & ~drop
        out[f"{m}.seq_mask"] = batch[f"{m}.seq_mask"] & ~drop[:, None]
    return out


def fit_stage(module: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor], train: dict,
              tune: dict | None, cfg: TrainConfig, params=None, modalities: tuple[str, ...] = ()) -> dict:
    """Train one stage with early stopping; restores the best weights.

    Args:
        module: the head.
        loss_fn: loss_fn(module, batch) -> scalar.
        train: training batch dict (all rows).
        tune: tuning batch dict, or None (then the training loss is monitored).
        cfg: optimisation settings.
        params: parameters to optimise (default: all).
        modalities: side modalities subject to modality dropout.

    Returns:
        History: best_epoch, best_loss, epochs, train_loss, tune_loss lists.
    """
    gen = torch.Generator().manual_seed(int(cfg.seed))
    params = [p for p in (params if params is not None else module.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(next(iter(train.values())))
    bs = max(2, min(int(cfg.batch_size), n))
    best, best_state, best_epoch, bad = float("inf"), copy.deepcopy(module.state_dict()), -1, 0
    hist = {"train_loss": [], "tune_loss": []}
    for epoch in range(int(cfg.max_epochs)):
        module.train()
        perm = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for start in range(0, n, bs):
            idx = perm[start:start + bs]
            if len(idx) < 2:
                continue
            b = drop_modalities(take(train, idx), modalities, cfg.modality_dropout, gen)
            loss = loss_fn(module, b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        module.eval()
        with torch.no_grad():
            monitored = float(loss_fn(module, tune)) if tune is not None else total / max(count, 1)
        hist["train_loss"].append(total / max(count, 1))
        hist["tune_loss"].append(monitored)
        if monitored < best - cfg.min_delta:
            best, best_epoch, bad = monitored, epoch, 0
            best_state = copy.deepcopy(module.state_dict())
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    module.load_state_dict(best_state)
    module.eval()
    hist.update(best_epoch=best_epoch, best_loss=best, epochs=len(hist["train_loss"]))
    return hist
