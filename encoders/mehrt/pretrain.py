"""MEHRT pretraining: the curriculum of the MEHRT paper (OpenReview ywFxZhMnuB) (Fig. 1b), read top to bottom.

    Stage 1       EHRT: all parameters, structured timelines of all training subjects (image
                  placeholders dropped); 10 epochs in the paper.
    Stage 2       from Stage 1, frozen backbone: only the new modality parameters (image
                  projections, modality embeddings, PRS projection, cross-attention sublayers)
                  learn, on the training subjects that have at least one image study; 5 epochs.
    Stage 3       from Stage 2, unfreeze everything and continue on the same imaging subjects; 5 epochs.
    Stage 3-Joint from the Stage-1 EHRT, all parameters of the multimodal model at once on the
                  imaging subjects (no Stage 2); 10 epochs. It is the paper's headline MEHRT
                  (registry entry `mehrt-joint`); `mehrt` encodes with the gradual Stage 3.

Stage lengths. The paper counts epochs (10 / 5 / 5 / 10). Here a budget gives Stage 1 a number of
steps and the other stages get steps in the same ratio (STAGE_EPOCHS): 3-Joint sees as many
multimodal steps as Stages 2 and 3 together. Deviation, kept on purpose: an epoch of the imaging
subset is shorter than one of all subjects, so the paper's epochs would give the imaging stages
fewer steps than this ratio; with our small step budgets that would leave the adaptation stages a
few dozen updates, so the step ratio is kept instead of the epoch count.

The pieces, each in its own module:

    corpora.py      the tokenizer fitted on the training split; train / held-out documents (cached).
                    Tuning and held-out subjects are never pretrained on; held-out records only
                    give the test perplexity reported per stage.
    collate.py      (document, window start) -> right-padded model inputs.
    trainer.py      one stage's training loop: batches as a pure function of the step, AdamW with
                    warmup + cosine, clipping, bf16 autocast, DDP under torchrun; perplexity.
    checkpoints.py  step folders + latest.json: an interrupted stage resumes exactly.
    pretrain.py     (this file) the curriculum: which stages, from which parent, with which
                    trainable parameters; finished stages are cached by (data fingerprint,
                    tokenizer, model config hash, stage, steps, training config) under
                    ``cache_dir()/mehrt/ckpt/``.

Usage (also under torchrun for several GPUs, processes or nodes; only rank 0 writes, and every node
must see the same MEHR_BENCH_CACHE: see encoders/mehrt/README.md, "Many processes and nodes")::

    python -m encoders.mehrt.pretrain --data COHORT --size small --steps 600 --stages 1,2,3,3joint
    torchrun --nproc-per-node 8 -m encoders.mehrt.pretrain --data COHORT --size 109M --steps 20000 \
        --batch-size 256 --seq-len 2048 --compile
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 --rdzv-id JOB \
        -m encoders.mehrt.pretrain --data COHORT --size 256M --steps 20000 --batch-size 128 --grad-accum 2
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, load_model, save_model

from benchmark.artifacts import atomic_path, atomic_write

from encoders.mehrt.collate import Collator, collator
from encoders.mehrt.corpora import Corpora, corpora_folder, file_lock, mehrt_cache, prepare_corpora
from encoders.mehrt.model import MEHRT, MEHRTConfig
from encoders.mehrt.sizes import SIZES, config_for
from encoders.mehrt.trainer import Dist, TrainConfig, init_distributed, peak_memory_mb, perplexity_detail, train_stage

PRETRAIN_VERSION = "2"  # 2: Stages 3 / 3-Joint on imaging subjects, 10:5:5:10 lengths, shared perplexity windows
STAGES = ("1", "2", "3", "3joint")
# The MEHRT paper's epochs per stage (Stage 1 / 2 / 3 / 3-Joint); default_plan keeps their ratio in steps.
STAGE_EPOCHS = {"1": 10, "2": 5, "3": 5, "3joint": 10}


def stage_steps(stage1_steps: int, stage: str) -> int:
    """Steps of a stage when Stage 1 trains `stage1_steps` (STAGE_EPOCHS ratio, at least 1)."""
    return max(1, round(stage1_steps * STAGE_EPOCHS[stage] / STAGE_EPOCHS["1"]))


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


def imaging_documents(collate: Collator) -> np.ndarray:
    """bool [D]: documents with at least one image study (the data of Stages 2, 3 and 3-Joint).

    Raises:
        ValueError: no document has a study (the multimodal stages have nothing to train on).
    """
    eligible = collate.corpus.n_images() > 0
    if not eligible.any():
        raise ValueError("no training subject has an image study: Stages 2, 3 and 3-Joint train on subjects "
                         "with at least one (modalities/ct|wsi|cxr.parquet); encode with Stage 1 (`ehrt`) instead")
    return eligible


def stage2_projections(config: MEHRTConfig, ehrt: Path, collate: Collator, cfg: TrainConfig, folder: Path,
                       **kw) -> tuple[MEHRT, dict]:
    """Stage 2: EHRT backbone frozen; modality parameters learn on subjects with images."""
    model = build_model(config, cfg.seed + 2, init_from=ehrt)
    return model, train_stage(model, collate, cfg, "2", folder, trainable=is_modality_param,
                              eligible=imaging_documents(collate), **kw)


def stage3_unfreeze(config: MEHRTConfig, stage2: Path, collate: Collator, cfg: TrainConfig, folder: Path,
                    **kw) -> tuple[MEHRT, dict]:
    """Stage 3: from Stage 2, everything learns, on the same subjects with images."""
    model = build_model(config, cfg.seed + 3, init_from=stage2)
    return model, train_stage(model, collate, cfg, "3", folder, eligible=imaging_documents(collate), **kw)


def stage3_joint(config: MEHRTConfig, ehrt: Path, collate: Collator, cfg: TrainConfig, folder: Path,
                 **kw) -> tuple[MEHRT, dict]:
    """Stage 3-Joint: from EHRT, all parameters of the multimodal model at once (no Stage 2), on
    the subjects with images."""
    model = build_model(config, cfg.seed + 4, init_from=ehrt)
    return model, train_stage(model, collate, cfg, "3joint", folder, eligible=imaging_documents(collate), **kw)


# ====================================================================================== curriculum (cached)
@dataclass(frozen=True)
class Plan:
    """What to pretrain: model size, PRS pathway, and each stage's training settings.

    Args:
        size: a key of sizes.SIZES.
        stages: stage name -> TrainConfig (stages that are not listed are not trained).
        prs_mode: "prefix" | "cross_attention" | None (no PRS pathway); default: cross-attention,
            the Genomics paper's GPT-PRS-CROSS (model.py).
    """

    size: str
    stages: dict
    prs_mode: str | None = "cross_attention"


def default_plan(size: str, steps: int, compile: bool = False, prs_mode: str | None = "cross_attention") -> Plan:
    """The pretraining plan of a size: Stage 1 `steps` steps, the others in the paper's epoch ratio.

    Stages 1 / 2 / 3 / 3-Joint train steps in the ratio 10 / 5 / 5 / 10 (`stage_steps`,
    STAGE_EPOCHS); with 4 x 256-token steps for the small size the default budget's curriculum
    stays at a few minutes on a 2-core CPU.

    Args:
        size: MEHRT size name.
        steps: Stage-1 steps (settings.LEVELS: the budget level's steps).
        compile: torch.compile on CUDA.
        prs_mode: the PRS pathway of the multimodal stages ("cross_attention", "prefix" or None).

    Returns:
        A Plan.
    """
    tiny = size == "tiny"
    # Tokens per step: 16 x 256 for tiny, 4 x 256 for larger sizes on CPU (GPUs can afford far
    # more: use the pretrain CLI with a plan of your own).
    base = dict(batch_size=16 if tiny else 4, seq_len=256, seed=0, compile=compile,
                checkpoint_every=max(10, steps // 5))
    lr = 2e-3 if tiny else 1e-3
    n = {stage: stage_steps(steps, stage) for stage in STAGES}  # the paper's 10:5:5:10
    return Plan(size=size, prs_mode=prs_mode, stages={
        "1": TrainConfig(steps=n["1"], lr=lr, **base),
        "2": TrainConfig(steps=n["2"], lr=lr, **base),
        "3": TrainConfig(steps=n["3"], lr=lr / 2, **base),
        "3joint": TrainConfig(steps=n["3joint"], lr=lr / 2, **base),
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
    layout = init_distributed()
    if not layout.main:
        wait_for_corpora(cohort, log)  # rank 0 tokenizes (only it writes); the others then read
    corpora = prepare_corpora(cohort)
    fp, th = cohort.fingerprint(), corpora.tokenizer.hash()
    metas: dict[str, dict] = {}
    parent_key, parent_weights, model = None, None, None
    for stage in chain:
        cfg = plan.stages[stage]
        config = (structured_config(plan.size, corpora, cfg.seq_len) if stage == "1"
                  else multimodal_config(plan.size, corpora, cfg.seq_len, plan.prs_mode))
        key = stage_key(fp, th, config, stage, cfg, parent_key)
        out = mehrt_cache() / "ckpt" / key
        with stage_lock(out, layout) as todo:
            if todo:
                _train_one(stage, config, cfg, corpora, parent_weights, out, layout, eval_docs, log)
        meta = json.loads((out / "meta.json").read_text())
        meta["key"] = key
        metas[stage] = meta
        parent_key, parent_weights = key, out / "model.safetensors"
    model = build_model(MEHRTConfig.from_dict(metas[chain[-1]]["config"]), 0, init_from=None)
    load_model(model, str(parent_weights), strict=True)
    model.to(layout.device).eval()
    return model, {"stages": metas, "corpora": str(corpora.folder), "tokenizer": corpora.tokenizer}


@contextmanager
def stage_lock(out: Path, layout: Dist) -> Iterator[bool]:
    """Decide once, for all ranks, whether a stage must be trained, holding its cache lock meanwhile.

    Only rank 0 takes the file lock (out.lock, next to the stage folder) and checks out/meta.json;
    under DDP it broadcasts the answer, so every rank enters training together (collectives) or
    none does, and no other rank writes anything. The lock is held while all ranks train: another
    run (one process or another torchrun job) on the same cache waits for it and then finds the
    stage done. Every node must see the same MEHR_BENCH_CACHE (a shared file system with flock).

    Args:
        out: the stage's cache folder.
        layout: the process layout.

    Yields:
        True when the stage is to be trained now.
    """
    done = out / "meta.json"
    if layout.main and done.exists():
        todo = False  # the common case takes no lock (nothing to write)
        lock = nullcontext()
    else:
        todo = None
        lock = file_lock(out.with_suffix(".lock")) if layout.main else nullcontext()
    with lock:
        if layout.main and todo is None:
            todo = not done.exists()
        if layout.world > 1:
            flag = [todo]
            dist.broadcast_object_list(flag, src=0)
            todo = bool(flag[0])
        yield bool(todo)


def wait_for_corpora(cohort, log: Callable[[str], None] | None = None, poll_s: float = 1.0) -> None:
    """Block until rank 0 has published the cohort's corpora (no collective, so no timeout).

    Rank 0 tokenizes under the corpora lock (`prepare_corpora`); the other ranks poll for its
    done.json instead of taking the lock, so only rank 0 writes. torchrun stops every rank if rank 0
    fails. The folder must be on a file system all nodes share (MEHR_BENCH_CACHE).
    """
    done = corpora_folder(cohort) / "done.json"
    t0, warned = time.monotonic(), False
    while not done.exists():
        if log and not warned and time.monotonic() - t0 > 120:
            log(f"waiting for rank 0 to tokenize into {done.parent}: MEHR_BENCH_CACHE must be a file system "
                "shared by all nodes")
            warned = True
        time.sleep(poll_s)


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
    # the same held-out windows and structured target tokens for every stage (shared_recent_starts)
    test = perplexity_detail(model, collator(corpora.held_out, corpora.tokenizer, config), cfg.seq_len, eval_docs)
    ppl = test["perplexity"]
    meta = {"stage": stage, "config": config.to_dict(), "train_config": dataclasses.asdict(cfg),
            "n_parameters": model.num_parameters(), "held_out_perplexity": ppl,
            "perplexity_tokens": test["n_tokens"], "perplexity_docs": test["n_docs"],
            "n_stage_documents": int(len(corpora.train) if stage == "1" else (corpora.train.n_images() > 0).sum()),
            "tokens_per_s": st["tokens_per_s"], "train_seconds": st["train_seconds"], "tokens": st["tokens"],
            "final_loss": float(np.mean(st["losses"][-20:])) if st["losses"] else None,
            "peak_memory_mb": peak_memory_mb(layout.device), "device": str(layout.device),
            "world_size": layout.world, "n_train_documents": len(corpora.train)}
    if layout.main:
        # publish atomically, meta.json last (its presence = done)
        with atomic_path(out / "model.safetensors", ".safetensors") as tmp:
            save_model(model, str(tmp))
        atomic_write(out / "meta.json", json.dumps(meta, indent=1))
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
    p.add_argument("--steps", type=int, default=60, help="steps of Stage 1 (others 10:5:5:10: see default_plan)")
    p.add_argument("--stages", default="1,2,3", help="comma-separated stages to produce")
    p.add_argument("--compile", action="store_true", help="torch.compile on CUDA")
    p.add_argument("--batch-size", type=int, help="global batch in sequences (default: the size's plan)")
    p.add_argument("--seq-len", type=int, help="tokens per sequence (default 256)")
    p.add_argument("--lr", type=float, help="peak learning rate of Stage 1 (later stages keep their ratio)")
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step (default 1): a step trains on "
                   "batch-size x grad-accum sequences, each micro-batch split over the torchrun processes")
    p.add_argument("--checkpoint-every", type=int, help="steps between resumable checkpoints (default: steps / 5)")
    a = p.parse_args(argv)
    plan = default_plan(a.size, a.steps, compile=a.compile)
    over = {k: v for k, v in (("batch_size", a.batch_size), ("seq_len", a.seq_len), ("grad_accum", a.grad_accum),
                              ("checkpoint_every", a.checkpoint_every)) if v}
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
