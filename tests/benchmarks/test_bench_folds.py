"""Stratified group folds (issue 19): benchmark.learn.folds' StratifiedGroupKFold against
scikit-learn's (the same folds, tests/test_folds_fast.py) on one row per subject, 10% positives, 5 folds:
20000 subjects under `make bench` (>= 5x faster; scikit-learn's per-group numpy calls made this the
largest cost of the 1M-subject logistic-regression run), 1000 under `make test` (no ratio asserted)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from benchmark.learn.folds import _StratifiedGroupKFold


def test_bench_folds_vs_scikit_learn(compare, bench_enabled):
    n = 20_000 if bench_enabled else 1000
    y = (np.random.default_rng(0).random(n) < 0.1).astype(int)
    x = g = np.arange(n)
    compare(lambda: list(_StratifiedGroupKFold(5, shuffle=True, random_state=1).split(x, y, g)),
            lambda: list(StratifiedGroupKFold(5, shuffle=True, random_state=1).split(x, y, g)),
            min_ratio=5.0, rounds=2, reference_rounds=1)
