"""MEHRT training loop of one stage: settings, batch sampling, devices, AdamW, resumable steps, perplexity.

Batches. Step s of a stage draws its global batch of ``batch_size x grad_accum`` windows from
``numpy.random.default_rng([seed, stage, s])``: documents with probability proportional to their
number of windows, each cut to a window of ``seq_len`` tokens (the demographic prefix is always
kept, then a random contiguous span). A batch is therefore a pure function of the step and the
global batch size, never of the world size: resumption is exact, ranks shard it, and a checkpoint
written by W processes resumes in W' processes (same data, same gradient up to float32 summation
order). Gradient accumulation splits the step's global batch into ``grad_accum`` micro-batches of
``batch_size`` rows (rows k*B .. (k+1)*B - 1); each micro-batch is split over the ranks.

Optimisation. AdamW (decoupled weight decay on matrices only), linear warmup then cosine decay to
``min_lr_ratio * lr``, global-norm gradient clipping, float32 master weights. On CUDA: bf16
autocast, SDPA flash attention (model.py), optional torch.compile, fused AdamW. DDP through
torchrun: ``init_process_group`` from the environment when WORLD_SIZE > 1; rank r takes rows
r, r + W, ... of each micro-batch, and every micro-batch's loss is rescaled so the accumulated,
rank-averaged gradient equals the single-process gradient of the whole step's token-mean loss.
DDP's all-reduce runs once per optimizer step (``no_sync`` on the other micro-batches).

`pretrain.py` (the curriculum) calls `train_stage` once per stage; checkpoints are `checkpoints.py`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import resource
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from encoders.mehrt.checkpoints import device_of, latest_checkpoint, load_checkpoint, save_checkpoint
from encoders.mehrt.collate import Collator, model_inputs, shared_recent_starts
from encoders.mehrt.model import IGNORE_INDEX, MEHRT
from encoders.mehrt.tokenizer import PREFIX_LEN

STAGE_CODE = {"1": 1, "2": 2, "3": 3, "3joint": 4}  # enters the batch RNG seed


# ====================================================================================== config
@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one stage (frozen; `hash` enters the checkpoint cache key).

    ``batch_size`` is the global micro-batch in sequences (split across DDP ranks: batch_size / W
    rows per rank); ``grad_accum`` micro-batches make one optimizer step, so a step trains on
    batch_size x grad_accum sequences whatever the world size. ``warmup_steps`` None means 5 % of
    the steps (at least 1).
    """

    steps: int
    batch_size: int = 16
    seq_len: int = 256
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int | None = None
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    seed: int = 0
    checkpoint_every: int = 100
    compile: bool = False
    grad_accum: int = 1

    def __post_init__(self):
        if self.grad_accum < 1:
            raise ValueError(f"grad_accum={self.grad_accum} must be at least 1")

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step: batch_size x grad_accum (independent of the world size)."""
        return self.batch_size * self.grad_accum

    def hash(self) -> str:
        """Stable 16-hex-digit hash of the settings that change the result (not checkpoint_every).

        grad_accum enters only when it is not 1, so stages cached before it existed keep their key.
        """
        d = dataclasses.asdict(self)
        d.pop("checkpoint_every")
        d.pop("compile")
        if d["grad_accum"] == 1:
            d.pop("grad_accum")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else max(1, self.steps // 20)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at a step: linear warmup to cfg.lr, then cosine decay to min_lr_ratio * lr.

    Args:
        step: 0-based step.
        cfg: the stage's settings.

    Returns:
        The learning rate.
    """
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


