"""The CT + EHR fusion heads of "Fusion is not one-size-fits-all: Cross-Modal Representation
Alignment for Time-to-Event Modeling" (section 2.2), on ONE EHR vector and ONE image modality.

Inputs (see `inputs`): h_ehr = the ``ehr`` array [B, De] (bag of events, an EHR foundation-model
embedding or the curated one-hot vector, whatever `InputConfig.ehr_source` filled), and the task's
image modality m = the first of ``IMAGE_PRIORITY`` (ct, cxr, wsi) in the inputs: its pooled vector
h_img = ``m.mean`` [B, Di] and its K most recent studies ``m.seq`` [B, K, Di] (mask ``m.seq_mask``).
A sample without a visible study gets a learned missing vector (for h_img and as its only study
token). Notes, PRS and the time series are never read.

=================  ===================================================================
head               output fed to the MLP survival head (`layers.scaled_mlp`)
=================  ===================================================================
image_only_mlp     h_img
ehr_only_mlp       h_ehr
concat_mlp         concat(h_ehr, h_img)                    ("traditional concatenation")
contrastive        concat(z_ehr, z_img), z = linear projections aligned first by the
                   symmetric InfoNCE L between image and EHR only ("2-step contrastive")
cross_attention    concat(e, A_ehr<-img, i, A_img<-ehr)    width 4 d_k
coattention        guide="image": concat(i, CoAttn(q = i; keys/values = e))
                   guide="ehr":   concat(e, CoAttn(q = e; keys/values = image study tokens))
=================  ===================================================================

with e = P_e h_ehr, i = P_i h_img (linear projections to d_k) and the image's study tokens P_i x_k.
Where the paper's equations attend over the image, the keys / values are the K study tokens; where
they attend over the EHR there is one key (the EHR vector), so the softmax is 1 and the attention
output is W_V e (encoders/README.md, "The CT + EHR fusion paper's heads", says why).

Every head's task loss adds the paper's lambda ||theta||^2 (``l2``) while training, so these heads
train with AdamW's decoupled weight decay off (``train_defaults``).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.learn.search import Choice, Distribution
from encoders.fusion.layers import attend, param, scaled_mlp
from encoders.fusion.losses import info_nce

IMAGE_PRIORITY = ("ct", "cxr", "wsi")

# the random search of every paper head (typed, benchmark.learn.search); trial 0 = the defaults
PAPER_SPACE: dict[str, Distribution] = {
    "lr": Choice((3e-4, 1e-3, 3e-3)), "l2": Choice((1e-5, 1e-4, 1e-3)), "dropout": Choice((0.0, 0.1, 0.3)),
    "d_k": Choice((32, 64, 128)), "modality_dropout": Choice((0.0, 0.15))}


def image_modality(spec: dict) -> str | None:
    """The image modality the paper heads read: ct if the inputs have it, else cxr, else wsi."""
    return next((m for m in IMAGE_PRIORITY if m in spec["modalities"]), None)


class PaperHead(nn.Module):
    """Base of the paper heads: picks the image modality, owns its missing vector and the L2 term.

    Args:
        spec: input shapes (`FusionInputs.spec()`).
        n_out: outputs.
        l2: lambda of the paper's lambda ||theta||^2 (added to the task loss while training).
        dropout: dropout inside the MLP head.
    """

    name = ""
    has_pretraining = False
    search_space: dict[str, Distribution] = PAPER_SPACE
    train_defaults: dict = {"weight_decay": 0.0}
    needs_image = True
    needs_ehr = True

    def __init__(self, spec: dict, n_out: int, l2: float = 1e-4, dropout: float = 0.1):
        super().__init__()
        self.l2 = float(l2)
        self.dropout = float(dropout)
        self.img = image_modality(spec) if self.needs_image else None
        if self.needs_image and self.img is None:
            raise ValueError(f"head {self.name!r} needs an image modality ({', '.join(IMAGE_PRIORITY)}); "
                             f"the inputs have {sorted(spec['modalities'])}")
        self.de = int(spec["ehr_dim"])
        if self.needs_ehr and not self.de:
            raise ValueError(f"head {self.name!r} needs the EHR vector (InputConfig.structured)")
        self.di = int(spec["modalities"][self.img][0]) if self.img else 0
        if self.img:
            self.img_missing = param(self.di)

    def h_img(self, b: dict) -> torch.Tensor:
        """[B, Di] the pooled image vector, the learned missing vector where the sample has none."""
        x = b[f"{self.img}.mean"]
        return torch.where(b[f"{self.img}.present"][:, None], x, self.img_missing.expand_as(x))

    def img_tokens(self, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, K, Di] study tokens, [B, K] mask); a sample without a study has the missing vector
        as its one valid token."""
        seq = b[f"{self.img}.seq"]
        mask = b[f"{self.img}.seq_mask"] & b[f"{self.img}.present"][:, None]
        absent = ~mask.any(1)
        first = torch.where(absent[:, None], self.img_missing.expand(len(seq), -1), seq[:, 0])
        seq = torch.cat([first[:, None], seq[:, 1:]], 1)
        mask = torch.cat([(mask[:, 0] | absent)[:, None], mask[:, 1:]], 1)
        return seq, mask

    def penalty(self) -> torch.Tensor:
        """lambda ||theta||^2 over every trainable parameter."""
        return self.l2 * sum(p.pow(2).sum() for p in self.parameters() if p.requires_grad)

    def task_loss(self, b: dict, objective) -> torch.Tensor:
        loss = objective.loss(self(b), b["y"])
        return loss + self.penalty() if self.training and self.l2 else loss


