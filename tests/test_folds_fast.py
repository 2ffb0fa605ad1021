"""The fast stratified group folds (issue 19: scikit-learn's greedy pass took minutes at 1M subjects)
give exactly scikit-learn's StratifiedGroupKFold folds: the oracle is scikit-learn's own class."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import StratifiedGroupKFold

from benchmark.learn.folds import _StratifiedGroupKFold, make_folds


def _case(rng, n_groups, n_classes, max_rows):
    sizes = rng.integers(1, max_rows + 1, n_groups)
    groups = np.repeat(rng.permutation(n_groups * 3)[:n_groups], sizes)  # unsorted, non-contiguous ids
    y = rng.integers(0, n_classes, len(groups)) if n_classes > 2 else (rng.random(len(groups)) < 0.15).astype(int)
    return y, groups


@pytest.mark.parametrize("case", range(24))
def test_same_folds_as_scikit_learn(case):
    rng = np.random.default_rng(case)
    n_classes = (2, 2, 3, 5)[case % 4]
    k = (2, 3, 5, 10)[(case // 4) % 4]
    y, groups = _case(rng, int(rng.integers(k * 4, 600)), n_classes, (1, 1, 4)[case % 3])
    x = np.arange(len(y))
    for shuffle, seed in ((True, case), (False, None)):
        ours = list(_StratifiedGroupKFold(n_splits=k, shuffle=shuffle, random_state=seed).split(x, y, groups))
        ref = list(StratifiedGroupKFold(n_splits=k, shuffle=shuffle, random_state=seed).split(x, y, groups))
        assert len(ours) == len(ref) == k
        for (a_tr, a_va), (b_tr, b_va) in zip(ours, ref):
            np.testing.assert_array_equal(a_tr, b_tr)
            np.testing.assert_array_equal(a_va, b_va)


def test_make_folds_covers_every_row_once():
    rng = np.random.default_rng(0)
    y = (rng.random(20_000) < 0.1).astype(int)
    folds = make_folds("binary", y, np.arange(20_000) // 2, 5, seed=1)
    assert sorted(np.concatenate([va for _, va in folds]).tolist()) == list(range(20_000))
    for tr, va in folds:
        assert not set((tr // 2).tolist()) & set((va // 2).tolist())  # no subject on both sides