# ====================================================================================== batches
def window_weights(lengths: np.ndarray, seq_len: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """Sampling probability per document: proportional to its number of windows (0 if ineligible).

    Sampling documents this way makes every token about equally likely to be trained on.
    """
    body = max(1, seq_len - PREFIX_LEN)
    w = np.ceil(np.maximum(lengths - PREFIX_LEN, 1) / body)
    if eligible is not None:
        w = w * eligible
    if w.sum() <= 0:
        raise ValueError("no document is eligible for this stage")
    return w / w.sum()


def sample_windows(lengths: np.ndarray, probs: np.ndarray, step: int, cfg: TrainConfig,
                   stage: str) -> tuple[np.ndarray, np.ndarray]:
    """The global batch of a step: document indices and window starts (a pure function of the step).

    It depends on the step and the global batch size (batch_size x grad_accum) only, never on the
    world size, so checkpoints resume across world sizes; batch_size 2b x grad_accum 1 and b x 2
    draw the same windows.

    Args:
        lengths: tokens per document in the stage's variant (with or without placeholders).
        probs: from `window_weights`.
        step: the step.
        cfg: the stage's settings (seed, batch_size, grad_accum, seq_len).
        stage: stage name (enters the seed, so stages draw different batches).

    Returns:
        (docs int64 [B x A], starts int64 [B x A]); a window is the prefix +
        tokens[start:start+seq_len-PREFIX_LEN]; micro-batch k is rows k*B .. (k+1)*B - 1.
    """
    n = cfg.global_batch
    rng = np.random.default_rng([cfg.seed, STAGE_CODE[stage], step])
    docs = rng.choice(len(lengths), size=n, p=probs)
    body = cfg.seq_len - PREFIX_LEN
    last_start = np.maximum(lengths[docs] - body, PREFIX_LEN)  # last start with a full window
    starts = PREFIX_LEN + np.floor(rng.random(n) * (last_start - PREFIX_LEN + 1)).astype(np.int64)
    return docs.astype(np.int64), starts


# ====================================================================================== devices
@dataclass(frozen=True)
class Dist:
    """Process layout: rank, world size, device (DDP when world > 1)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Read torchrun's environment; join the process group when WORLD_SIZE > 1.

    Returns:
        The layout (CUDA device cuda:LOCAL_RANK when available, else CPU with gloo).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(rank, world, device)


def _autocast(device: torch.device):
    # bf16 autocast on GPUs: matmuls in bf16, weights/optimizer state stay float32.
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: GPU allocator peak on CUDA, else this process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ====================================================================================== training loop
def _optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over trainable parameters; weight decay on matrices only (not norms, gates, embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim == 2 and "emb" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                             fused=device.type == "cuda")


def train_stage(model: MEHRT, collate: Collator, cfg: TrainConfig, stage: str, folder: Path, *,
                trainable: Callable[[str], bool] = lambda name: True,
                eligible: np.ndarray | None = None, layout: Dist | None = None,
                stop_after: int | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Train one stage, resuming from `folder`'s latest checkpoint if there is one.

    Args:
        model: the model (on CPU or its device); trained in place.
        collate: the stage's data (corpus and variant).
        cfg: optimisation settings.
        stage: stage name (seeds the batches).
        folder: checkpoint folder of this stage.
        trainable: parameter name -> whether it learns (others are frozen).
        eligible: bool [D] documents this stage samples from (None = all).
        layout: DDP layout (default: `init_distributed()`).
        stop_after: stop (with a checkpoint) after this many steps in total: simulates an
            interruption in tests.
        log: optional progress callback.

    Returns:
        Progress state: step, losses (global mean loss per step), tokens, train_seconds,
        tokens_per_s, finished.
    """
    layout = layout or init_distributed()
    if cfg.batch_size < layout.world:
        raise ValueError(f"batch_size={cfg.batch_size} (the global micro-batch) must be at least the world size "
                         f"{layout.world}: every rank needs a row of each micro-batch")
    device = layout.device
    model.to(device)
    for name, p in model.named_parameters():
        # Empty parameters (EHRT's [0, d] modality_emb) never get a gradient: DDP would wait for them
        # forever and fail at the second step ("did not receive grad"), so they are not trained.
        p.requires_grad_(trainable(name) and p.numel() > 0)
    opt = _optimizer(model, cfg, device)
    state = {"step": 0, "losses": [], "tokens": 0, "train_seconds": 0.0, "stage": stage,
             "train_config": dataclasses.asdict(cfg)}
    ckpt = latest_checkpoint(folder)
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, opt)
    lengths = collate.corpus.lengths(collate.multimodal)
    probs = window_weights(lengths, cfg.seq_len, eligible)
    net: torch.nn.Module = model
    ddp = None
    if layout.world > 1:
        net = ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile and device.type == "cuda":
        net = torch.compile(net)
    model.train()
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    params = [p for p in model.parameters() if p.requires_grad]
    B, A = cfg.batch_size, cfg.grad_accum
    for step in range(state["step"], end):
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        docs, starts = sample_windows(lengths, probs, step, cfg, stage)
        # micro-batch k = rows k*B ..; rank r takes rows r, r+W, ... of it (DistributedSampler-style)
        mine = [slice(k * B + layout.rank, (k + 1) * B, layout.world) for k in range(A)]
        batches = [collate(docs[m], starts[m], cfg.seq_len) for m in mine]
        n_micro = [(b["labels"][:, 1:] != IGNORE_INDEX).sum() for b in batches]
        counts = torch.stack([sum(n_micro).float(), sum(b["lengths"].sum() for b in batches).float()]).to(device)
        if layout.world > 1:
            dist.all_reduce(counts)
        global_loss = torch.zeros((), device=device)
        for k, (batch, n_k) in enumerate(zip(batches, n_micro)):
            # gradients are all-reduced once, on the last micro-batch
            sync = nullcontext() if ddp is None or k == A - 1 else ddp.no_sync()
            with sync:
                with _autocast(device):
                    loss = net(**model_inputs(batch, device))["loss"]
                # The model returns this rank's micro-batch token mean. Scaling by n_k * world /
                # n_global makes the accumulated DDP average the gradient of the whole step's
                # global token mean, however it is split over ranks and micro-batches.
                scaled = loss * n_k.to(device).float() * layout.world / counts[0].clamp(min=1)
                scaled.backward()
            global_loss += scaled.detach() / layout.world
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if layout.world > 1:
            dist.all_reduce(global_loss)
        state["losses"].append(float(global_loss))
        state["tokens"] += int(counts[1])
        state["train_seconds"] += time.perf_counter() - t0
        state["step"] = step + 1
        if log and (step % 50 == 0 or step + 1 == end):
            log(f"stage {stage} step {step + 1}/{cfg.steps} loss {state['losses'][-1]:.3f} lr {lr_at(step, cfg):.2e}")
        if layout.main and (state["step"] % cfg.checkpoint_every == 0 or state["step"] == end):
            save_checkpoint(folder, model, opt, state)
        if layout.world > 1 and state["step"] % cfg.checkpoint_every == 0:
            dist.barrier()
    state["finished"] = state["step"] >= cfg.steps
    state["tokens_per_s"] = state["tokens"] / max(state["train_seconds"], 1e-9)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    return state


