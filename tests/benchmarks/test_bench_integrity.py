"""The cohort integrity check's peak memory on 10x the data (issue 19: bounded memory per shard).

`run`'s gate (benchmark.data.integrity.integrity_findings) reads every shard and every modality
sidecar of a cohort once, before any label. A cold 1M-subject logistic-regression run peaked at
4.3 GB RSS there, not in featurization: the subject-id frame polars returned for each shard kept the
whole shard's column capacity alive (~13 MB per 1.6M-row shard, all 200 shards kept), and the
embedding check held a sidecar's whole embedding column as float64 lists (one file that grows with the
cohort). Both are now bounded: 100k -> 1M subjects must cost <= 1.5x the peak RSS (each side in a
fresh interpreter, peak = VmHWM after the imports). Sizes: 100k / 1M with MEHR_BENCH_LARGE=1 (`make
bench`, ratio asserted), else 300 / 3000 (runs once under `make test`, nothing asserted).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.benchmarks.conftest import fresh_interpreter

LARGE = os.environ.get("MEHR_BENCH_LARGE") == "1"
SIZES = (100_000, 1_000_000) if LARGE else (300, 3000)
MAX_RSS_RATIO = 1.5

_MEASURE = r"""
import json, sys, time
from benchmark.data.integrity import integrity_findings

def status_kb(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])

with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the high-water mark: the peak of the check, not of the imports
t0 = time.perf_counter()
findings = integrity_findings(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_mb": status_kb("VmHWM") / 1024,
                  "errors": [f.message for f in findings if f.level == "error"]}))
"""


def _check_in_subprocess(root: Path, cache: Path) -> dict:
    return fresh_interpreter(_MEASURE, [str(root)], cache, "the integrity check")


def test_bench_integrity_check_memory_100k_to_1m(benchmark, bench_enabled, cohorts, tmp_path):
    """10x the subjects (and shards, and sidecar rows): <= 1.5x the integrity check's peak RSS."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs /proc/self/clear_refs (Linux) to read one process's peak RSS")
    small, large = SIZES
    s = _check_in_subprocess(cohorts(small).root, tmp_path / "cache-small")
    l = benchmark.pedantic(lambda: _check_in_subprocess(cohorts(large).root, tmp_path / "cache-large"),
                           rounds=1, iterations=1)
    assert s["errors"] == [] and l["errors"] == []
    ratio = l["peak_mb"] / s["peak_mb"]
    benchmark.extra_info.update(small=s, large=l, rss_ratio=ratio, load_avg=os.getloadavg()[0])
    print(f"\n[integrity check {small} -> {large} subjects] {s['seconds']:.1f}s -> {l['seconds']:.1f}s, peak RSS "
          f"{s['peak_mb']:.0f} -> {l['peak_mb']:.0f} MB (x{ratio:.2f}, target <= {MAX_RSS_RATIO})")
    if bench_enabled and LARGE:
        assert ratio <= MAX_RSS_RATIO, f"10x the data took {ratio:.2f}x the peak RSS (target <= {MAX_RSS_RATIO})"