class ImageOnlyMLP(PaperHead):
    """The paper's unimodal reference: MLP survival head on the frozen image embedding."""

    name = "image_only_mlp"
    needs_ehr = False

    def __init__(self, spec: dict, n_out: int, l2: float = 1e-4, dropout: float = 0.1):
        super().__init__(spec, n_out, l2, dropout)
        self.head = scaled_mlp(self.di, n_out, dropout)

    def forward(self, b: dict) -> torch.Tensor:
        return self.head(self.h_img(b))


class EHROnlyMLP(PaperHead):
    """The paper's EHR-only model: MLP survival head on the EHR vector."""

    name = "ehr_only_mlp"
    needs_image = False

    def __init__(self, spec: dict, n_out: int, l2: float = 1e-4, dropout: float = 0.1):
        super().__init__(spec, n_out, l2, dropout)
        self.head = scaled_mlp(self.de, n_out, dropout)

    def forward(self, b: dict) -> torch.Tensor:
        return self.head(b["ehr"])


class ConcatMLP(PaperHead):
    """The paper's "traditional concatenation": MLP on concat(h_ehr, h_img)."""

    name = "concat_mlp"

    def __init__(self, spec: dict, n_out: int, l2: float = 1e-4, dropout: float = 0.1):
        super().__init__(spec, n_out, l2, dropout)
        self.head = scaled_mlp(self.de + self.di, n_out, dropout)

    def fused(self, b: dict) -> torch.Tensor:
        return torch.cat([b["ehr"], self.h_img(b)], 1)

    def forward(self, b: dict) -> torch.Tensor:
        return self.head(self.fused(b))


