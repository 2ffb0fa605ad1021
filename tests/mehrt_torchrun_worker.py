"""Entry point for the torchrun tests of MEHRT pretraining (tests/test_mehrt_torchrun.py); not a test module.

Runs ``encoders.mehrt.pretrain.main`` with three test-only instruments, each switched on by an
environment variable:

* MEHRT_TEST_LOG=DIR: write ``DIR/rank<R>.json`` at exit: the training windows this rank collated
  (documents and starts, per call; perplexity windows excluded) and every file-system write under
  MEHRT_TEST_WATCH seen by a Python audit hook (open for writing, mkdir, rename, remove, rmtree,
  mkstemp / mkdtemp).
* MEHRT_TEST_STOP_AFTER=N: every stage stops after N steps (its checkpoint written) and the process
  exits: an interrupted run, to be resumed by another launch.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path

RANK = int(os.environ.get("RANK", "0"))
WATCH = os.path.abspath(os.environ.get("MEHRT_TEST_WATCH", "/nonexistent"))
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
record = {"rank": RANK, "world": int(os.environ.get("WORLD_SIZE", "1")), "windows": [], "writes": []}


def _under(path) -> str | None:
    if isinstance(path, int) or path is None:
        return None
    p = os.path.abspath(os.fsdecode(path))
    return p if p == WATCH or p.startswith(WATCH + os.sep) else None


def _audit(event: str, args) -> None:
    paths = []
    if event == "open":
        path, mode, flags = args
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (mode is None and flags & WRITE_FLAGS):
            paths = [path]
    elif event in ("os.mkdir", "os.remove", "shutil.rmtree", "tempfile.mkstemp", "tempfile.mkdtemp", "os.rmdir"):
        paths = [args[0]]
    elif event == "os.rename":
        paths = [args[0], args[1]]
    for p in paths:
        hit = _under(p)
        if hit:
            record["writes"].append([event, hit])


def _dump() -> None:
    out = os.environ.get("MEHRT_TEST_LOG")
    if out:
        Path(out, f"rank{RANK}.json").write_text(json.dumps(record))


def main() -> int:
    import encoders.mehrt.collate as collate
    import encoders.mehrt.pretrain as pretrain

    in_eval = [False]
    real_call = collate.Collator.__call__

    def call(self, docs, starts, seq_len, repeat=False):
        if not in_eval[0]:
            record["windows"].append([[int(d) for d in docs], [int(s) for s in starts]])
        return real_call(self, docs, starts, seq_len, repeat)

    real_ppl = pretrain.perplexity_detail

    def ppl(*a, **k):
        in_eval[0] = True
        try:
            return real_ppl(*a, **k)
        finally:
            in_eval[0] = False

    collate.Collator.__call__ = call
    pretrain.perplexity_detail = ppl
    stop = os.environ.get("MEHRT_TEST_STOP_AFTER")
    if stop:
        real_train = pretrain.train_stage

        def interrupted(*a, **k):
            state = real_train(*a, stop_after=int(stop), **k)
            if not state["finished"]:
                raise SystemExit(0)  # as if killed after the checkpoint
            return state
        pretrain.train_stage = interrupted
    atexit.register(_dump)
    if os.environ.get("MEHRT_TEST_LOG"):
        sys.addaudithook(_audit)
    return pretrain.main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
