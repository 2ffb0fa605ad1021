"""The training loop of every head: AdamW minibatches, modality dropout, early stopping on tuning.

Each epoch shuffles the training rows with a seeded generator, applies modality dropout (a side
modality of a sample is hidden with probability p, so the head learns to use its missing token;
Neverova et al. 2016, "ModDrop"), and after the epoch evaluates the loss on the whole tuning
split. Training stops after `patience` epochs without improvement (or `max_epochs`) and the
best tuning-loss weights are restored. Without a tuning split the training loss is monitored.

A refit on all rows (no validation set left, `FusionModel` after cross-validation) runs a fixed
number of epochs (`TrainConfig.restore_best=False`, patience off) or a fixed prefix of a
regularisation path (`keep_last=True`), chosen from the folds' best epochs.
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
    restore_best: bool = True   # False: keep the last epoch's weights (a fixed-length refit)


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


# the ridge path of the linear heads, largest penalty first
L2_PATH = (300, 100, 30, 10, 3, 1, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4)


class _PathSelection:
    """Keeps the point of a regularisation path with the lowest tuning loss (its weights and index)
    and says when to stop: after the tuning loss has risen twice in a row (`flat_is_worse`: a loss
    that merely did not improve counts as a rise). keep_last: no selection, every given point is
    visited and the last one is kept (a refit on a fixed prefix of the path)."""

    def __init__(self, module: torch.nn.Module, flat_is_worse: bool, keep_last: bool = False):
        self.flat_is_worse = flat_is_worse
        self.keep_last = keep_last
        self.path, self.best, self.best_i, self.worse = [], float("inf"), -1, 0
        self.best_state = copy.deepcopy(module.state_dict())

    def record(self, module: torch.nn.Module, lam: float, loss_fn, train: dict, tune: dict | None) -> bool:
        """Evaluate the module at this lam (eval mode); True when the path should stop."""
        module.eval()
        with torch.no_grad():
            tr = float(loss_fn(module, train))
            tu = float(loss_fn(module, tune)) if tune is not None else tr
        self.path.append((float(lam), tr, tu))
        if self.keep_last:
            self.best, self.best_i = tu, len(self.path) - 1
            self.best_state = copy.deepcopy(module.state_dict())
            return False
        if tu < self.best - 1e-6:
            self.best, self.best_i, self.worse = tu, len(self.path) - 1, 0
            self.best_state = copy.deepcopy(module.state_dict())
        elif self.flat_is_worse or tu > self.best + 1e-6:
            self.worse += 1
        return self.worse >= 2

    def finish(self, module: torch.nn.Module) -> dict:
        """Restore the best weights; the history fields shared by every path fit."""
        module.load_state_dict(self.best_state)
        module.eval()
        return {"best_lambda": self.path[self.best_i][0] if self.best_i >= 0 else None, "best_loss": self.best,
                "path": self.path, "best_epoch": self.best_i, "epochs": len(self.path)}


def fit_l2_path(module: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor], train: dict,
                tune: dict | None, lambdas=None,
                max_iter: int = 100, penalized: Callable[[str], bool] = lambda n: n.endswith("weight"),
                keep_last: bool = False) -> dict:
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
        lambdas: penalties, largest first (default L2_PATH).
        max_iter: L-BFGS iterations per lam.
        penalized: which parameter names get the penalty (weights, not biases).
        keep_last: visit every lam and keep the last (a refit on a prefix of the path chosen by CV).

    Returns:
        History: best_lambda, best_loss, path [(lam, train_loss, tune_loss)], best_epoch (index on the path).
    """
    lambdas = L2_PATH if lambdas is None else lambdas
    pen = [p for n, p in module.named_parameters() if penalized(n)]
    params = [p for p in module.parameters() if p.requires_grad]
    sel = _PathSelection(module, flat_is_worse=True, keep_last=keep_last)
    for lam in lambdas:
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-6, tolerance_change=1e-9)
        module.train()

        def closure():
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(module, train) + 0.5 * lam * sum((p ** 2).sum() for p in pen)
            loss.backward()
            return loss

        opt.step(closure)
        if sel.record(module, lam, loss_fn, train, tune):
            break
    return sel.finish(module)


