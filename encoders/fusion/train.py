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
    weight_decay: float = 1e-2
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


def augment_with_dropout(batch: dict, modalities: tuple[str, ...], p: float, seed: int) -> dict:
    """The rows of a batch plus one copy with modality dropout applied (for full-batch fits).

    Full-batch L-BFGS has no minibatches to perturb, so modality dropout becomes a fixed, seeded
    augmentation: the training set is doubled, and in the copy each side modality of each sample is
    hidden with probability p (the model then sees the missing token on real patients).

    Args:
        batch: training batch dict.
        modalities: side modality names.
        p: drop probability.
        seed: seed of the draw.

    Returns:
        The augmented batch (unchanged when p == 0 or there are no side modalities).
    """
    if p <= 0 or not modalities:
        return batch
    gen = torch.Generator().manual_seed(int(seed) + 104729)
    dropped = drop_modalities(batch, modalities, p, gen)
    return {k: torch.cat([batch[k], dropped[k]]) for k in batch}


def fit_l2_path(module: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor], train: dict,
                tune: dict | None, lambdas=(300, 100, 30, 10, 3, 1, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4),
                max_iter: int = 100, penalized: Callable[[str], bool] = lambda n: n.endswith("weight")) -> dict:
    """Full-batch L-BFGS along an L2 regularisation path, keeping the best tuning loss.

    Minimises loss(train) + lam/2 * ||W||^2 for decreasing lam (warm starts), like scikit-learn's
    LogisticRegressionCV but selected on the tuning split; stops when the tuning loss has risen
    twice in a row. This is how the linear heads (concat_lr, linear probes) are fit: exactly, not
    by early-stopped SGD.

    Args:
        module: the (linear) head.
        loss_fn: loss_fn(module, batch) -> scalar mean loss.
        train: training batch dict.
        tune: tuning batch dict, or None (then the training loss at each lam is used, which picks the smallest lam).
        lambdas: penalties, largest first.
        max_iter: L-BFGS iterations per lam.
        penalized: which parameter names get the penalty (weights, not biases).

    Returns:
        History: best_lambda, best_loss, path [(lam, train_loss, tune_loss)], best_epoch (index on the path).
    """
    pen = [p for n, p in module.named_parameters() if penalized(n)]
    params = [p for p in module.parameters() if p.requires_grad]
    path, best, best_state, best_i, worse = [], float("inf"), copy.deepcopy(module.state_dict()), -1, 0
    for i, lam in enumerate(lambdas):
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-6, tolerance_change=1e-9)
        module.train()

        def closure():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(module, train) + 0.5 * lam * sum((p ** 2).sum() for p in pen)
            loss.backward()
            return loss

        opt.step(closure)
        module.eval()
        with torch.no_grad():
            tr = float(loss_fn(module, train))
            tu = float(loss_fn(module, tune)) if tune is not None else tr
        path.append((float(lam), tr, tu))
        if tu < best - 1e-6:
            best, best_i, worse = tu, i, 0
            best_state = copy.deepcopy(module.state_dict())
        else:
            worse += 1
            if worse >= 2:
                break
    module.load_state_dict(best_state)
    module.eval()
    return {"best_lambda": path[best_i][0] if best_i >= 0 else None, "best_loss": best, "path": path,
            "best_epoch": best_i, "epochs": len(path)}


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
