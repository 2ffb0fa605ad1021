"""Training throughput of MEHRT against Hugging Face's LlamaForCausalLM, the same architecture.

One training step = forward + causal LM loss + backward + AdamW step, on the same random batch,
with equal parameter counts (checked). Target: MEHRT at least as fast (ratio >= 1.0). Under
`make bench` it runs the CPU `small` size (6 layers, d=192, GQA 6/2 heads, vocab 8192) on 8 x 256
tokens; under `make test` (--benchmark-disable) one step each of a tiny config.
"""

from __future__ import annotations

import pytest
import torch

from encoders.mehrt.model import MEHRT, MEHRTConfig
from encoders.mehrt.sizes import config_for

transformers = pytest.importorskip("transformers")


def llama_config(cfg: MEHRTConfig):
    """The LlamaConfig with the same vocabulary, widths, depth, heads, RoPE and tied embeddings."""
    return transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads, max_position_embeddings=cfg.max_seq_len,
        rms_norm_eps=cfg.norm_eps, tie_word_embeddings=True, attention_dropout=0.0,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        attn_implementation="sdpa")


def training_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: torch.Tensor,
                  hugging_face: bool):
    """Returns a zero-argument callable running one full training step."""

    def step() -> None:
        if hugging_face:
            loss = model(input_ids=batch, labels=batch).loss
        else:
            loss = model(batch, labels=batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


# Under --benchmark-disable the `benchmark` fixture is deliberately left unused.
@pytest.mark.filterwarnings("ignore::pytest_benchmark.logger.PytestBenchmarkWarning")
def test_training_throughput_vs_hf_llama(compare, bench_enabled, benchmark):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machine: one thread gives steadier ratios
    try:
        torch.manual_seed(0)
        if bench_enabled:
            cfg, batch_size, seq_len = config_for("small", vocab_size=8192), 8, 256
        else:
            cfg, batch_size, seq_len = config_for("tiny", vocab_size=512), 2, 32
        ours = MEHRT(cfg).train()
        ref = transformers.LlamaForCausalLM(llama_config(cfg)).train()
        n_ref = sum(p.numel() for p in ref.parameters())  # parameters() yields tied weights once
        assert ours.num_parameters() == n_ref, "the two models must be the same size"
        batch = torch.randint(0, cfg.vocab_size, (batch_size, seq_len))
        step_ours = training_step(ours, torch.optim.AdamW(ours.parameters(), lr=1e-4), batch, False)
        step_ref = training_step(ref, torch.optim.AdamW(ref.parameters(), lr=1e-4), batch, True)
        if bench_enabled:  # first steps allocate optimizer state and warm allocator caches
            for _ in range(2):
                step_ours()
                step_ref()
        ratio = compare(step_ours, step_ref, min_ratio=1.0, rounds=5)
        if ratio is not None:
            tokens = batch_size * seq_len
            benchmark.extra_info.update(
                tokens_per_s=tokens / benchmark.extra_info["ours_s"],
                reference_tokens_per_s=tokens / benchmark.extra_info["reference_s"],
                n_parameters=n_ref, config_hash=cfg.config_hash())
    finally:
        torch.set_num_threads(threads)
