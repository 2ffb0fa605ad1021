"""MEHRT training throughput on a GPU: tokens/s, achieved TFLOP/s and model FLOPs utilisation.

    python -m encoders.mehrt.gpu_bench --size 109M --seq-len 2048 --batch-size 16 --steps 30
    python -m encoders.mehrt.gpu_bench --size 982M --seq-len 2048 --batch-size 4 --compile

On CUDA a step is: bf16 autocast forward (weights and optimizer state stay float32), the causal LM
loss, backward, fused AdamW. Attention runs through SDPA restricted to the flash kernel (the run
fails loudly rather than silently measuring a slower kernel; --any-attention-kernel lifts that).
Batches are random tokens, optionally with image placeholders (--images) and a PRS vector
(--prs-mode), so no data is needed.

MFU (PaLM, Chowdhery et al. 2022, appendix B) = model.flops_per_token(S) * tokens/s / peak, where
flops_per_token = 6 N + 12 L d S counts the model's FLOPs, not what the kernels happen to execute
(no credit for activation recomputation). The default peak, 989 TFLOP/s, is the dense bf16 tensor
core peak of an H100 SXM and of an H200; pass --peak-tflops for other GPUs (H100 PCIe: 756).

Without CUDA (or with --device cpu) the script runs a smoke test: the tiny size in float32 for a
few short steps, whatever --size says, so it can be checked on any machine.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import nullcontext

import torch

from encoders.mehrt.model import MEHRT
from encoders.mehrt.sizes import SIZES, config_for

IMAGE_DIMS = (("ct", 768), ("wsi", 1536), ("cxr", 1024))  # typical foundation-model widths


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="109M", choices=list(SIZES))
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps (compilation, autotune)")
    p.add_argument("--vocab-size", type=int, default=8192)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--peak-tflops", type=float, default=989.0,
                   help="accelerator peak in TFLOP/s for MFU (989 = H100 SXM / H200 dense bf16)")
    p.add_argument("--images", action="store_true", help="add ct/wsi/cxr placeholders (2%%)")
    p.add_argument("--prs-mode", choices=["prefix", "cross_attention"], default=None)
    p.add_argument("--any-attention-kernel", action="store_true",
                   help="let SDPA pick any kernel instead of requiring flash attention")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    return p.parse_args(argv)


def make_batch(cfg, batch_size: int, seq_len: int, device: torch.device,
               images: bool, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A random training batch: tokens, optional image placeholders and PRS (labels = tokens).

    Args:
        cfg: the model config.
        batch_size, seq_len: batch shape B x T.
        device: where to put it.
        images: whether to scatter image placeholders (2% of positions).
        generator: CPU random generator (reproducible batches).

    Returns:
        Keyword arguments for `MEHRT.forward`.
    """
    ids = torch.randint(0, cfg.vocab_size, (batch_size, seq_len), generator=generator)
    batch = {"input_ids": ids, "labels": ids}
    if images:
        n_mod = len(cfg.image_dims)
        is_image = torch.rand(batch_size, seq_len, generator=generator) < 0.02
        which = torch.randint(1, n_mod + 1, (batch_size, seq_len), generator=generator)
        batch["image_index"] = torch.where(is_image, which, 0)
        batch["image_values"] = torch.randn(batch_size, seq_len, cfg.image_embed_dim,
                                            generator=generator) * is_image[..., None]
    if cfg.prs_mode:
        batch["prs"] = torch.randn(batch_size, cfg.prs_dim, generator=generator)
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def main(argv: list[str] | None = None) -> dict[str, float | int | str]:
    """Run the benchmark and print (and return) its measurements.

    Args:
        argv: command-line arguments (None = sys.argv).

    Returns:
        The measurements (tokens_per_s, tflops, mfu, ...).
    """
    args = parse_args(argv)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if args.device == "cuda" and not cuda:
        raise SystemExit("--device cuda was asked for, but torch sees no CUDA device")
    device = torch.device("cuda" if cuda else "cpu")
    size, seq_len, batch_size = args.size, args.seq_len, args.batch_size
    steps, warmup = args.steps, args.warmup
    if not cuda:  # smoke test: a few tiny steps on CPU
        torch.set_num_threads(min(2, torch.get_num_threads()))
        size, seq_len, batch_size = "tiny", min(seq_len, 128), min(batch_size, 2)
        steps, warmup = min(steps, 3), min(warmup, 1)
    torch.manual_seed(args.seed)
    overrides = {"max_seq_len": max(seq_len, SIZES[size].max_seq_len)}
    if args.images:
        overrides["image_dims"] = IMAGE_DIMS
    if args.prs_mode:
        overrides.update(prs_dim=128, prs_mode=args.prs_mode)
    cfg = config_for(size, args.vocab_size, **overrides)
    model = MEHRT(cfg).to(device).train()
    # Fused AdamW: one kernel for all parameters instead of a loop of elementwise launches.
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95),
                                  weight_decay=0.1, fused=cuda)
    step_model = torch.compile(model) if args.compile else model
    if cuda:
        torch.set_float32_matmul_precision("high")  # fp32 leftovers run on TF32 tensor cores
        autocast = torch.autocast("cuda", dtype=torch.bfloat16)
        from torch.nn.attention import SDPBackend, sdpa_kernel

        kernel = nullcontext() if args.any_attention_kernel else sdpa_kernel(
            [SDPBackend.FLASH_ATTENTION])
    else:
        autocast, kernel = nullcontext(), nullcontext()
    generator = torch.Generator().manual_seed(args.seed)
    batches = [make_batch(cfg, batch_size, seq_len, device, args.images, generator)
               for _ in range(2)]  # alternate two batches: no host-to-device copy in the loop

    def step(i: int) -> torch.Tensor:
        with autocast, kernel:
            loss = step_model(**batches[i % 2])["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for i in range(warmup):
        step(i)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(steps):
        loss = step(i)
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0

    tokens_per_s = steps * batch_size * seq_len / elapsed
    total_len = seq_len + cfg.n_prefix_tokens
    flops = model.flops_per_token(total_len) * tokens_per_s * total_len / seq_len
    result = {
        "device": torch.cuda.get_device_name() if cuda else "cpu (smoke test)",
        "size": size, "n_parameters": model.num_parameters(), "config_hash": cfg.config_hash(),
        "seq_len": seq_len, "batch_size": batch_size, "steps": steps,
        "compile": bool(args.compile), "images": bool(args.images), "prs_mode": args.prs_mode,
        "step_s": elapsed / steps, "tokens_per_s": tokens_per_s, "tflops": flops / 1e12,
        "mfu": flops / (args.peak_tflops * 1e12) if cuda else float("nan"),
        "peak_tflops": args.peak_tflops, "final_loss": float(loss.detach()),
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"MEHRT {size} ({result['n_parameters'] / 1e6:.1f}M params) on {result['device']}: "
              f"B={batch_size} T={seq_len} compile={args.compile}")
        print(f"  {result['step_s'] * 1e3:.1f} ms/step  {tokens_per_s:,.0f} tokens/s  "
              f"{result['tflops']:.1f} TFLOP/s  MFU {result['mfu']:.1%} of {args.peak_tflops:g}  "
              f"peak mem {result['peak_memory_gib']:.1f} GiB  loss {result['final_loss']:.3f}")
    return result


if __name__ == "__main__":
    main()
