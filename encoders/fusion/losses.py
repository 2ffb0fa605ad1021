"""Losses: symmetric InfoNCE, MedCAM's local top-k score, Cox partial likelihood, discrete-time NLL,
Weibull NLL (TorchSurv).

All take and return torch tensors; none has learnable state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE between two views of the same samples (CLIP / ConVIRT loss).

    Radford et al. 2021 (CLIP) and Zhang et al. 2022 (ConVIRT): with L2-normalised rows,
    logits_ij = <a_i, b_j> / temperature, and

        L = 1/2 [ CE(logits, diag) + CE(logits^T, diag) ]
          = -1/(2B) sum_i [ log softmax_j(logits_ij)|_{j=i} + log softmax_j(logits_ji)|_{j=i} ].

    Args:
        a: [B, d] first view (normalised here).
        b: [B, d] second view, row i paired with a's row i.
        temperature: softmax temperature.

    Returns:
        Scalar loss.
    """
    a = F.normalize(a, dim=-1)
    b = F.normalize(b, dim=-1)
    return contrastive_from_scores(a @ b.T, temperature)


def contrastive_from_scores(scores: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric cross-entropy over a [B, B] pair-score matrix whose diagonal holds the positives.

    Args:
        scores: [B, B] similarity of sample i's first view with sample j's second view.
        temperature: softmax temperature.

    Returns:
        Scalar loss.
    """
    logits = scores / temperature
    target = torch.arange(len(scores), device=scores.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def local_topk_scores(img_tokens: torch.Tensor, ts_tokens: torch.Tensor, ts_mask: torch.Tensor,
                      k: int = 3) -> torch.Tensor:
    """MedCAM's local alignment score of every (image, time-series) pair in a batch (MedCAM paper).

    For image i and series j: cosine similarity of each image token p with each valid series
    token t; for every image token keep its k best-matching series tokens (fewer if fewer are
    valid) and average them; the pair score is the mean over image tokens:

        s_ij = 1/P sum_p mean(topk_t cos(x_ip, y_jt)).

    (A top-k generalisation of FILIP's token-wise late interaction, Yao et al. 2022, where k = 1.)

    Args:
        img_tokens: [B, P, d].
        ts_tokens: [B, T, d].
        ts_mask: [B, T] bool, True = a real series token.
        k: series tokens matched per image token.

    Returns:
        [B, B] scores (row = image, column = series).
    """
    a = F.normalize(img_tokens, dim=-1)
    b = F.normalize(ts_tokens, dim=-1)
    sim = torch.einsum("ipd,jtd->ijpt", a, b)                        # [B, B, P, T]
    sim = sim.masked_fill(~ts_mask[None, :, None, :], float("-inf"))
    kk = max(1, min(int(k), sim.shape[-1]))
    top = sim.topk(kk, dim=-1).values                                 # [B, B, P, kk]
    valid = torch.isfinite(top)
    top = torch.where(valid, top, torch.zeros_like(top))
    per_token = top.sum(-1) / valid.sum(-1).clamp(min=1)              # [B, B, P]
    return per_token.mean(-1)


def cox_ph_loss(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Negative Cox partial log-likelihood with Breslow's handling of ties, per event.

    Cox 1972, "Regression models and life-tables"; Breslow 1974; as a neural loss DeepSurv
    (Katzman et al. 2018). With risk r = f(x):

        -l = 1/#events * sum_{i: event} [ log sum_{j: t_j >= t_i} exp(r_j) - r_i ].

    Args:
        risk: [n] log-hazard ratios.
        time: [n] follow-up times.
        event: [n] 1 = event observed, 0 = censored.

    Returns:
        Scalar loss (0 when there is no event).
    """
    risk, time, event = risk.reshape(-1), time.reshape(-1), event.reshape(-1).to(risk.dtype)
    order = torch.argsort(time, descending=True, stable=True)
    r, t, e = risk[order], time[order], event[order]
    lcse = torch.logcumsumexp(r, dim=0)
    # ties: every subject tied at t_i is in the risk set, so use the value at the tie group's end
    _, counts = torch.unique_consecutive(t, return_counts=True)
    ends = torch.cumsum(counts, 0) - 1
    lcse = lcse[torch.repeat_interleave(ends, counts)]
    n_events = e.sum()
    return ((lcse - r) * e).sum() / n_events.clamp(min=1.0)


def discrete_time_nll(logits: torch.Tensor, bin_index: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the logistic-hazard discrete-time survival model.

    Gensheimer & Narasimhan 2019 ("A scalable discrete-time survival model for neural
    networks") and Kvamme & Borgan 2021 ("Continuous and discrete-time survival prediction with
    neural networks"); the CT + EHR fusion paper's discrete-time head. Time is cut into K intervals; h_j =
    sigmoid(logit_j) is the hazard of interval j. A subject whose follow-up ends in interval
    kappa contributes

        -[ sum_{j < kappa} log(1 - h_j) + e log h_kappa + (1 - e) log(1 - h_kappa) ]

    (a censored subject counts as surviving the interval it is censored in, as in Kvamme's
    LogisticHazard), averaged over subjects.

    Args:
        logits: [n, K] hazard logits.
        bin_index: [n] int64 interval of each subject's event / censoring time.
        event: [n] 1 = event, 0 = censored.

    Returns:
        Scalar loss.
    """
    n, k = logits.shape
    j = torch.arange(k, device=logits.device)[None, :]
    idx = bin_index.reshape(-1, 1)
    e = event.reshape(-1, 1).to(logits.dtype)
    at_risk = (j <= idx).to(logits.dtype)                  # intervals the subject was observed in
    target = ((j == idx).to(logits.dtype) * e)             # 1 only in the event's interval
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (bce * at_risk).sum(1).mean()


def weibull_nll(log_params: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> torch.Tensor:
    """Weibull negative log-likelihood with right censoring, TorchSurv's implementation (Monod et
    al. 2024, "TorchSurv: a lightweight package for deep survival analysis").

        -1/n sum_i [ delta_i log h_i(T_i) - H_i(T_i) ],  H_i(t) = (t / lambda_i)^rho_i

    Args:
        log_params: [n, 2] (log lambda, log rho).
        time: [n] follow-up times (> 0).
        event: [n] 1 = event, 0 = censored.

    A minibatch without any event (TorchSurv refuses one) contributes its censored terms,
    mean_i H_i(T_i) = mean_i exp(rho_i (log T_i - log lambda_i)).

    Returns:
        Scalar loss.
    """
    from torchsurv.loss.weibull import neg_log_likelihood_weibull
    event, time = event.reshape(-1).bool(), time.reshape(-1)
    if not bool(event.any()):
        return torch.exp(torch.exp(log_params[:, 1]) * (torch.log(time) - log_params[:, 0])).mean()
    return neg_log_likelihood_weibull(log_params, event, time, reduction="mean")
