"""MedCAM's alignment losses, equations 3-8 of "Modular Multimodal Alignment Using Time-Series EHR
Data for Enhancing Medical Image Classification", and SimCLR's NT-Xent (the image-only baseline).

Notation: B images in a batch, t EHR time steps per patient, D the shared embedding size,
sim = cosine similarity, tau the temperature.
"""

from __future__ import annotations


def _torch():
    import torch
    import torch.nn.functional as F
    return torch, F


def global_loss(z_cxr, z_ehr, tau: float = 0.1):
    """Eq. 3-5: symmetric InfoNCE over the batch (the CLIP loss).

    Args:
        z_cxr: [B, D] image embeddings.
        z_ehr: [B, D] EHR embeddings (the fully encoded sequence); row i pairs with image i.
        tau: temperature.

    Returns:
        scalar: (L_CXR->EHR + L_EHR->CXR) / 2.
    """
    torch, F = _torch()
    logits = F.normalize(z_cxr, dim=-1) @ F.normalize(z_ehr, dim=-1).T / tau   # [B, B]: sim(cxr_i, ehr_j)
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def attention_topk(z_cxr, z_ehr_steps, k: int):
    """A = softmax over the t steps of each patient's EHR-step / image similarity; the top-k steps.

    Args:
        z_cxr: [B, D] image embeddings.
        z_ehr_steps: [B, t, D] per-step EHR embeddings.
        k: steps kept per image (capped at t).

    Returns:
        (A [B, t], idx [B, k]) with idx the k steps of highest attention, per image.
    """
    torch, F = _torch()
    s = torch.einsum("bd,btd->bt", F.normalize(z_cxr, dim=-1), F.normalize(z_ehr_steps, dim=-1))
    a = torch.softmax(s, dim=1)
    return a, a.topk(min(k, a.shape[1]), dim=1).indices


def local_loss(z_cxr, z_ehr_steps, k: int = 10, tau: float = 0.1):
    """Eq. 6a, 6b and 7 as written.

    For image b and each of its top-k steps j (from `attention_topk`):
      6a: -log exp(sim(c_b, e_bj)/tau) / sum_{j'=1..t} exp(sim(c_b, e_bj')/tau)   (over b's own steps)
      6b: -log exp(sim(e_bj, c_b)/tau) / sum_{b'=1..B} exp(sim(e_bj, c_b')/tau)   (over the batch's images)
    each averaged over the B*k terms; L_local = (6a + 6b) / 2.

    Args:
        z_cxr: [B, D] image embeddings.
        z_ehr_steps: [B, t, D] per-step EHR embeddings of the same patients.
        k: top-k steps per image (the paper: 10).
        tau: temperature.

    Returns:
        scalar L_local.
    """
    torch, F = _torch()
    c = F.normalize(z_cxr, dim=-1)                                   # [B, D]
    e = F.normalize(z_ehr_steps, dim=-1)                             # [B, t, D]
    _, idx = attention_topk(z_cxr, z_ehr_steps, k)                   # [B, k]
    own = torch.einsum("bd,btd->bt", c, e) / tau                     # [B, t]: sim(c_b, e_bj')
    l6a = -(own.log_softmax(dim=1).gather(1, idx)).mean()
    sel = e.gather(1, idx[..., None].expand(-1, -1, e.shape[-1]))    # [B, k, D]: e_bj, j in top-k(b)
    cross = torch.einsum("bkd,ad->bka", sel, c) / tau                # [B, k, B']: sim(e_bj, c_b')
    b = torch.arange(c.shape[0], device=c.device)
    l6b = -(cross.log_softmax(dim=2)[b, :, b]).mean()                # the b' = b term
    return 0.5 * (l6a + l6b)


def nt_xent(z1, z2, tau: float = 0.2):
    """SimCLR's NT-Xent (Chen et al. 2020): the 2N views, each view's positive is its pair, the
    other 2N-2 views are negatives (self-similarity excluded).

    Args:
        z1: [N, D] projections of view 1.
        z2: [N, D] projections of view 2.
        tau: temperature.

    Returns:
        scalar loss averaged over the 2N anchors.
    """
    torch, F = _torch()
    z = F.normalize(torch.cat([z1, z2]), dim=-1)                     # [2N, D]
    n = z1.shape[0]
    logits = z @ z.T / tau
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)
