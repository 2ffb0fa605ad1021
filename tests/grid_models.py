"""Planted models for the parallel-grid tests (tests/test_grid_parallel.py): module-level classes,
so worker processes (spawned, or Ray) import them by reference.

PrepModel records each prepare() call as a line "<name> <seed> <pid>" in $GRID_PREPARE_LOG;
BadPrepModel's prepare raises; KillModel's fit kills its own process (a worker crash: OOM killer,
a segfault in native code)."""

from __future__ import annotations

import os
import signal


from benchmark.api import ModelSpec, Prediction, Resources


class _Scores:
    """Deterministic, label-free scores (subject_id mod 7): enough for a cell to be scored."""

    name = "grid_prep"

    def __init__(self, budget, seed: int = 0):
        self.seed = seed

    def fit(self, data):
        return self

    def predict(self, data, split):
        ids = data.samples(split)["subject_id"].to_numpy()
        return Prediction(score=((ids % 7) / 7.0 + 0.01 * self.seed).astype(float))


class PrepModel(_Scores):
    def prepare(self, cohort) -> str:
        with open(os.environ["GRID_PREPARE_LOG"], "a") as f:
            f.write(f"{self.name} {self.seed} {os.getpid()}\n")
        return f"planted prepare for seed {self.seed}"


class BadPrepModel(_Scores):
    def prepare(self, cohort) -> str:
        raise RuntimeError("planted prepare failure")


class SlowPrepModel(_Scores):
    """prepare() logs "<name> start|end <time>" around a 1-second sleep (a pretraining step)."""

    def prepare(self, cohort) -> str:
        import time
        with open(os.environ["GRID_PREPARE_LOG"], "a") as f:
            f.write(f"{self.name} start {time.time()}\n")
        time.sleep(1.0)
        with open(os.environ["GRID_PREPARE_LOG"], "a") as f:
            f.write(f"{self.name} end {time.time()}\n")
        return "slow planted prepare"


class ChainA(SlowPrepModel):
    name = "grid_chain_a"


class ChainB(SlowPrepModel):
    name = "grid_chain_b"


class KillModel(_Scores):
    def fit(self, data):
        os.kill(os.getpid(), signal.SIGKILL)


def _spec(name: str, factory, chain: str | None = None) -> ModelSpec:
    return ModelSpec(name=name, kind="baseline", description="planted (tests/grid_models.py)", modalities=("structured",),
                     task_kinds=("binary",), n_parameters=None, training_data="none", license="Apache-2.0",
                     reference="test", authors="test", factory=factory, resources=Resources(cpus=1),
                     prepare_chain=chain)


PREP = _spec("grid_prep", PrepModel)
BAD_PREP = _spec("grid_bad_prep", BadPrepModel)
KILL = _spec("grid_kill", KillModel)
PLAIN = _spec("grid_plain", _Scores)
# one prepare chain (as the MEHRT family's): their prepare steps must not overlap
CHAIN_A = _spec("grid_chain_a", ChainA, chain="planted-pretraining")
CHAIN_B = _spec("grid_chain_b", ChainB, chain="planted-pretraining")
UNCHAINED_A = _spec("grid_chain_a", ChainA)
UNCHAINED_B = _spec("grid_chain_b", ChainB)
CHAIN_BAD = _spec("grid_bad_prep", BadPrepModel, chain="planted-pretraining")


def write_pid_and_sleep(path: str, seconds: float) -> None:
    """A long job (test_a_worker_exits_when_its_driver_is_killed): its worker's pid, then a sleep."""
    import time

    with open(path, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
