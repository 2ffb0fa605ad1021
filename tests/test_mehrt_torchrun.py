"""MEHRT pretraining under torchrun (issue 19): 2 CPU processes (gloo) with a c10d rendezvous.

* the 2-process run trains on exactly the 1-process run's windows (rank r takes rows r, r+2, ... of
  every step's global batch) and ends with the same weights;
* 2 processes x batch 2 x grad-accum 2 (DDP no_sync) == 1 process x batch 4;
* a checkpoint written by 2 processes resumes in 1 and vice versa, ending at the uninterrupted weights;
* only rank 0 writes into the cache (a Python audit hook records every write; rank 1 waits for rank 0's
  corpora instead of taking the lock).

Weights are compared at rtol 1e-3 / atol 1e-4: the runs differ only in float32 summation order
(gradients all-reduced across ranks or summed across micro-batches), which AdamW's 1/sqrt(v) can
raise to ~2e-5 on near-zero gradients; 6 steps at lr 2e-3 move weights by ~1e-2.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "mehrt_torchrun_worker.py"
ARGS = ["--size", "tiny", "--steps", "6", "--stages", "1", "--batch-size", "4", "--seq-len", "64",
        "--checkpoint-every", "2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory) -> Path:
    from benchmark.data.cohort import Cohort
    from data_prep.synthetic import generate
    root = generate(tmp_path_factory.mktemp("tr") / "cohort", n_subjects=160, seed=4, images=False, shard_size=60)
    Cohort(root).fingerprint()  # cached in the cohort now, so the runs only read it
    return root


def launch(cohort: Path, cache: Path, log: Path, nproc: int, *extra: str, stop_after: int | None = None) -> None:
    """One pretraining run: plain python (nproc 1) or torchrun with a c10d rendezvous on loopback."""
    log.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MEHR_BENCH_CACHE": str(cache), "MEHRT_TEST_LOG": str(log), "MEHRT_TEST_WATCH": str(cache),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    env.pop("MEHRT_TEST_STOP_AFTER", None)
    if stop_after:
        env["MEHRT_TEST_STOP_AFTER"] = str(stop_after)
    cmd = [str(WORKER), "--data", str(cohort), *ARGS, *extra]
    if nproc == 1:
        cmd = [sys.executable, *cmd]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(nproc),
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-id", "mehrt-test",
               *cmd]
    r = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def rank_log(log: Path, rank: int) -> dict:
    return json.loads((log / f"rank{rank}.json").read_text())


def stage_dir(cache: Path) -> Path:
    (d,) = [p for p in (cache / "mehrt" / "ckpt").glob("s1-6-*") if p.is_dir()]
    return d


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(stage_dir(a) / "model.safetensors")), load_file(str(stage_dir(b) / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-3, atol=1e-4, msg=k)


def with_corpora(src: Path, dst: Path) -> Path:
    """A fresh cache holding only `src`'s tokenized corpora (saves re-tokenizing in every launch)."""
    shutil.copytree(src / "mehrt", dst / "mehrt", ignore=shutil.ignore_patterns("ckpt", "*.lock"))
    return dst


def test_torchrun_two_processes(cohort_dir, tmp_path):
    # reference: one process, global batch 4
    one = tmp_path / "one"
    launch(cohort_dir, one, tmp_path / "log-one", 1)
    ref = rank_log(tmp_path / "log-one", 0)["windows"]
    assert len(ref) == 6 and all(len(d) == 4 for d, _ in ref)

    # 2 processes (fresh cache: rank 0 also tokenizes): same windows, same weights, rank 0 alone writes
    two = tmp_path / "two"
    launch(cohort_dir, two, tmp_path / "log-two", 2)
    logs = [rank_log(tmp_path / "log-two", r) for r in (0, 1)]
    assert [lg["world"] for lg in logs] == [2, 2]
    for r, lg in enumerate(logs):
        assert lg["windows"] == [[d[r::2], s[r::2]] for d, s in ref], f"rank {r} did not get rows {r}, {r}+2, ..."
    assert logs[0]["writes"] and not logs[1]["writes"], logs[1]["writes"][:5]
    meta1 = json.loads((stage_dir(one) / "meta.json").read_text())
    meta2 = json.loads((stage_dir(two) / "meta.json").read_text())
    assert stage_dir(one).name == stage_dir(two).name  # the world size is not part of the cache key
    assert (meta2["world_size"], meta1["world_size"]) == (2, 1) and meta2["tokens"] == meta1["tokens"]
    np.testing.assert_allclose(meta2["final_loss"], meta1["final_loss"], rtol=1e-5)
    assert_same_weights(one, two)

    # 2 processes x batch 2 x 2 accumulated micro-batches == 1 process x batch 4
    acc = with_corpora(one, tmp_path / "acc")
    launch(cohort_dir, acc, tmp_path / "log-acc", 2, "--batch-size", "2", "--grad-accum", "2")
    for r in (0, 1):
        w = rank_log(tmp_path / "log-acc", r)["windows"]
        assert w == [[d[k * 2 + r:(k + 1) * 2:2], s[k * 2 + r:(k + 1) * 2:2]] for d, s in ref for k in (0, 1)]
    assert_same_weights(one, acc)

    # a checkpoint of 2 processes at step 3 resumes in 1 process, and one of 1 process in 2
    for first, then, name in ((2, 1, "2to1"), (1, 2, "1to2")):
        c = with_corpora(one, tmp_path / name)
        launch(cohort_dir, c, tmp_path / f"log-{name}-a", first, stop_after=3)
        assert json.loads((c / "mehrt" / "ckpt").glob("s1-6-*/checkpoints/latest.json").__next__().read_text())[
            "step_dir"] == "step-0000003"
        launch(cohort_dir, c, tmp_path / f"log-{name}-b", then)
        resumed = rank_log(tmp_path / f"log-{name}-b", 0)["windows"]
        assert resumed == [[d[::then], s[::then]] for d, s in ref[3:]]  # steps 4-6 only
        assert_same_weights(one, c)
