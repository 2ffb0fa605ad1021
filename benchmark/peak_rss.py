"""Peak resident memory of this process while a block runs (check-model's per-fit memory row)."""

from __future__ import annotations

import resource
import sys
import threading


class PeakRSS:
    """Peak resident memory (MB) of this process while the block runs: /proc/self/statm sampled every
    20 ms, and ru_maxrss when the block raised the process's all-time peak (it catches short spikes)."""

    def __init__(self):
        self.peak_mb = 0.0
        self._stop = threading.Event()

    @staticmethod
    def _now_mb() -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * resource.getpagesize() / 2**20
        except (OSError, ValueError, IndexError):
            return 0.0

    @staticmethod
    def _max_mb() -> float:
        m = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return m / 2**20 if sys.platform == "darwin" else m / 1024  # bytes on macOS, KiB on Linux

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, self._now_mb())

    def __enter__(self) -> "PeakRSS":
        self._before = self._max_mb()
        self.peak_mb = self._now_mb()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        after = self._max_mb()
        self.peak_mb = max(self.peak_mb, self._now_mb(), after if after > self._before else 0.0)
