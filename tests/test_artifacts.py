"""benchmark.artifacts: one atomic write and one cached_artifact for every disk cache.

Oracles: a counter file that each compute appends to (how many times an artifact was built, across
processes), directory listings (no temp file left), and the caches' own readers.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import pytest

from benchmark.artifacts import atomic_write, cached_artifact, digest


def _read_json(p: Path) -> dict:
    return json.loads(p.read_text())


def _write_json(tmp: Path, value: dict) -> None:
    tmp.write_text(json.dumps(value))


def _slow_build(path: str, counter: str, start: float, lock: bool) -> None:
    """Child process: wait for a common start time, then build the artifact (counted, slowly)."""
    def compute() -> dict:
        with open(counter, "a") as f:
            f.write("x")
        time.sleep(0.5)  # long enough that the other builder arrives while this one computes
        return {"value": 42}

    time.sleep(max(0.0, start - time.time()))
    assert cached_artifact(Path(path), compute, read=_read_json, write=_write_json, lock=lock) == {"value": 42}


@pytest.mark.parametrize("lock,builds", [(True, "x"), (False, "xx")])
def test_concurrent_builders_compute_once(tmp_path, lock, builds):
    """Two processes ask for one missing artifact at the same moment: under the lock it is computed
    once. The lock=False case is the oracle's check: the same race then computes twice."""
    path, counter = tmp_path / "a.json", tmp_path / "counter"
    ctx = mp.get_context("spawn")
    start = time.time() + 2.0  # both children are up (spawn imports take ~1 s) before either starts
    procs = [ctx.Process(target=_slow_build, args=(str(path), str(counter), start, lock)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert counter.read_text() == builds
    assert _read_json(path) == {"value": 42}


@pytest.mark.parametrize("content", [b"", b'{"value": ', b"\x00\xff garbage"])
def test_half_written_or_corrupt_file_is_rebuilt(tmp_path, content):
    """A truncated or corrupt entry (not a crash) is recomputed and replaced."""
    path = tmp_path / "a.json"
    path.write_bytes(content)
    calls = []
    value = cached_artifact(path, lambda: calls.append(1) or {"value": 7}, read=_read_json, write=_write_json)
    assert value == {"value": 7} and calls == [1]
    assert _read_json(path) == {"value": 7}
    # ... and read back, not recomputed, the next time
    assert cached_artifact(path, lambda: calls.append(1) or {}, read=_read_json, write=_write_json) == {"value": 7}
    assert calls == [1]


def test_corrupt_npz_is_rebuilt(tmp_path):
    """The same for a binary format (np.savez with its '.npz' temp suffix)."""
    path = tmp_path / "a.npz"
    path.write_bytes(b"PK\x03\x04 truncated zip")

    def read(p):
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    out = cached_artifact(path, lambda: {"x": np.arange(3)}, read=read,
                          write=lambda tmp, a: np.savez(tmp, **a), suffix=".npz")
    assert out["x"].tolist() == [0, 1, 2] and read(path)["x"].tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.npz.lock", "a.npz"]


def test_exception_in_compute_leaves_no_file_and_no_temp(tmp_path):
    def boom():
        raise RuntimeError("compute failed")

    with pytest.raises(RuntimeError, match="compute failed"):
        cached_artifact(tmp_path / "a.json", boom, read=_read_json, write=_write_json)
    assert [p.name for p in tmp_path.iterdir()] == [".a.json.lock"]  # the lock file only


def test_exception_in_write_leaves_no_file_and_no_temp(tmp_path):
    def bad_write(tmp, value):
        tmp.write_text("half")
        raise KeyboardInterrupt  # even an interrupt mid-write leaves nothing behind

    with pytest.raises(KeyboardInterrupt):
        cached_artifact(tmp_path / "a.json", lambda: {"v": 1}, read=_read_json, write=bad_write)
    assert [p.name for p in tmp_path.iterdir()] == [".a.json.lock"]


def test_different_key_gives_a_different_artifact(tmp_path):
    """The key (digest of version and settings) names the file: other settings, other artifact."""
    paths = {k: tmp_path / f"feat-{digest(['1', k])}.json" for k in ("a", "b")}
    assert paths["a"] != paths["b"]
    assert digest(["1", "a"]) == digest(["1", "a"]) != digest(["2", "a"])
    for k, p in paths.items():
        assert cached_artifact(p, lambda k=k: {"k": k}, read=_read_json, write=_write_json) == {"k": k}
    assert {k: _read_json(p) for k, p in paths.items()} == {"a": {"k": "a"}, "b": {"k": "b"}}


def test_digest_keeps_the_old_cache_keys():
    """digest() reproduces the hand-written keys of the bag-of-events and encoder caches, so no
    existing cache entry is orphaned by the migration."""
    import hashlib
    parts = ["2", 0.01, True, 1234567890123]
    assert digest(parts, n=12) == hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:12]
    d = {"encoder": "precomputed:ct", "version": "1", "config": {"b": 1, "a": 2}, "data": "f", "task": "t",
         "samples": "s"}
    assert digest(d) == hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def test_best_effort_unwritable_folder(tmp_path):
    """best_effort: a cache that cannot be written gives the computed value, no error; without it the
    OSError is raised. (The folder is below a plain file: unwritable even for root.)"""
    (tmp_path / "file").write_text("not a folder")
    target = tmp_path / "file" / "a.json"
    v = cached_artifact(target, lambda: {"v": 3}, read=_read_json, write=_write_json, lock=False, best_effort=True)
    assert v == {"v": 3}
    v = cached_artifact(target, lambda: {"v": 4}, read=_read_json, write=_write_json, best_effort=True)
    assert v == {"v": 4}
    with pytest.raises(OSError):
        cached_artifact(target, lambda: {"v": 3}, read=_read_json, write=_write_json)


def test_atomic_write_text_and_bytes(tmp_path):
    atomic_write(tmp_path / "sub" / "a.txt", "héllo")
    atomic_write(tmp_path / "sub" / "b.bin", b"\x00\x01")
    assert (tmp_path / "sub" / "a.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.txt", "b.bin"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 120-subject synthetic cohort (no images) and a private cache folder."""
    from benchmark.data.cohort import Cohort
    from data_prep.synthetic import generate

    root = tmp_path_factory.mktemp("artifacts")
    generate(root / "c", n_subjects=120, seed=1, images=False)
    return Cohort(root / "c"), root / "cache"


def test_label_cache_rebuilds_a_corrupt_parquet(tiny, monkeypatch):
    """Migrated cache (labels): a truncated cached parquet is rebuilt to the same labels.

    Before cached_artifact, extract_labels crashed on it (polars ComputeError)."""
    from benchmark.labels import extract_labels
    from benchmark.task_registry import load_tasks

    cohort, cache = tiny
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(cache))
    task = load_tasks()["oncology/mortality_1y"]
    first = extract_labels(task, cohort)
    assert first.labels.height > 0
    first.cache_file.write_bytes(first.cache_file.read_bytes()[:40])
    again = extract_labels(task, cohort)
    assert again.labels.equals(first.labels)
    assert extract_labels(task, cohort, use_cache=False).labels.equals(first.labels)


def test_bag_of_events_cache_rebuilds_and_keeps_its_key(tiny, monkeypatch):
    """Migrated cache (bag of events): same file name as before the migration, read back equal,
    a corrupt .npz or a missing names JSON is rebuilt (before: a crash on the .npz)."""
    from benchmark.features.bag_of_events import FEATURIZER_VERSION, featurize
    from benchmark.labels import extract_labels
    from benchmark.runner import task_data
    from benchmark.task_registry import load_tasks
    import hashlib

    cohort, cache = tiny
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(cache))
    task = load_tasks()["oncology/mortality_1y"]
    data = task_data(task, cohort, 0, extract_labels(task, cohort).labels)
    old_key = hashlib.sha256(json.dumps([FEATURIZER_VERSION, 0.01, True, data.labels.select(
        "subject_id", "prediction_time").hash_rows().sum()], default=str).encode()).hexdigest()[:12]
    path = data.work_dir / f"bag_of_events-{old_key}.npz"
    bag = featurize(data, feature_set="extended")  # the features that key was written for keep it
    assert path.exists() and path.with_suffix(".json").exists()

    def same(b):
        return b.names == bag.names and all((b.X[s] != bag.X[s]).nnz == 0 for s in bag.X)

    assert same(featurize(data, feature_set="extended"))
    path.write_bytes(b"PK\x03\x04 not a zip")
    assert same(featurize(data, feature_set="extended"))
    path.with_suffix(".json").unlink()
    assert same(featurize(data, feature_set="extended")) and path.with_suffix(".json").exists()
    assert featurize(data).names != bag.names  # the paper's B.1 set is cached under its own key


def test_atomic_dir_publishes_whole_or_nothing(tmp_path):
    from benchmark.artifacts import atomic_dir
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("killed mid-write")
    assert not out.exists() and list(tmp_path.iterdir()) == []        # no half-written folder, no temp
    out.mkdir()                                                        # an empty folder is replaced
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("a")
    assert (out / "a.txt").read_text() == "a"
    with pytest.raises(OSError):                                       # a published folder is never overwritten
        with atomic_dir(out) as tmp:
            (tmp / "b.txt").write_text("b")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"] and list(tmp_path.iterdir()) == [out]
