"""MEHRT pretraining: the curriculum of the MEHRT paper (OpenReview ywFxZhMnuB) (Fig. 1b), read top to bottom.

    Stage 1       EHRT: all parameters, structured timelines only (image placeholders dropped).
    Stage 2       frozen backbone: only the new modality parameters (image projections, modality
                  embeddings, PRS projection, cross-attention sublayers) learn, on the training
                  subjects that have at least one image study.
    Stage 3       unfreeze everything, multimodal timelines of all training subjects.
    Stage 3-Joint the ablation: from the Stage-1 EHRT, train all parameters of the multimodal
                  model at once (no Stage 2).

Data. The pretraining corpus is the *training split's* subjects, each with its whole record (there
is no prediction time in pretraining; the leakage guard is applied with an unbounded one). The
tuning and held-out subjects are never used for pretraining; held-out subjects' records only
give the test perplexity reported per stage. The vocabulary and value bins are fitted on the
training split. Corpora are tokenized once per cohort into memory-mapped arrays under
``cache_dir()/mehrt/<fingerprint>/`` and reused.

Batches. Step s of a stage draws its global batch from ``numpy.random.default_rng([seed, stage,
s])``: documents with probability proportional to their number of windows, each cut to a window of
``seq_len`` tokens (the demographic prefix is always kept, then a random contiguous span). A batch
is therefore a pure function of the step, which makes resumption exact and lets ranks shard it.

Optimisation. AdamW (decoupled weight decay on matrices only), linear warmup then cosine decay to
``min_lr_ratio * lr``, global-norm gradient clipping, float32 master weights. On CUDA: bf16
autocast, SDPA flash attention (model.py), optional torch.compile, fused AdamW. DDP through
torchrun: ``init_process_group`` from the environment when WORLD_SIZE > 1; rank r takes rows
r, r + W, ... of the global batch, and the loss is rescaled so the averaged gradient equals the
single-process gradient of the global batch's token-mean loss.

Checkpoints. Every ``checkpoint_every`` steps: ``model.safetensors`` (weights),
``optimizer.pt`` (torch.save of the optimizer state dict and RNG state) and ``state.json`` (step,
losses, timings), in a step folder that a ``latest.json`` pointer names (written last, by rename).
An interrupted stage resumes from the latest checkpoint and ends with the same weights as an
uninterrupted run. Finished stages are cached by (data fingerprint, tokenizer, model config
hash, stage, steps, training config) under ``cache_dir()/mehrt/ckpt/``.

Usage (also under torchrun for several GPUs or processes)::

    python -m encoders.mehrt.pretrain --data COHORT --size small --steps 600 --stages 1,2,3,3joint
    torchrun --nproc-per-node 8 -m encoders.mehrt.pretrain --data COHORT --size 109M --steps 20000 \
        --batch-size 256 --seq-len 2048 --compile
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import math
import os
import resource
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import torch
import torch.distributed as dist
from safetensors.torch import load_file, load_model, save_model

from benchmark.results import atomic_write_bytes
from encoders.mehrt.model import IGNORE_INDEX, MEHRT, SIZES, MEHRTConfig, config_for
from encoders.mehrt.tokenizer import (IMAGE_MODALITIES, PAD_ID, PREFIX_LEN, TOKENIZER_VERSION, Corpus, Tokenizer,
                                      guarded_inputs, pretraining_documents)

PRETRAIN_VERSION = "1"
STAGES = ("1", "2", "3", "3joint")
STAGE_CODE = {"1": 1, "2": 2, "3": 3, "3joint": 4}  # enters the batch RNG seed
PRS_MODALITY = "prs"
STAGE_FRACTION = 4  # Stages 2, 3 and 3-Joint train (Stage-1 steps) // STAGE_FRACTION steps (default_plan)


# ====================================================================================== config
@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one stage (frozen; `hash` enters the checkpoint cache key).

    ``batch_size`` is the global batch in sequences (split across DDP ranks); ``warmup_steps``
    None means 5 % of the steps (at least 1).
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

    def hash(self) -> str:
        """Stable 16-hex-digit hash of the settings that change the result (not checkpoint_every)."""
        d = dataclasses.asdict(self)
        d.pop("checkpoint_every")
        d.pop("compile")
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

    Args:
        lengths: tokens per document in the stage's variant (with or without placeholders).
        probs: from `window_weights`.
        step: the step.
        cfg: the stage's settings (seed, batch_size, seq_len).
        stage: stage name (enters the seed, so stages draw different batches).

    Returns:
        (docs int64 [B], starts int64 [B]); a window is the prefix + tokens[start:start+seq_len-PREFIX_LEN].
    """
    rng = np.random.default_rng([cfg.seed, STAGE_CODE[stage], step])
    docs = rng.choice(len(lengths), size=cfg.batch_size, p=probs)
    body = cfg.seq_len - PREFIX_LEN
    last_start = np.maximum(lengths[docs] - body, PREFIX_LEN)  # last start with a full window
    starts = PREFIX_LEN + np.floor(rng.random(cfg.batch_size) * (last_start - PREFIX_LEN + 1)).astype(np.int64)
    return docs.astype(np.int64), starts