# ====================================================================================== evaluation
@torch.no_grad()
def perplexity(model: MEHRT, collate: Collator, seq_len: int, n_docs: int = 256,
               batch_size: int = 16) -> float:
    """Test perplexity exp(mean NLL) over structured-token targets of held-out documents
    (`perplexity_detail`'s value)."""
    return perplexity_detail(model, collate, seq_len, n_docs, batch_size)["perplexity"]


@torch.no_grad()
def perplexity_detail(model: MEHRT, collate: Collator, seq_len: int, n_docs: int = 256,
                      batch_size: int = 16) -> dict:
    """Test perplexity over structured-token targets of held-out documents, and its denominator.

    Each evaluated document contributes its most recent seq_len tokens of the *multimodal*
    document (prefix kept), the window a downstream task would see at the end of the record. The
    structured-only variant (EHRT) reads the same window without its placeholders
    (`collate.shared_recent_starts`), so every stage and both variants predict exactly the same
    target tokens: their perplexities share one denominator and compare directly.

    Args:
        model: the model.
        collate: a held-out corpus in the model's variant.
        seq_len: window length (of the multimodal document).
        n_docs: evaluate this many documents, evenly spread over the corpus (deterministic).
        batch_size: documents per forward pass.

    Returns:
        {"perplexity": exp(total NLL / n_tokens), "n_tokens": target tokens, "n_docs": documents}.
    """
    device = device_of(model)
    model.eval()
    corpus = collate.corpus
    D = len(corpus)
    docs = np.unique(np.linspace(0, D - 1, min(n_docs, D)).astype(np.int64))
    docs = docs[np.argsort(corpus.lengths(True)[docs], kind="stable")]  # similar lengths together: less padding
    nll, n = 0.0, 0
    for i in range(0, len(docs), batch_size):
        d = docs[i:i + batch_size]
        batch = collate(d, shared_recent_starts(corpus, d, seq_len, collate.multimodal), seq_len)
        with _autocast(device):
            out = model(**model_inputs(batch, device))
        k = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        nll += float(out["loss"]) * k
        n += k
    return {"perplexity": math.exp(nll / max(n, 1)), "n_tokens": n, "n_docs": int(len(docs))}
