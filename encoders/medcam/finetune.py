"""Downstream fine-tuning as in MedCAM's implementation details: a linear classifier appended to the
image encoder, encoder and classifier trained together with binary cross-entropy (eq. 9), batch 64,
Adam, one run per learning rate of the paper's grid {1e-2, 1e-3, 1e-5}; the validation macro AUROC
(the benchmark's selection metric, benchmark.learn.selection_score) is checked every 5 epochs, a run
stops after `patience` checks without improvement, and the weights of the best check over all
learning rates are kept (no refit).
"""

from __future__ import annotations

import copy
import math

import numpy as np

from benchmark.kinds import kind_of
from benchmark.learn import is_better, selection_score
from benchmark.learn.selection import SELECTION_METRIC

LR_GRID = (1e-3, 1e-2, 1e-5)   # the paper's grid; trial 0 (all a smoke budget runs) is the middle value


def _scores(cnn, lin, x, batch: int = 512) -> np.ndarray:
    import torch
    cnn.eval()
    with torch.no_grad():
        out = [torch.sigmoid(lin(cnn(x[i:i + batch]))) for i in range(0, len(x), batch)]
    return torch.cat(out).double().numpy() if out else np.zeros((0, lin.out_features))


def _as_score(kind: str, p: np.ndarray) -> np.ndarray:
    """[n, L] sigmoid outputs -> the kind's score shape (binary [n], multilabel [n, L])."""
    return p.reshape(kind_of(kind).score_shape(len(p), p))


def finetune(cnn, images: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray, kind: str, *,
             lrs: tuple[float, ...] = LR_GRID, max_epochs: int = 200, seed: int = 0, batch_size: int = 64,
             check_every: int = 5, patience: int = 2) -> tuple[object, object, dict]:
    """Fine-tune copies of `cnn` + a linear head, one per learning rate; keep the best validation check.

    Args:
        cnn: the (pretrained or fresh) image encoder; not modified.
        images: uint8 [n, S, S].
        y: targets, binary [n] or multilabel [n, L] (0/1).
        train: row indices trained on.
        val: row indices of the validation fold (early stopping and the choice of lr).
        kind: "binary" | "multilabel".
        lrs: learning rates tried.
        max_epochs: epoch cap per run.
        seed: initialisation and batch order (the same for every lr).
        batch_size: training batch size.
        check_every: epochs between validation checks.
        patience: checks without improvement before a run stops.

    Returns:
        (encoder, linear head, info) of the best check; info has lr, epoch, val score and per-lr traces.
    """
    import torch
    from torch import nn

    from encoders.medcam.cnn import to_tensor

    metric = SELECTION_METRIC[kind]
    y2 = (y.reshape(len(y), -1)).astype(np.float32)
    x = to_tensor(images)
    xt, yt = x[train], torch.from_numpy(y2[train])
    xv, yv = x[val], y[val]
    best = (math.nan, None, None, None, None)   # score, cnn state, head state, lr, epoch
    traces = {}
    for lr in lrs:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        enc = copy.deepcopy(cnn)
        lin = nn.Linear(enc.out_dim, y2.shape[1])
        opt = torch.optim.Adam(list(enc.parameters()) + list(lin.parameters()), lr=lr)
        loss_fn = nn.BCEWithLogitsLoss()
        run_best, stale, trace = math.nan, 0, []
        for epoch in range(1, max_epochs + 1):
            enc.train()
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), batch_size):
                idx = perm[i:i + batch_size]
                if len(idx) < 2:      # BatchNorm needs two rows
                    continue
                loss = loss_fn(lin(enc(xt[idx])), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if epoch % check_every and epoch != max_epochs:
                continue
            s = selection_score(kind, yv, _as_score(kind, _scores(enc, lin, xv)))
            trace.append([epoch, None if not math.isfinite(s) else round(s, 5)])
            if is_better(metric, s, best[0]) or best[1] is None:
                best = (s, copy.deepcopy(enc.state_dict()), copy.deepcopy(lin.state_dict()), lr, epoch)
            if is_better(metric, s, run_best):
                run_best, stale = s, 0
            else:
                stale += 1
                if stale >= patience:
                    break
        traces[f"{lr:g}"] = trace
    enc = copy.deepcopy(cnn)
    enc.load_state_dict(best[1])
    lin = nn.Linear(enc.out_dim, y2.shape[1])
    lin.load_state_dict(best[2])
    enc.eval()
    info = {"lr": best[3], "epoch": best[4], "val_score": None if not math.isfinite(best[0]) else best[0],
            "traces": traces}
    return enc, lin, info


def predict_proba(cnn, lin, images: np.ndarray, kind: str) -> np.ndarray:
    """Probabilities: binary [n], multilabel [n, L] (float64)."""
    from encoders.medcam.cnn import to_tensor
    return _as_score(kind, _scores(cnn, lin, to_tensor(images)))