class Contrastive(PaperHead):
    """2-step contrastive fusion: align, then a survival head on the aligned embeddings.

    Step 1 (training rows with an image, `pretrain_loss`): z_img = W_i h_img, z_ehr = W_e h_ehr,
    S_ij = cos(z_img_i, z_ehr_j) / tau and the paper's symmetric loss

        L = -1/N sum_i [ log e^S_ii / sum_j e^S_ij + log e^S_ii / sum_j e^S_ji ]

    (twice the CLIP mean `losses.info_nce`). Only the image modality and the EHR vector take part.
    Step 2: MLP on concat(z_ehr, z_img), the projections fine-tuned (``finetune=False`` freezes them).
    """

    name = "contrastive"
    has_pretraining = True

    def __init__(self, spec: dict, n_out: int, d_k: int = 64, l2: float = 1e-4, dropout: float = 0.1,
                 temperature: float = 0.1, finetune: bool = True):
        super().__init__(spec, n_out, l2, dropout)
        self.temperature = float(temperature)
        self.finetune = finetune
        self.proj_e = nn.Linear(self.de, d_k)
        self.proj_i = nn.Linear(self.di, d_k)
        self.head = scaled_mlp(2 * d_k, n_out, dropout)

    def embed(self, b: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.proj_e(b["ehr"]), self.proj_i(self.h_img(b))

    def pretrain_loss(self, b: dict) -> torch.Tensor:
        z_e, z_i = self.embed(b)
        rows = b[f"{self.img}.present"]
        if int(rows.sum()) < 2:
            return (z_e.sum() + z_i.sum()) * 0.0
        return 2.0 * info_nce(z_i[rows], z_e[rows], self.temperature)

    def pretrain_parameters(self):
        return [p for n, p in self.named_parameters() if not n.startswith("head.")]

    def finetune_parameters(self):
        return list(self.parameters()) if self.finetune else list(self.head.parameters())

    def fused(self, b: dict) -> torch.Tensor:
        return torch.cat(self.embed(b), 1)

    def forward(self, b: dict) -> torch.Tensor:
        return self.head(self.fused(b))


class _Projected(PaperHead):
    """e = P_e h_ehr, i = P_i h_img and the image study tokens P_i x_k, all of width d_k."""

    def __init__(self, spec: dict, n_out: int, d_k: int = 64, l2: float = 1e-4, dropout: float = 0.1):
        super().__init__(spec, n_out, l2, dropout)
        self.d_k = int(d_k)
        self.proj_e = nn.Linear(self.de, d_k)
        self.proj_i = nn.Linear(self.di, d_k)

    def project(self, b: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(e [B, d_k], i [B, d_k], image tokens [B, K, d_k], their mask [B, K])."""
        seq, mask = self.img_tokens(b)
        return self.proj_e(b["ehr"]), self.proj_i(self.h_img(b)), self.proj_i(seq), mask


def _qkv(d_k: int) -> nn.ModuleDict:
    return nn.ModuleDict({k: nn.Linear(d_k, d_k, bias=False) for k in ("q", "k", "v")})


class CrossAttention(_Projected):
    """Symmetric cross-attention: h_fused = concat(e, A_ehr<-img, i, A_img<-ehr), width 4 d_k.

    A_ehr<-img = softmax(W_Q^(e) e (W_K^(e) T)^T / sqrt(d_k)) W_V^(e) T over the image study tokens T;
    A_img<-ehr = softmax(W_Q^(i) i (W_K^(i) e)^T / sqrt(d_k)) W_V^(i) e (one key: = W_V^(i) e).
    """

    name = "cross_attention"

    def __init__(self, spec: dict, n_out: int, d_k: int = 64, l2: float = 1e-4, dropout: float = 0.1):
        super().__init__(spec, n_out, d_k, l2, dropout)
        self.w_e = _qkv(d_k)    # EHR queries, image keys / values
        self.w_i = _qkv(d_k)    # image queries, EHR keys / values
        self.head = scaled_mlp(4 * d_k, n_out, dropout)

    def fused(self, b: dict, weights: bool = False):
        e, i, tok, mask = self.project(b)
        a_ei, w_ei = attend(self.w_e["q"](e), self.w_e["k"](tok), self.w_e["v"](tok), mask)
        ek = e[:, None]
        a_ie, _ = attend(self.w_i["q"](i), self.w_i["k"](ek), self.w_i["v"](ek))
        h = torch.cat([e, a_ei, i, a_ie], 1)
        return (h, w_ei) if weights else h

    def forward(self, b: dict) -> torch.Tensor:
        return self.head(self.fused(b))


class CoAttention(_Projected):
    """Directed co-attention: the guiding modality is the query, the other its keys and values.

    guide="image" (coattention_img): A = softmax(W_q i (W_k e)^T / sqrt(d_k)) W_v e, h = concat(i, A).
    guide="ehr"   (coattention_ehr): A = softmax(W_q e (W_k T)^T / sqrt(d_k)) W_v T over the image
    study tokens T, h = concat(e, A). The guiding modality's own embedding is kept in h.
    """

    name = "coattention"

    def __init__(self, spec: dict, n_out: int, guide: str = "image", d_k: int = 64, l2: float = 1e-4,
                 dropout: float = 0.1):
        if guide not in ("image", "ehr"):
            raise ValueError(f"guide must be 'image' or 'ehr', not {guide!r}")
        super().__init__(spec, n_out, d_k, l2, dropout)
        self.guide = guide
        self.w = _qkv(d_k)
        self.head = scaled_mlp(2 * d_k, n_out, dropout)

    def fused(self, b: dict, weights: bool = False):
        e, i, tok, mask = self.project(b)
        if self.guide == "image":
            query, kv, kv_mask = i, e[:, None], None
        else:
            query, kv, kv_mask = e, tok, mask
        a, w = attend(self.w["q"](query), self.w["k"](kv), self.w["v"](kv), kv_mask)
        h = torch.cat([query, a], 1)
        return (h, w) if weights else h

    def forward(self, b: dict) -> torch.Tensor:
        return self.head(self.fused(b))


PAPER_HEADS = (ImageOnlyMLP, EHROnlyMLP, ConcatMLP, Contrastive, CrossAttention, CoAttention)
