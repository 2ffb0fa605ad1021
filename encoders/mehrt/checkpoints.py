"""MEHRT checkpoints of a stage in training: exact resume after an interruption.

Every ``checkpoint_every`` steps: ``model.safetensors`` (weights), ``optimizer.pt`` (torch.save of
the optimizer state dict and RNG state) and ``state.json`` (step, losses, timings), in a step folder
that a ``latest.json`` pointer names (written last, by rename). An interrupted stage resumes from the
latest checkpoint and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from benchmark.artifacts import atomic_write


def _atomic_json(path: Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1))


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
    load_model(model, str(step_dir / "model.safetensors"), strict=True, device=str(device_of(model)))
    blob = torch.load(step_dir / "optimizer.pt", map_location=device_of(model), weights_only=False)
    opt.load_state_dict(blob["optimizer"])
    torch.set_rng_state(blob["torch_rng"].cpu())
    return json.loads((step_dir / "state.json").read_text())


def device_of(model: torch.nn.Module) -> torch.device:
    """The device of a model's (first) parameter."""
    return next(model.parameters()).device