def recent_starts(lengths: np.ndarray, docs: np.ndarray, seq_len: int) -> np.ndarray:
    """Window starts that keep the most recent seq_len - PREFIX_LEN tokens (truncation rule)."""
    return np.maximum(lengths[docs] - (seq_len - PREFIX_LEN), PREFIX_LEN)


@dataclass(frozen=True)
class Collator:
    """Turns (document, window start) pairs into model inputs.

    Args:
        corpus: the tokenized documents.
        multimodal: keep image placeholders (and give PRS); False = structured-only (EHRT).
        image_dims: the model's (modality, dim) in config order (empty for EHRT).
        placeholder_ids: placeholder token id -> 1-based modality index in image_dims.
        use_prs: pass the PRS vector (when the model has a PRS pathway).
    """

    corpus: Corpus
    multimodal: bool
    image_dims: tuple[tuple[str, int], ...] = ()
    placeholder_ids: tuple[tuple[int, int], ...] = ()
    use_prs: bool = False

    def sequence(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and image rows of document d in this variant."""
        ids, rows = self.corpus.doc(int(d))
        if not self.multimodal:
            keep = rows < 0
            ids, rows = ids[keep], rows[keep]
        return ids, rows

    def __call__(self, docs: np.ndarray, starts: np.ndarray, seq_len: int,
                 repeat: bool = False) -> dict[str, torch.Tensor]:
        """Right-padded batch.

        Args:
            docs: document indices [B].
            starts: window starts [B] (see `sample_windows`).
            seq_len: window length (prefix included).
            repeat: echo embeddings: the window twice in a row ([x; x]).

        Returns:
            input_ids, labels (IGNORE_INDEX on padding and placeholders), lengths, and when
            multimodal image_index, image_values, prs.
        """
        seqs = []
        for d, s in zip(docs, starts):
            ids, rows = self.sequence(d)
            body = seq_len - PREFIX_LEN
            w_ids = np.concatenate([ids[:PREFIX_LEN], ids[s:s + body]])
            w_rows = np.concatenate([rows[:PREFIX_LEN], rows[s:s + body]])
            if repeat:
                w_ids, w_rows = np.tile(w_ids, 2), np.tile(w_rows, 2)
            seqs.append((w_ids, w_rows))
        B, T = len(seqs), max(len(s[0]) for s in seqs)
        input_ids = np.full((B, T), PAD_ID, np.int64)
        rows = np.full((B, T), -1, np.int64)
        lengths = np.zeros(B, np.int64)
        for i, (a, r) in enumerate(seqs):
            input_ids[i, :len(a)], rows[i, :len(a)], lengths[i] = a, r, len(a)
        real = np.arange(T)[None, :] < lengths[:, None]
        labels = np.where(real & (rows < 0), input_ids, IGNORE_INDEX)
        out = {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels),
               "lengths": torch.from_numpy(lengths)}
        if self.multimodal and self.image_dims:
            lut = dict(self.placeholder_ids)
            index = np.zeros((B, T), np.int64)
            has = rows >= 0
            index[has] = [lut.get(int(t), 0) for t in input_ids[has]]
            E = max(d for _, d in self.image_dims)
            values = np.zeros((B, T, E), np.float32)
            if has.any():
                values[has] = np.asarray(self.corpus.images[rows[has]])[:, :E]
            out["image_index"] = torch.from_numpy(index)
            out["image_values"] = torch.from_numpy(values)
        if self.multimodal and self.use_prs:
            out["prs"] = torch.from_numpy(np.asarray(self.corpus.prs[docs], dtype=np.float32))
        return out


def model_inputs(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """The batch's model keyword arguments on a device (lengths dropped).

    Right padding needs no attention mask: under causal attention a real token only sees earlier
    positions, which are real, so SDPA's mask-free causal path (flash kernels) stays usable.
    """
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "lengths"}


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


# ====================================================================================== checkpoints
def _atomic_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1).encode())


def save_checkpoint(folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    """Write step folder (weights, optimizer, state) and then point latest.json at it.

    Args:
        folder: the stage's checkpoint folder.
        model: unwrapped model.
        opt: its optimizer.
        state: JSON-able progress (must hold "step").
    """
    folder.mkdir(parents=True, exist_ok=True)
    step_dir = folder / f"step-{state['step']:07d}"
    tmp = folder / f".{step_dir.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    torch.save({"optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    shutil.rmtree(step_dir, ignore_errors=True)
    tmp.rename(step_dir)
    previous = latest_checkpoint(folder)
    _atomic_json(folder / "latest.json", {"step_dir": step_dir.name})
    if previous is not None and previous != step_dir:
        shutil.rmtree(previous, ignore_errors=True)  # keep one checkpoint: the latest


def latest_checkpoint(folder: Path) -> Path | None:
    """The step folder latest.json names, or None."""
    p = folder / "latest.json"
    if not p.exists():
        return None
    d = folder / json.loads(p.read_text())["step_dir"]
    return d if d.is_dir() else None


def load_checkpoint(step_dir: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict:
    """Restore weights, optimizer and RNG state from a step folder. Returns its state dict."""
    load_model(model, str(step_dir / "model.safetensors"), strict=True, device=str(_device_of(model)))
    blob = torch.load(step_dir / "optimizer.pt", map_location=_device_of(model), weights_only=False)
    opt.load_state_dict(blob["optimizer"])
    torch.set_rng_state(blob["torch_rng"].cpu())
    return json.loads((step_dir / "state.json").read_text())


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


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
        raise ValueError(f"batch_size={cfg.batch_size} must be at least the world size {layout.world}")
    device = layout.device
    model.to(device)
    for name, p in model.named_parameters():
        p.requires_grad_(trainable(name))
    opt = _optimizer(model, cfg, device)
    state = {"step": 0, "losses": [], "tokens": 0, "train_seconds": 0.0, "stage": stage,
             "train_config": dataclasses.asdict(cfg)}
    ckpt = latest_checkpoint(folder)
    if ckpt is not None:
        state = load_checkpoint(ckpt, model, opt)
    lengths = collate.corpus.lengths(collate.multimodal)
    probs = window_weights(lengths, cfg.seq_len, eligible)
    net: torch.nn.Module = model
    if layout.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile and device.type == "cuda":
        net = torch.compile(net)
    model.train()
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    params = [p for p in model.parameters() if p.requires_grad]
    for step in range(state["step"], end):
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        docs, starts = sample_windows(lengths, probs, step, cfg, stage)
        mine = slice(layout.rank, None, layout.world)  # DistributedSampler-style shard of the batch
        batch = collate(docs[mine], starts[mine], cfg.seq_len)
        n_local = (batch["labels"][:, 1:] != IGNORE_INDEX).sum().to(device)
        counts = torch.stack([n_local.float(), batch["lengths"].sum().float().to(device)])
        if layout.world > 1:
            dist.all_reduce(counts)
        with _autocast(device):
            loss = net(**model_inputs(batch, device))["loss"]
        # The model returns this rank's token mean. Scaling by n_local * world / n_global makes
        # DDP's gradient average equal the gradient of the global batch's token mean.
        scaled = loss * n_local.float() * layout.world / counts[0].clamp(min=1)
        scaled.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        global_loss = scaled.detach().clone() / layout.world
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
    """Test perplexity exp(mean NLL) over structured-token targets of held-out documents.

    Each evaluated document contributes its most recent seq_len tokens (prefix kept), the same
    window a downstream task would see at the end of the record.

    Args:
        model: the model.
        collate: a held-out corpus in the model's variant.
        seq_len: window length.
        n_docs: evaluate this many documents, evenly spread over the corpus (deterministic).
        batch_size: documents per forward pass.

    Returns:
        The perplexity.
    """
    device = _device_of(model)
    model.eval()
    D = len(collate.corpus)
    docs = np.unique(np.linspace(0, D - 1, min(n_docs, D)).astype(np.int64))
    lengths = collate.corpus.lengths(collate.multimodal)
    docs = docs[np.argsort(lengths[docs], kind="stable")]  # similar lengths together: less padding
    nll, n = 0.0, 0
    for i in range(0, len(docs), batch_size):
        d = docs[i:i + batch_size]
        batch = collate(d, recent_starts(lengths, d, seq_len), seq_len)
        with _autocast(device):
            out = model(**model_inputs(batch, device))
        k = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        nll += float(out["loss"]) * k
        n += k
    return math.exp(nll / max(n, 1))


# ====================================================================================== stages
NEW_MODALITY_PARAMS = ("image_proj.", "modality_emb", "prs_proj.", ".xattn.")


def is_modality_param(name: str) -> bool:
    """Parameters that the multimodal model adds to EHRT (trained alone in Stage 2)."""
    return any(k in name for k in NEW_MODALITY_PARAMS)


def build_model(config: MEHRTConfig, seed: int, init_from: Path | None = None) -> MEHRT:
    """A seeded model, optionally initialised from another stage's weights.

    Args:
        config: the model's config.
        seed: initialisation seed.
        init_from: a model.safetensors. Going from EHRT to MEHRT, the modality parameters are
            not taken from it (EHRT has none, or empty ones) and keep their fresh initialisation.

    Returns:
        The model (CPU).
    """
    torch.manual_seed(seed)
    model = MEHRT(config)
    if init_from is not None:
        own = model.state_dict()
        src = load_file(str(init_from))
        same = config.image_dims and all(k in src and src[k].shape == own[k].shape
                                          for k in own if is_modality_param(k))
        sd = {k: v for k, v in src.items() if same or not is_modality_param(k)}
        missing, unexpected = model.load_state_dict(sd, strict=False)
        tied = {"lm_head.weight", "tok_emb.weight"} if config.tie_embeddings else set()
        bad = [m for m in missing if not is_modality_param(m) and not (m in tied and (tied - {m}) & set(sd))]
        if bad or unexpected:
            raise ValueError(f"{init_from} does not fit {config}: missing {bad}, unexpected {unexpected}")
    return model


def stage1_ehrt(config: MEHRTConfig, collate: Collator, cfg: TrainConfig, folder: Path, **kw) -> tuple[MEHRT, dict]:
    """Stage 1: EHRT, all parameters, structured timelines (collate.multimodal is False)."""
    model = build_model(config, cfg.seed)
    return model, train_stage(model, collate, cfg, "1", folder, **kw)


def stage2_projections(config: MEHRTConfig, ehrt: Path, collate: Collator, cfg: TrainConfig, folder: Path,
                       **kw) -> tuple[MEHRT, dict]:
    """Stage 2: EHRT backbone frozen; modality parameters learn on subjects with images."""
    model = build_model(config, cfg.seed + 2, init_from=ehrt)
    eligible = collate.corpus.n_images() > 0
    return model, train_stage(model, collate, cfg, "2", folder, trainable=is_modality_param,
                              eligible=eligible, **kw)


def stage3_unfreeze(config: MEHRTConfig, stage2: Path, collate: Collator, cfg: TrainConfig, folder: Path,
                    **kw) -> tuple[MEHRT, dict]:
    """Stage 3: everything learns, multimodal timelines of all training subjects."""
    model = build_model(config, cfg.seed + 3, init_from=stage2)
    return model, train_stage(model, collate, cfg, "3", folder, **kw)


def stage3_joint(config: MEHRTConfig, ehrt: Path, collate: Collator, cfg: TrainConfig, folder: Path,
                 **kw) -> tuple[MEHRT, dict]:
    """Stage 3-Joint: from EHRT, all parameters of the multimodal model at once (no Stage 2)."""
    model = build_model(config, cfg.seed + 4, init_from=ehrt)
    return model, train_stage(model, collate, cfg, "3joint", folder, **kw)


# ====================================================================================== corpora (cached)
def mehrt_cache() -> Path:
    """cache_dir()/mehrt."""
    from benchmark.paths import cache_dir
    return cache_dir() / "mehrt"


@contextmanager
def file_lock(path: Path):
    """An exclusive lock file: concurrent runs wait for the one doing the work."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class Corpora:
    """The tokenizer (fitted on train) and the train / held-out pretraining corpora of a cohort."""

    tokenizer: Tokenizer
    train: Corpus
    held_out: Corpus
    folder: Path


def prepare_corpora(cohort, min_subjects: int = 5) -> Corpora:
    """Fit the tokenizer on the training split and tokenize train and held-out records (cached).

    Args:
        cohort: the Cohort.
        min_subjects: rare-token threshold of the tokenizer.

    Returns:
        Corpora, loaded memory-mapped from cache_dir()/mehrt/<fingerprint>/.
    """
    folder = mehrt_cache() / cohort.fingerprint() / f"tok-v{TOKENIZER_VERSION}-k{min_subjects}"
    done = folder / "done.json"
    if not done.exists():
        with file_lock(folder.with_suffix(".lock")):
            if not done.exists():
                folder.mkdir(parents=True, exist_ok=True)
                train_docs = pretraining_documents(cohort, "train")
                ev, imgs, prs = guarded_inputs(cohort, train_docs, IMAGE_MODALITIES, PRS_MODALITY)
                tok = Tokenizer(min_subjects).fit(ev.drop("prediction_time"))
                tok.save(folder / "tokenizer.json")
                for split, docs in (("train", train_docs), ("held_out", pretraining_documents(cohort, "held_out"))):
                    ev, imgs, prs = guarded_inputs(cohort, docs, IMAGE_MODALITIES, PRS_MODALITY)
                    tok.tokenize(ev, docs, imgs, prs, eos=True).save(folder / split)
                _atomic_json(done, {"tokenizer": tok.hash()})
    tok = Tokenizer.load(folder / "tokenizer.json")
    return Corpora(tok, Corpus.load(folder / "train"), Corpus.load(folder / "held_out"), folder)


# ====================================================================================== curriculum (cached)
@dataclass(frozen=True)
class Plan:
    """What to pretrain: model size, PRS pathway, and each stage's training settings.

    Args:
        size: a key of model.SIZES.
        stages: stage name -> TrainConfig (stages that are not listed are not trained).
        prs_mode: "prefix" | "cross_attention" | None (no PRS pathway).
    """

    size: str
    stages: dict
    prs_mode: str | None = "prefix"


def default_plan(size: str, steps: int, compile: bool = False) -> Plan:
    """The pretraining plan of a size: Stage 1 `steps` steps, Stages 2, 3 and 3-Joint steps // 4.

    Stage 2 trains only the small modality projections and Stage 3 starts from a trained
    backbone, so each gets a quarter of Stage 1's steps; with 4 x 256-token steps for the small
    size this keeps the default budget's pretraining to minutes on a 2-core CPU.

    Args:
        size: MEHRT size name.
        steps: Stage-1 steps (pipeline.LEVELS: the budget level's steps).
        compile: torch.compile on CUDA.

    Returns:
        A Plan.
    """
    tiny = size == "tiny"
    # Tokens per step: 16 x 256 for tiny, 4 x 256 for larger sizes on CPU (GPUs can afford far
    # more: use the pretrain CLI with a plan of your own).
    base = dict(batch_size=16 if tiny else 4, seq_len=256, seed=0, compile=compile,
                checkpoint_every=max(10, steps // 5))
    lr = 2e-3 if tiny else 1e-3
    later = max(1, steps // STAGE_FRACTION)
    return Plan(size=size, prs_mode="prefix", stages={
        "1": TrainConfig(steps=steps, lr=lr, **base),
        "2": TrainConfig(steps=later, lr=lr, **base),
        "3": TrainConfig(steps=later, lr=lr / 2, **base),
        "3joint": TrainConfig(steps=later, lr=lr / 2, **base),
    })


def _max_len(size: str, seq_len: int) -> int:
    return max(SIZES[size].max_seq_len, seq_len)


def structured_config(size: str, corpora: Corpora, seq_len: int) -> MEHRTConfig:
    """EHRT config: the size's architecture at this vocabulary, no images, no PRS."""
    return config_for(size, corpora.tokenizer.vocab_size, max_seq_len=_max_len(size, seq_len))


def multimodal_config(size: str, corpora: Corpora, seq_len: int, prs_mode: str | None) -> MEHRTConfig:
    """MEHRT config: EHRT plus the cohort's image modalities and (if present) the PRS pathway."""
    prs_dim = corpora.train.prs.shape[1] if corpora.train.prs.shape[1] and prs_mode else None
    return config_for(size, corpora.tokenizer.vocab_size, max_seq_len=_max_len(size, seq_len),
                      image_dims=corpora.train.image_dims, prs_dim=prs_dim,
                      prs_mode=prs_mode if prs_dim else None)


def collator(corpus: Corpus, tokenizer: Tokenizer, config: MEHRTConfig) -> Collator:
    """The Collator matching a model config (multimodal iff it has images or PRS)."""
    multimodal = bool(config.image_dims) or config.prs_mode is not None
    return Collator(corpus, multimodal=multimodal, image_dims=config.image_dims,
                    placeholder_ids=tuple(sorted(tokenizer.placeholder_ids(config.image_dims).items())),
                    use_prs=config.prs_mode is not None)


def stage_key(fingerprint: str, tok_hash: str, config: MEHRTConfig, stage: str, cfg: TrainConfig,
              parent: str | None) -> str:
    """Cache key of a finished stage: (data, tokenizer, model config, stage, steps, settings, parent)."""
    blob = json.dumps([PRETRAIN_VERSION, fingerprint, tok_hash, config.config_hash(), stage, cfg.steps,
                       cfg.hash(), parent])
    return f"s{stage}-{cfg.steps}-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_curriculum(cohort, plan: Plan, upto: str, *, eval_docs: int = 256,
                   log: Callable[[str], None] | None = None) -> tuple[MEHRT, dict]:
    """Pretrain (or load from the cache) the stages needed for `upto` and return its model.

    "1" -> 1; "2" -> 1, 2; "3" -> 1, 2, 3; "3joint" -> 1, 3joint. Every stage is cached under
    cache_dir()/mehrt/ckpt/<key>/ (model.safetensors + meta.json) and reused by later calls and
    other tasks; an interrupted stage resumes from its checkpoint folder.

    Args:
        cohort: the Cohort (only its training split is trained on).
        plan: size, PRS mode and per-stage settings.
        upto: the stage whose model is wanted.
        eval_docs: held-out documents for the test perplexity.
        log: progress callback.

    Returns:
        (model in eval mode, meta of every stage on the path: perplexity, tokens_per_s, ...).
    """
    chain = {"1": ["1"], "2": ["1", "2"], "3": ["1", "2", "3"], "3joint": ["1", "3joint"]}[upto]
    corpora = prepare_corpora(cohort)
    layout = init_distributed()
    fp, th = cohort.fingerprint(), corpora.tokenizer.hash()
    metas: dict[str, dict] = {}
    parent_key, parent_weights, model = None, None, None
    for stage in chain:
        cfg = plan.stages[stage]
        config = (structured_config(plan.size, corpora, cfg.seq_len) if stage == "1"
                  else multimodal_config(plan.size, corpora, cfg.seq_len, plan.prs_mode))
        key = stage_key(fp, th, config, stage, cfg, parent_key)
        out = mehrt_cache() / "ckpt" / key
        if not (out / "meta.json").exists():
            # One process trains, concurrent runs wait on the lock. Under DDP every rank must
            # enter training together (collectives), so no lock there: ranks agree on the check.
            with file_lock(out.with_suffix(".lock")) if layout.world == 1 else nullcontext():
                if not (out / "meta.json").exists():
                    _train_one(stage, config, cfg, corpora, parent_weights, out, layout, eval_docs, log)
        meta = json.loads((out / "meta.json").read_text())
        meta["key"] = key
        metas[stage] = meta
        parent_key, parent_weights = key, out / "model.safetensors"
    model = build_model(MEHRTConfig.from_dict(metas[chain[-1]]["config"]), 0, init_from=None)
    load_model(model, str(parent_weights), strict=True)
    model.to(layout.device).eval()
    return model, {"stages": metas, "corpora": str(corpora.folder), "tokenizer": corpora.tokenizer}


def _train_one(stage: str, config: MEHRTConfig, cfg: TrainConfig, corpora: Corpora, parent: Path | None,
               out: Path, layout: Dist, eval_docs: int, log) -> tuple[MEHRT, dict]:
    """Train one stage into `out` (resuming from out/checkpoints) and write model + meta."""
    coll = collator(corpora.train, corpora.tokenizer, config)
    kw = dict(layout=layout, log=log)
    folder = out / "checkpoints"
    if stage == "1":
        model, st = stage1_ehrt(config, coll, cfg, folder, **kw)
    elif stage == "2":
        model, st = stage2_projections(config, parent, coll, cfg, folder, **kw)
    elif stage == "3":
        model, st = stage3_unfreeze(config, parent, coll, cfg, folder, **kw)
    else:
        model, st = stage3_joint(config, parent, coll, cfg, folder, **kw)
    ppl = perplexity(model, collator(corpora.held_out, corpora.tokenizer, config), cfg.seq_len, eval_docs)
    meta = {"stage": stage, "config": config.to_dict(), "train_config": dataclasses.asdict(cfg),
            "n_parameters": model.num_parameters(), "held_out_perplexity": ppl,
            "tokens_per_s": st["tokens_per_s"], "train_seconds": st["train_seconds"], "tokens": st["tokens"],
            "final_loss": float(np.mean(st["losses"][-20:])) if st["losses"] else None,
            "peak_memory_mb": peak_memory_mb(layout.device), "device": str(layout.device),
            "world_size": layout.world, "n_train_documents": len(corpora.train)}
    if layout.main:
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "model.safetensors"))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        # publish: move the finished files into `out`, meta.json last (its presence = done)
        (tmp / "model.safetensors").replace(out / "model.safetensors")
        (tmp / "meta.json").replace(out / "meta.json")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
    if layout.world > 1:
        dist.barrier()
    if log:
        log(f"stage {stage}: held-out perplexity {ppl:.2f}, {st['tokens_per_s']:.0f} tokens/s")
    return model, meta


# ====================================================================================== CLI
def main(argv: list[str] | None = None) -> int:
    """Pretrain a curriculum from the command line (torchrun-compatible)."""
    import argparse

    from benchmark.data.cohort import Cohort

    p = argparse.ArgumentParser(description="MEHRT pretraining curriculum (stages 1, 2, 3, 3joint)")
    p.add_argument("--data", required=True, help="cohort folder")
    p.add_argument("--size", default="tiny")
    p.add_argument("--steps", type=int, default=60, help="steps of Stage 1 (others: see default_plan)")
    p.add_argument("--stages", default="1,2,3", help="comma-separated stages to produce")
    p.add_argument("--compile", action="store_true", help="torch.compile on CUDA")
    p.add_argument("--batch-size", type=int, help="global batch in sequences (default: the size's plan)")
    p.add_argument("--seq-len", type=int, help="tokens per sequence (default 256)")
    p.add_argument("--lr", type=float, help="peak learning rate of Stage 1 (later stages keep their ratio)")
    a = p.parse_args(argv)
    plan = default_plan(a.size, a.steps, compile=a.compile)
    over = {k: v for k, v in (("batch_size", a.batch_size), ("seq_len", a.seq_len)) if v}
    if over or a.lr:
        scale = a.lr / plan.stages["1"].lr if a.lr else 1.0
        plan = dataclasses.replace(plan, stages={k: dataclasses.replace(c, lr=c.lr * scale, **over)
                                                 for k, c in plan.stages.items()})
    cohort = Cohort(a.data)
    layout = init_distributed()
    for stage in a.stages.split(","):
        _, meta = run_curriculum(cohort, plan, stage.strip(), log=print if layout.main else None)
        if layout.main:
            m = meta["stages"][stage.strip()]
            print(json.dumps({"stage": stage, "held_out_perplexity": m["held_out_perplexity"],
                              "tokens_per_s": m["tokens_per_s"], "n_parameters": m["n_parameters"]}))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
