"""The fusion heads (torch modules). Each maps a batch dict (see `inputs`) to outputs [B, n_out].

=================  ==============================================================  =============
head               what it does                                                    reference
=================  ==============================================================  =============
concat_lr          per-modality vectors (learned missing token + presence flag)    Benchmarking Foundation Models with Multimodal Public Electronic Health Records (arXiv 2507.14824)
                   concatenated with the EHR vector, one linear layer
late_fusion        one MLP head per modality; outputs averaged over the            Benchmarking Foundation Models with Multimodal Public Electronic Health Records (arXiv 2507.14824)
                   modalities a sample has (+ per-modality auxiliary losses)
contrastive        2-step: symmetric InfoNCE aligns EHR and image projections,     Fusion is not one-size-fits-all (arXiv 2606.15038)
                   then a head on both, encoders fine-tuned
cross_attention    bidirectional cross-attention between EHR and image tokens      Fusion is not one-size-fits-all (arXiv 2606.15038)
coattention        alternating co-attention guided by the image (coattention_img)  Fusion is not one-size-fits-all (arXiv 2606.15038)
                   or by the EHR (coattention_ehr)
medcam             CXR tokens aligned to the EHR time series with a global InfoNCE  the MedCAM paper
                   and a local top-k InfoNCE, then fine-tuned with the task loss
timeline_rnn       GRU / LSTM over the binned time series (timeline_gru/_lstm)     Harutyunyan 2019
=================  ==============================================================  =============

Every head handles a missing side modality with a learned missing token (and, through the
training loop, modality dropout) and exposes:

* ``forward(b) -> [B, n_out]``
* ``task_loss(b, objective)``: the supervised loss (late fusion adds its auxiliary terms)
* heads with a pre-alignment stage (contrastive, medcam): ``pretrain_loss(b)``,
  ``pretrain_parameters()``, ``finetune_parameters()``.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.learn.search import Choice, Distribution
from encoders.fusion.layers import (BiCrossAttentionLayer, EHRTokenizer, GuidedAttention, SideTokenizer,
                                    masked_mean, mlp, param)
from encoders.fusion.losses import contrastive_from_scores, info_nce, local_topk_scores


# the random-search space shared by the attention-style heads (typed, benchmark.learn.search)
ATTENTION_SPACE: dict[str, Distribution] = {
    "lr": Choice((3e-4, 1e-3, 3e-3)), "weight_decay": Choice((1e-3, 1e-2, 1e-1)),
    "dropout": Choice((0.0, 0.1, 0.3)), "d": Choice((32, 64)), "modality_dropout": Choice((0.0, 0.15, 0.3))}


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


class SideEncoder(nn.Module):
    """Pooled side-modality vector: masked mean of per-modality projections (missing token if none)."""

    def __init__(self, modalities: dict[str, tuple[int, int]], d: int):
        super().__init__()
        self.names = list(modalities)
        self.proj = nn.ModuleDict({m: nn.Linear(dm, d) for m, (dm, _) in modalities.items()})
        self.missing = param(d)

    def forward(self, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(next(iter(b.values())))
        if not self.names:
            return self.missing.expand(n, -1), torch.zeros(n, dtype=torch.bool)
        z = torch.stack([self.proj[m](b[f"{m}.mean"]) for m in self.names], 1)       # [B, M, d]
        pres = torch.stack([b[f"{m}.present"] for m in self.names], 1)               # [B, M]
        anyp = pres.any(1)
        pooled = masked_mean(z, pres)
        return torch.where(anyp[:, None], pooled, self.missing.expand(n, -1)), anyp


class Contrastive(Head):
    """Two-step contrastive fusion (Fusion is not one-size-fits-all, arXiv 2606.15038, "2-step contrastive").

    Step 1: an EHR encoder (MLP on the structured vector + time-series summary) and an image
    encoder (per-modality projections pooled over present modalities, then an MLP) are aligned
    with the symmetric InfoNCE loss on their projections (CLIP, Radford et al. 2021; ConVIRT,
    Zhang et al. 2022) over samples that have a side modality. Step 2: a head on [z_ehr, z_img]
    is trained with the task loss, fine-tuning the aligned encoders (finetune=False freezes them:
    a linear-probe-style second step; on the synthetic cohort that loses 0.07-0.11 AUROC).
    """

    name = "contrastive"
    search_space = ATTENTION_SPACE
    has_pretraining = True

    def __init__(self, spec: dict, n_out: int, d: int = 64, hidden: int = 64, dropout: float = 0.2,
                 temperature: float = 0.1, finetune: bool = True):
        super().__init__()
        self.spec = spec
        self.temperature = temperature
        self.finetune = finetune
        ehr_w = spec["ehr_dim"] + spec["ts_sum_dim"]
        self.ehr_enc = mlp(max(ehr_w, 1), hidden, d, dropout)
        self.side = SideEncoder(spec["modalities"], d)
        self.img_enc = mlp(d, hidden, d, dropout)
        self.proj_e = nn.Linear(d, d)
        self.proj_i = nn.Linear(d, d)
        self.head = mlp(2 * d, hidden, n_out, dropout)

    def embed(self, b: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flat = _flat_ehr(b, self.spec)
        if flat is None:
            flat = torch.zeros(len(next(iter(b.values()))), 1)
        z_e = self.ehr_enc(flat)
        pooled, anyp = self.side(b)
        return z_e, self.img_enc(pooled), anyp

    def pretrain_loss(self, b: dict) -> torch.Tensor:
        z_e, z_i, anyp = self.embed(b)
        if int(anyp.sum()) < 2:
            return (z_e.sum() + z_i.sum()) * 0.0
        return info_nce(self.proj_e(z_e[anyp]), self.proj_i(z_i[anyp]), self.temperature)

    def pretrain_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("head.")]

    def finetune_parameters(self):
        return list(self.parameters()) if self.finetune else list(self.head.parameters())

    def forward(self, b: dict) -> torch.Tensor:
        z_e, z_i, _ = self.embed(b)
        return self.head(torch.cat([z_e, z_i], 1))


class CrossAttention(Head):
    """Bidirectional cross-attention between EHR tokens and image tokens (Fusion is not one-size-fits-all, arXiv 2606.15038).

    EHR tokens: [EHR] + S structured tokens + T time-bin tokens; image tokens: [IMG] + K study
    tokens per side modality (learned missing token when absent). n_layers of
    `BiCrossAttentionLayer`; the two token sets are mean-pooled over valid tokens, concatenated
    and fed to an MLP.
    """

    name = "cross_attention"
    search_space = ATTENTION_SPACE

    def __init__(self, spec: dict, n_out: int, d: int = 64, n_heads: int = 4, n_layers: int = 1,
                 hidden: int = 64, dropout: float = 0.2, n_struct_tokens: int = 4):
        super().__init__()
        self.ehr_tok = EHRTokenizer(spec["ehr_dim"], spec["ts_shape"], d, n_struct_tokens)
        self.side_tok = SideTokenizer(spec["modalities"], d)
        self.layers = nn.ModuleList([BiCrossAttentionLayer(d, n_heads, dropout) for _ in range(n_layers)])
        self.norm_e, self.norm_i = nn.LayerNorm(d), nn.LayerNorm(d)
        self.head = mlp(2 * d, hidden, n_out, dropout)

    def encode(self, b: dict):
        e, em = self.ehr_tok(b)
        i, im = self.side_tok(b)
        for layer in self.layers:
            e, i = layer(e, em, i, im)
        return self.norm_e(e), em, self.norm_i(i), im

    def forward(self, b: dict) -> torch.Tensor:
        e, em, i, im = self.encode(b)
        return self.head(torch.cat([masked_mean(e, em), masked_mean(i, im)], 1))


class CoAttention(Head):
    """Alternating co-attention guided by the image or by the EHR (Fusion is not one-size-fits-all, arXiv 2606.15038).

    Lu et al. 2016's alternating co-attention. guide="image": g = mean of the image tokens; the
    EHR summary e^ = Attend(EHR tokens | g); the image summary i^ = Attend(image tokens | e^).
    guide="ehr": the same with the roles swapped. Output = MLP([e^, i^]).
    """

    name = "coattention"
    search_space = ATTENTION_SPACE

    def __init__(self, spec: dict, n_out: int, guide: str = "image", d: int = 64, hidden: int = 64,
                 dropout: float = 0.2, n_struct_tokens: int = 4):
        super().__init__()
        if guide not in ("image", "ehr"):
            raise ValueError(f"guide must be 'image' or 'ehr', not {guide!r}")
        self.guide = guide
        self.ehr_tok = EHRTokenizer(spec["ehr_dim"], spec["ts_shape"], d, n_struct_tokens)
        self.side_tok = SideTokenizer(spec["modalities"], d)
        self.att_e = GuidedAttention(d)
        self.att_i = GuidedAttention(d)
        self.drop = nn.Dropout(dropout)
        self.head = mlp(2 * d, hidden, n_out, dropout)

    def attend(self, b: dict):
        """Returns (e_hat [B, d], i_hat [B, d], EHR weights [B, Ne], image weights [B, Ni])."""
        e, em = self.ehr_tok(b)
        i, im = self.side_tok(b)
        if self.guide == "image":
            e_hat, a_e = self.att_e(e, em, masked_mean(i, im))
            i_hat, a_i = self.att_i(i, im, e_hat)
        else:
            i_hat, a_i = self.att_i(i, im, masked_mean(e, em))
            e_hat, a_e = self.att_e(e, em, i_hat)
        return e_hat, i_hat, a_e, a_i

    def forward(self, b: dict) -> torch.Tensor:
        e_hat, i_hat, _, _ = self.attend(b)
        return self.head(self.drop(torch.cat([e_hat, i_hat], 1)))


class MedCAM(Head):
    """MedCAM (MedCAM paper): a CXR encoder aligned to the EHR time series, then fine-tuned.

    Time series: bin tokens (linear + position) through one transformer encoder layer; global =
    mean over valid bins. CXR: the (precomputed or image-encoder) study embedding is mapped to P
    local tokens (learned projections; a pooled embedding has no spatial map, so these stand in
    for region features) whose mean is the global image vector. Pre-alignment on samples with
    both a CXR and a time series:

        L = InfoNCE(global_img, global_ts) + local_weight * InfoNCE over local top-k pair scores

    (`losses.local_topk_scores`, k configurable). Then every parameter is fine-tuned with the
    task loss (BCE for binary / multilabel tasks) through a head on [img, ts, structured EHR].
    Samples without a CXR or a time series get the learned missing tokens.
    """

    name = "medcam"
    search_space = ATTENTION_SPACE
    has_pretraining = True

    def __init__(self, spec: dict, n_out: int, d: int = 64, n_local: int = 4, k: int = 3, hidden: int = 64,
                 dropout: float = 0.2, temperature: float = 0.1, local_weight: float = 1.0,
                 image_modality: str = "cxr"):
        super().__init__()
        if spec["ts_shape"] is None or image_modality not in spec["modalities"]:
            raise ValueError("medcam needs the EHR time series and the CXR modality")
        self.spec = spec
        self.mod = image_modality
        self.k = k
        self.temperature = temperature
        self.local_weight = local_weight
        t, f = spec["ts_shape"]
        self.ts_in = nn.Linear(f, d)
        self.ts_pos = param(1, t, d)
        self.ts_layer = nn.TransformerEncoderLayer(d, 4, 2 * d, dropout, batch_first=True, norm_first=True)
        self.ts_missing = param(d)
        dm, _ = spec["modalities"][image_modality]
        self.n_local = n_local
        self.img_local = nn.Linear(dm, n_local * d)
        self.img_norm = nn.LayerNorm(d)
        self.img_missing = param(d)
        self.proj_i = nn.Linear(d, d)
        self.proj_t = nn.Linear(d, d)
        self.struct = nn.Linear(spec["ehr_dim"], d) if spec["ehr_dim"] else None
        self.head = mlp(3 * d if self.struct is not None else 2 * d, hidden, n_out, dropout)

    def encode(self, b: dict):
        """Returns dict with img_local [B,P,d], img_global [B,d], ts_tokens [B,T,d], ts_mask, ts_global, presence."""
        n = len(b["ts"])
        ts_present = b["ts_obs"].any(1)
        mask = b["ts_obs"].clone()
        mask[:, -1] |= ~ts_present             # keep one valid key per row (no all-masked attention)
        x = self.ts_layer(self.ts_in(b["ts"]) + self.ts_pos, src_key_padding_mask=~mask)
        ts_global = torch.where(ts_present[:, None], masked_mean(x, mask), self.ts_missing.expand(n, -1))
        img_present = b[f"{self.mod}.present"]
        loc = self.img_norm(self.img_local(b[f"{self.mod}.mean"]).view(n, self.n_local, -1))
        img_global = torch.where(img_present[:, None], loc.mean(1), self.img_missing.expand(n, -1))
        return {"img_local": loc, "img_global": img_global, "img_present": img_present, "ts_tokens": x,
                "ts_mask": mask, "ts_global": ts_global, "ts_present": ts_present}

    def pretrain_loss(self, b: dict) -> torch.Tensor:
        z = self.encode(b)
        rows = z["img_present"] & z["ts_present"]
        if int(rows.sum()) < 2:
            return (z["img_global"].sum() + z["ts_global"].sum()) * 0.0
        g = info_nce(self.proj_i(z["img_global"][rows]), self.proj_t(z["ts_global"][rows]), self.temperature)
        scores = local_topk_scores(z["img_local"][rows], z["ts_tokens"][rows], z["ts_mask"][rows], self.k)
        return g + self.local_weight * contrastive_from_scores(scores, self.temperature)

    def pretrain_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith(("head.", "struct."))]

    def finetune_parameters(self):
        return list(self.parameters())

    def forward(self, b: dict) -> torch.Tensor:
        z = self.encode(b)
        parts = [z["img_global"], z["ts_global"]]
        if self.struct is not None:
            parts.append(self.struct(b["ehr"]))
        return self.head(torch.cat(parts, 1))


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
HEADS: dict[str, type[Head]] = {cls.name: cls for cls in (ConcatLR, LateFusion, Contrastive, CrossAttention,
                                                           CoAttention, MedCAM, TimelineRNN)}


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
