"""The fusion heads (torch modules). Each maps a batch dict (see `inputs`) to outputs [B, n_out].

=================  ==============================================================  =============
head               what it does                                                    reference
=================  ==============================================================  =============
concat_lr          per-modality vectors (learned missing token + presence flag)    Benchmarking Foundation Models with Multimodal Public Electronic Health Records (arXiv 2507.14824)
                   concatenated with the EHR vector, one linear layer
late_fusion        one MLP head per modality; outputs averaged over the            Benchmarking Foundation Models with Multimodal Public Electronic Health Records (arXiv 2507.14824)
                   modalities a sample has (+ per-modality auxiliary losses)
image_only_mlp,    the CT + EHR fusion paper's heads on one EHR vector and one image  Fusion is not one-size-fits-all (arXiv 2606.15038)
ehr_only_mlp,      modality: unimodal MLPs, concatenation, 2-step contrastive,
concat_mlp,        symmetric cross-attention, directed co-attention
contrastive,       (`paper_heads`)
cross_attention,
coattention
timeline_rnn       GRU / LSTM over the binned time series (timeline_gru/_lstm)     Harutyunyan 2019
=================  ==============================================================  =============

Every head handles a missing side modality with a learned missing token (and, through the
training loop, modality dropout) and exposes:

* ``forward(b) -> [B, n_out]``
* ``task_loss(b, objective)``: the supervised loss (late fusion adds its auxiliary terms)
* heads with a pre-alignment stage (contrastive): ``pretrain_loss(b)``,
  ``pretrain_parameters()``, ``finetune_parameters()``.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.learn.search import Choice, Distribution
from encoders.fusion.layers import mlp, param
from encoders.fusion.paper_heads import PAPER_HEADS


class Head(nn.Module):
    """Base class: supervised loss = objective loss on the outputs.

    Class attributes every head declares (the registry of heads is built from them):
        name: the key in HEADS.
        search_space: parameter -> distribution (training settings and head hyperparameters);
            the random search's trial 0 is always the defaults.
        train_defaults: training settings that differ from `FusionHead`'s defaults for this head.
    """

    name: str = ""
    has_pretraining = False
    search_space: dict[str, Distribution] = {}
    train_defaults: dict = {}

    def task_loss(self, b: dict, objective) -> torch.Tensor:
        return objective.loss(self(b), b["y"])


def _flat_ehr(b: dict, spec: dict) -> torch.Tensor | None:
    parts = []
    if spec["ehr_dim"]:
        parts.append(b["ehr"])
    if spec["ts_sum_dim"]:
        parts.append(b["ts_sum"])
    return torch.cat(parts, 1) if parts else None


class ConcatLR(Head):
    """Concatenation + logistic regression (the multimodal public EHR benchmark's early-fusion baseline).

    x = [ehr, ts_summary, for each modality m: (present ? mean_m : missing_m), present_m]; out = W x + c.
    With no EHR inputs this is the linear probe of frozen encoders.

    block_scale: each block (EHR vector, time-series summary, each modality) is divided by
    sqrt(its width), so every block has the same total variance and one L2 penalty does not favour
    the widest block (block scaling as in multiple factor analysis, Escofier & Pages 1994).
    """

    name = "concat_lr"
    search_space = {"modality_dropout": Choice((0.0, 0.15, 0.3))}  # the L2 penalty is chosen on a path inside fit
    train_defaults = {"l1_ratio": 0.9}  # then an elastic-net path on the EHR block: encoders/README.md, "concat_lr"

    def __init__(self, spec: dict, n_out: int, block_scale: bool = True):
        super().__init__()
        self.spec = spec
        self.block_scale = block_scale
        self.mods = list(spec["modalities"])
        self.missing = nn.ParameterDict({m: param(d) for m, (d, _) in spec["modalities"].items()})
        width = spec["ehr_dim"] + spec["ts_sum_dim"] + sum(d + 1 for d, _ in spec["modalities"].values())
        self.linear = nn.Linear(max(width, 1), n_out)

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        return x / float(x.shape[1]) ** 0.5 if self.block_scale and x.shape[1] else x

    def features(self, b: dict) -> torch.Tensor:
        parts = []
        if self.spec["ehr_dim"]:
            parts.append(self._scale(b["ehr"]))
        if self.spec["ts_sum_dim"]:
            parts.append(self._scale(b["ts_sum"]))
        for m in self.mods:
            pres = b[f"{m}.present"]
            x = torch.where(pres[:, None], b[f"{m}.mean"], self.missing[m].expand_as(b[f"{m}.mean"]))
            parts.append(self._scale(x))
            parts.append(pres.to(torch.float32)[:, None])
        if not parts:
            n = len(next(iter(b.values())))
            return torch.zeros(n, 1)
        return torch.cat(parts, 1)

    def forward(self, b: dict) -> torch.Tensor:
        return self.linear(self.features(b))

    def l1_masks(self) -> dict[str, torch.Tensor]:
        """The entries of the linear weight that belong to the bag-of-events EHR block (the first
        ehr_dim columns of `features`): where an elastic-net fit puts its L1 part."""
        mask = torch.zeros_like(self.linear.weight, dtype=torch.bool)
        mask[:, :self.spec["ehr_dim"]] = True
        return {"linear.weight": mask}


class LateFusion(Head):
    """Late fusion: one head per source, outputs averaged over the sources a sample has.

    Sources: "ehr" (structured vector + time-series summary, always present) and each side
    modality. out = sum_s present_s f_s(x_s) / sum_s present_s. Loss = task loss of the average
    + aux_weight * mean over sources of the task loss of f_s on the samples that have s (so each
    per-modality head is also a usable unimodal model, as in classical late fusion).
    """

    name = "late_fusion"
    search_space = {"lr": Choice((3e-4, 1e-3, 3e-3)), "weight_decay": Choice((1e-3, 1e-2, 1e-1)),
                    "dropout": Choice((0.0, 0.1, 0.3)), "hidden": Choice((32, 64, 128))}
    train_defaults = {"lr": 1e-3, "weight_decay": 1e-2}

    def __init__(self, spec: dict, n_out: int, hidden: int = 64, dropout: float = 0.2, aux_weight: float = 0.5):
        super().__init__()
        self.spec = spec
        self.aux_weight = aux_weight
        self.heads = nn.ModuleDict()
        ehr_w = spec["ehr_dim"] + spec["ts_sum_dim"]
        if ehr_w:
            self.heads["ehr"] = mlp(ehr_w, hidden, n_out, dropout)
        for m, (d, _) in spec["modalities"].items():
            self.heads[m] = mlp(d, hidden, n_out, dropout)
        if not len(self.heads):
            raise ValueError("late_fusion needs at least one input")

    def parts(self, b: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        outs, pres = [], []
        n = len(next(iter(b.values())))
        for name, f in self.heads.items():
            if name == "ehr":
                outs.append(f(_flat_ehr(b, self.spec)))
                pres.append(torch.ones(n, dtype=torch.bool))
            else:
                outs.append(f(b[f"{name}.mean"]))
                pres.append(b[f"{name}.present"])
        return outs, pres

    def forward(self, b: dict) -> torch.Tensor:
        outs, pres = self.parts(b)
        w = torch.stack([p.to(torch.float32) for p in pres], 0)[..., None]         # [S, B, 1]
        o = torch.stack(outs, 0)                                                    # [S, B, n_out]
        # a sample with no source at all (possible only without EHR) falls back to the plain mean
        w = torch.where(w.sum(0, keepdim=True) > 0, w, torch.ones_like(w))
        return (o * w).sum(0) / w.sum(0)

    def task_loss(self, b: dict, objective) -> torch.Tensor:
        outs, pres = self.parts(b)
        w = torch.stack([p.to(torch.float32) for p in pres], 0)[..., None]
        w = torch.where(w.sum(0, keepdim=True) > 0, w, torch.ones_like(w))
        loss = objective.loss((torch.stack(outs, 0) * w).sum(0) / w.sum(0), b["y"])
        aux = []
        for o, p in zip(outs, pres):
            if int(p.sum()) >= 2:
                aux.append(objective.loss(o[p], b["y"][p]))
        if aux and self.aux_weight:
            loss = loss + self.aux_weight * torch.stack(aux).mean()
        return loss


class TimelineRNN(Head):
    """GRU / LSTM over the binned time series, last state -> linear (timeline_gru / timeline_lstm).

    The recurrent baselines of Harutyunyan et al. 2019 on 2-hour bins (see `encoders.timeline`).
    """

    name = "timeline_rnn"
    search_space = {"lr": Choice((3e-4, 1e-3, 3e-3)), "hidden": Choice((32, 64, 128)),
                    "dropout": Choice((0.0, 0.1, 0.3))}
    train_defaults = {"lr": 1e-3, "weight_decay": 1e-2, "modality_dropout": 0.0}

    def __init__(self, spec: dict, n_out: int, hidden: int = 64, cell: str = "gru", dropout: float = 0.2):
        super().__init__()
        from encoders.timeline import make_rnn_encoder
        if spec["ts_shape"] is None:
            raise ValueError("timeline heads need the time series input")
        self.enc = make_rnn_encoder(spec["ts_shape"][1], hidden, cell)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_out)

    def forward(self, b: dict) -> torch.Tensor:
        return self.out(self.drop(self.enc(b["ts"])))


# name -> head class, built from the classes (each carries its name, search space and defaults)
HEADS: dict[str, type] = {cls.name: cls for cls in (ConcatLR, LateFusion, TimelineRNN, *PAPER_HEADS)}


def build_head(name: str, spec: dict, n_out: int, **params) -> Head:
    """Instantiate a head by name.

    Args:
        name: a key of HEADS.
        spec: input shapes (`FusionInputs.spec()`).
        n_out: outputs (from the objective).
        **params: the head's hyperparameters (unknown ones are ignored).

    Returns:
        The module.
    """
    import inspect
    cls = HEADS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "spec", "n_out"}
    return cls(spec, n_out, **{k: v for k, v in params.items() if k in accepted})
