"""The null-time rule's answer (shard_checks.nonstatic_null_codes) is cached (issue 19: every run
scanned every event for it, twice on a cold cache): a second ask reads the cache, a changed shard or
predicate map recomputes, and the cached answer equals the computed one."""

from __future__ import annotations

import os
import shutil

import polars as pl
import pytest

import benchmark.data.shard_checks as sc


def test_null_time_answer_cached_and_invalidated(small_cohort, tmp_path, cache, monkeypatch):
    root = tmp_path / "c"
    shutil.copytree(small_cohort.root, root)
    shard = sorted((root / "data").rglob("*.parquet"))[0]
    df = pl.read_parquet(shard)
    # a code that occurs with a time gets a null-time row too: not a static fact
    extra = df.filter(pl.col("time").is_not_null()).head(1).with_columns(pl.lit(None, dtype=df.schema["time"]).alias("time"))
    pl.concat([extra, df]).write_parquet(shard)
    shards = sorted((root / "data").rglob("*.parquet"))
    pf = small_cohort.predicates_file
    expected = sc._nonstatic_null_codes(shards, pf)
    assert expected  # the planted row is found
    assert sc.nonstatic_null_codes(shards, pf) == expected  # computed and stored
    calls = []
    real = sc._nonstatic_null_codes
    monkeypatch.setattr(sc, "_nonstatic_null_codes", lambda *a: calls.append(1) or real(*a))
    assert sc.nonstatic_null_codes(shards, pf) == expected and calls == []  # read back, no scan
    st = shard.stat()
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the shard changed (mtime)
    assert sc.nonstatic_null_codes(shards, pf) == expected and calls == [1]
    assert len(list((cache / "null_time").glob("*.json"))) == 2


def test_no_cache_folder_still_answers(small_cohort, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("MEHR_BENCH_CACHE", str(ro / "cache"))
    if os.access(ro, os.W_OK):  # root ignores the permission bits
        pytest.skip("running as root: a read-only folder is writable")
    shards = small_cohort.data_files()
    assert sc.nonstatic_null_codes(shards, small_cohort.predicates_file) == \
        sc._nonstatic_null_codes(shards, small_cohort.predicates_file)