def fit_enet_path(module: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor], train: dict,
                  tune: dict | None, l1_masks: dict[str, torch.Tensor], l1_ratio: float, ridge: float,
                  n_lambdas: int = 15, min_ratio: float = 1e-3, lambdas=None, max_iter: int = 500,
                  tol: float = 1e-5, penalized: Callable[[str], bool] = lambda n: n.endswith("weight"),
                  n_points: int | None = None) -> dict:
    """Full-batch proximal gradient (FISTA) along an elastic-net path on one block, keeping the best
    tuning loss.

    Minimises  loss(train) + lam * [ l1_ratio * sum_j |W_S[:, j]|_2 + (1 - l1_ratio)/2 * |W_S|^2 ] + ridge/2 * |W_R|^2
    where S are the weight entries flagged in `l1_masks` (the bag-of-events EHR block of concat_lr)
    and R the other penalized entries (the embedding blocks keep the ridge penalty `ridge`, chosen
    before by `fit_l2_path`): glmnet's elastic net (Zou & Hastie 2005) on the sparse block, so a
    signal carried by a few of hundreds of features is not shrunk away with the noise. With several
    outputs (labels, discrete-time bins) the L1 part is grouped per input feature (glmnet's
    "grouped" multi-response penalty): a feature enters for every output or for none; with one
    output it is the plain lasso. The path
    starts at lam_max (the smallest lam with W_S = 0, from the gradient at W_S = 0) and descends
    log-uniformly to min_ratio * lam_max with warm starts, like glmnet. Solved by FISTA (Beck &
    Teboulle 2009) with backtracking and adaptive restart (O'Donoghue & Candes 2015); the
    soft-threshold gives exact zeros. Stops when the tuning loss has risen twice in a row.

    Args:
        module: the (linear) head; its current weights are the warm start (W_S is zeroed first).
        loss_fn: loss_fn(module, batch) -> scalar mean loss (smooth).
        train: training batch dict.
        tune: tuning batch dict, or None (then the training loss picks, i.e. the smallest lam).
        l1_masks: parameter name -> bool tensor of its shape, True where the elastic net applies.
        l1_ratio: elastic-net mixing in (0, 1] (1 = lasso on S).
        ridge: L2 strength on the other penalized entries.
        n_lambdas: points on the path.
        min_ratio: last lam / lam_max.
        lambdas: an explicit path (largest first) instead of the lam_max grid.
        max_iter: FISTA iterations per lam.
        tol: stop a lam when the largest entry of the gradient mapping (the objective's subgradient
            at the new point) is below tol.
        penalized: which parameter names get a penalty (weights, not biases).
        n_points: visit only the first n_points lams and keep the last of them, no selection (a
            refit on a prefix of the path chosen by CV; the lam_max grid is relative, so the index
            means the same on every fold).

    Returns:
        History as fit_l2_path (lambdas are the elastic-net lam), plus lam_max, nonzero (per lam,
        input features of S with a non-zero weight), iterations (per lam) and l1_ratio.
    """
    if not 0.0 < float(l1_ratio) <= 1.0:
        raise ValueError(f"l1_ratio must be in (0, 1], got {l1_ratio}")
    a = float(l1_ratio)
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    S = [l1_masks[n].to(p.dtype) if n in l1_masks else torch.zeros_like(p) for n, p in named]
    R = [(1.0 - m) if penalized(n) else torch.zeros_like(p) for (n, p), m in zip(named, S)]

    def smooth(lam: float) -> torch.Tensor:
        reg = sum((((1.0 - a) * lam * m + ridge * r) * p ** 2).sum() for p, m, r in zip(params, S, R))
        return loss_fn(module, train) + 0.5 * reg

    def l1_norm(lam: float) -> float:
        with torch.no_grad():
            return lam * a * float(sum((m * group_norm(p)).sum() / (p.shape[0] if p.dim() == 2 else 1)
                                       for p, m in zip(params, S)))

    def assign(values):
        with torch.no_grad():
            for p, v in zip(params, values):
                p.copy_(v)

    def group_norm(v: torch.Tensor) -> torch.Tensor:
        # one group per input feature: a column of a [n_out, width] weight (its entries for every
        # output), so a feature is in or out for all labels / time bins at once; 1 output = lasso
        return v.norm(dim=0, keepdim=True).expand_as(v) if v.dim() == 2 else v.abs()

    def prox(values, step: float, lam: float):
        out = []
        for v, m in zip(values, S):
            norm = group_norm(v)
            shrink = torch.clamp(1.0 - step * lam * a / norm.clamp(min=1e-30), min=0.0)
            out.append(torch.where(m > 0, v * shrink, v))
        return out

    assign([p.detach() * (1.0 - m) for p, m in zip(params, S)])
    module.train()
    grads = torch.autograd.grad(loss_fn(module, train), params, allow_unused=True)
    lam_max = max([float((group_norm(g) * m).max()) for g, m in zip(grads, S) if g is not None and m.any()]
                  or [0.0]) / a
    lam_max = max(lam_max, 1e-8)
    if lambdas is None:
        lambdas = [lam_max * min_ratio ** (k / max(1, n_lambdas - 1)) for k in range(n_lambdas)]

    if n_points is not None:
        lambdas = list(lambdas)[:max(1, int(n_points))]
    sel = _PathSelection(module, flat_is_worse=False, keep_last=n_points is not None)
    nonzero, iters = [], []
    L = 1.0
    for lam in lambdas:
        x = [p.detach().clone() for p in params]
        y = [v.clone() for v in x]
        t, prev_obj, it = 1.0, float("inf"), 0
        for it in range(1, int(max_iter) + 1):
            assign(y)
            f_val = smooth(lam)
            grads = torch.autograd.grad(f_val, params, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
            f_y = float(f_val.detach())
            while True:
                x_new = prox([v - g / L for v, g in zip(y, grads)], 1.0 / L, lam)
                assign(x_new)
                with torch.no_grad():
                    f_new = float(smooth(lam))
                d = [xn - v for xn, v in zip(x_new, y)]
                quad = f_y + sum(float((g * dd).sum()) for g, dd in zip(grads, d)) \
                    + 0.5 * L * sum(float((dd ** 2).sum()) for dd in d)
                # float32 losses: accept within rounding (else L would grow on noise alone)
                if f_new <= quad + 1e-6 * max(1.0, abs(f_y)) or L > 1e8:
                    break
                L *= 2.0
            obj = f_new + l1_norm(lam)
            restart = obj > prev_obj  # adaptive restart: drop the momentum when the objective rises
            t_new = 1.0 if restart else (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
            momentum = 0.0 if restart else (t - 1.0) / t_new
            # the gradient mapping L (y - x_new) is the objective's (sub)gradient: 0 at the optimum
            mapping = L * max(float(dd.abs().max()) for dd in d)
            y = [xn + momentum * (xn - xo) for xn, xo in zip(x_new, x)]
            x, t, prev_obj = x_new, t_new, obj
            L = max(L / 1.5, 1e-3)  # let the step grow again
            if mapping < tol:
                break
        assign(x)
        nonzero.append(int(sum(int((((m > 0) & (p != 0)).any(0) if p.dim() == 2 else ((m > 0) & (p != 0))).sum())
                               for p, m in zip(params, S))))
        iters.append(it)
        stop = sel.record(module, lam, loss_fn, train, tune)
        module.train()
        if stop:
            break
    return {**sel.finish(module), "lam_max": lam_max, "nonzero": nonzero, "iterations": iters, "l1_ratio": a}


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
    if cfg.restore_best:
        module.load_state_dict(best_state)
    else:
        best_epoch, best = len(hist["train_loss"]) - 1, hist["tune_loss"][-1] if hist["tune_loss"] else best
    module.eval()
    hist.update(best_epoch=best_epoch, best_loss=best, epochs=len(hist["train_loss"]))
    return hist
