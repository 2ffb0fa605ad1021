"""Cross-validation folds: subject-grouped, stratified by the task kind's key, seeded.

Every family that tunes by cross-validation (tabular baselines, late fusion, MEHRT probes) calls
`cell_folds` with the cell seed, so for one task and seed they all validate on the same subjects.

Stratification key per kind (what a fold should keep in proportion):
    binary      the label
    survival    the event indicator
    multilabel  the rarest label a row has (by training prevalence; "none" if it has no label)
    regression  the quintile bin of the target

One capping rule: k = min(n_folds, number of subjects), at least 2. A key class held by fewer
than k subjects cannot be spread over k folds; such classes are pooled into one "rare" class,
and if that pool still has fewer than k subjects it joins the largest class. With one class left
the folds are a shuffled GroupKFold. (For binary keys this is exactly "stratify when both classes
have at least k subjects", the rule the baselines used before.)
"""

from __future__ import annotations

import math
import zlib

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.multiclass import type_of_target

from benchmark.kinds import kind_of


class _StratifiedGroupKFold(StratifiedGroupKFold):
    """scikit-learn's StratifiedGroupKFold (1.9; BSD-3, after a kaggle kernel under Apache 2.0) with the
    same folds, computed faster: its greedy pass calls numpy on tiny arrays once per group and fold
    and builds each fold's index list in a Python loop over every sample (minutes at 1M subjects,
    issue 19). Here the per-group evaluation runs on Python floats in numpy's exact order of
    operations (same sums, same rounding, so the same ties and the same folds: tests compare with
    scikit-learn's class), class counts come from np.add.at and the test indices from numpy."""

    def _iter_test_indices(self, X, y, groups):
        rng = check_random_state(self.random_state)
        y = np.asarray(y)
        if type_of_target(y) not in ("binary", "multiclass"):
            raise ValueError(f"Supported target types are: ('binary', 'multiclass'). Got {type_of_target(y)!r} instead.")
        y = column_or_1d(y)
        _, y_inv, y_cnt = np.unique(y, return_inverse=True, return_counts=True)
        if np.all(self.n_splits > y_cnt):
            raise ValueError("n_splits=%d cannot be greater than the number of members in each class." % self.n_splits)
        _, groups_inv, groups_cnt = np.unique(groups, return_inverse=True, return_counts=True)
        n_groups, n_classes, k = len(groups_cnt), len(y_cnt), self.n_splits
        if k > n_groups:
            raise ValueError(f"Cannot have number of splits n_splits={k} greater than the number of groups: {n_groups}.")
        y_counts_per_group = np.zeros((n_groups, n_classes))
        np.add.at(y_counts_per_group, (groups_inv.ravel(), y_inv.ravel()), 1)  # integer counts: exact
        if self.shuffle:
            perm = np.arange(n_groups)
            rng.shuffle(perm)
            y_counts_per_group = y_counts_per_group[perm]
            inv_perm = np.empty_like(perm)
            inv_perm[perm] = np.arange(perm.size)
            groups_inv = inv_perm[groups_inv]
        order = np.argsort(-np.std(y_counts_per_group, axis=1), kind="stable")
        fold_of_group = np.empty(n_groups, dtype=np.int64)
        per_fold = [[0.0] * n_classes for _ in range(k)]   # y_counts_per_fold
        totals = [float(c) for c in y_cnt]
        rows = y_counts_per_group.tolist()
        for g in order.tolist():
            best = _best_fold(per_fold, totals, rows[g], k, n_classes)
            row = per_fold[best]
            for c, v in enumerate(rows[g]):
                row[c] += v
            fold_of_group[g] = best
        fold_of_sample = fold_of_group[groups_inv.ravel()]
        for i in range(k):
            yield np.nonzero(fold_of_sample == i)[0]


def _best_fold(per_fold: list[list[float]], totals: list[float], add: list[float], k: int, n_classes: int) -> int:
    """StratifiedGroupKFold._find_best_fold on Python floats, in numpy's order of operations:
    per class, std over folds of count / class total (mean = sequential sum / k; squared deviations
    summed sequentially / k; sqrt), averaged over classes; ties (np.isclose) go to the smaller fold."""
    best, min_eval, min_samples = None, math.inf, math.inf
    for i in range(k):
        stds = []
        for c in range(n_classes):
            t = totals[c]
            vals = [(per_fold[r][c] + add[c] if r == i else per_fold[r][c]) / t for r in range(k)]
            s = vals[0]
            for v in vals[1:]:
                s += v
            mean = s / k
            d = vals[0] - mean
            ss = d * d
            for v in vals[1:]:
                d = v - mean
                ss += d * d
            stds.append(math.sqrt(ss / k))
        e = stds[0]
        for v in stds[1:]:
            e += v
        fold_eval = e / n_classes
        samples = per_fold[i][0]
        for v in per_fold[i][1:]:
            samples += v
        close = (fold_eval == min_eval) if math.isinf(min_eval) else abs(fold_eval - min_eval) <= 1e-8 + 1e-5 * abs(min_eval)
        if fold_eval < min_eval or (close and samples < min_samples):
            best, min_eval, min_samples = i, fold_eval, samples
    return best



def derive_seed(seed: int, *parts: str | int) -> int:
    """A 31-bit seed derived from the cell seed and a few labels (stable across runs and platforms).

    Args:
        seed: the cell seed.
        parts: labels such as the library name and the purpose ("folds", "trials", "model").

    Returns:
        int in [0, 2**31).
    """
    key = [int(seed) % (2**32)] + [zlib.crc32(str(p).encode()) for p in parts]
    return int(np.random.SeedSequence(key).generate_state(1)[0] % (2**31))


def stratification_key(kind: str, y: np.ndarray) -> np.ndarray:
    """The class each row is stratified by.

    Args:
        kind: task kind.
        y: targets (binary [n], multilabel [n, L], survival [n, 2], regression [n]).

    Returns:
        int [n] class codes.
    """
    return kind_of(kind).stratification_key(y)


def _pool_rare(strat: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """Merge key classes held by fewer than k subjects (see the module docstring)."""
    classes = np.unique(strat)
    n_groups = {c: len(np.unique(groups[strat == c])) for c in classes}
    rare = [c for c in classes if n_groups[c] < k]
    if not rare:
        return strat
    out = strat.copy()
    pool = -1 if -1 not in n_groups else int(strat.min()) - 1
    out[np.isin(strat, rare)] = pool
    if len(np.unique(groups[out == pool])) < k:
        common = [c for c in classes if c not in rare]
        if common:
            out[out == pool] = max(common, key=lambda c: n_groups[c])
    return out


def make_folds(kind: str, y: np.ndarray, groups: np.ndarray, n_folds: int,
               seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Subject-grouped K folds (no subject on both sides), stratified by the kind's key.

    Args:
        kind: task kind.
        y: targets in the task kind's layout.
        groups: subject id of each row.
        n_folds: requested number of folds; capped at the number of subjects.
        seed: shuffling seed (already derived; see `cell_folds`).

    Returns:
        list of (train_index, validation_index) arrays.
    """
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    k = min(int(n_folds), n_groups)
    if k < 2:
        raise ValueError(f"need at least 2 subjects for cross-validation, got {n_groups}")
    idx = np.arange(len(groups))
    strat = _pool_rare(stratification_key(kind, y), groups, k)
    if len(np.unique(strat)) >= 2:
        cv = _StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return [(tr, va) for tr, va in cv.split(idx, strat, groups)]
    cv = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in cv.split(idx, None, groups)]


def cell_folds(kind: str, y: np.ndarray, groups: np.ndarray, n_folds: int,
               cell_seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds of one (task, seed) cell: `make_folds` seeded with derive_seed(cell_seed, "folds").

    Group-to-fold assignment depends on the subjects and their keys, not on row order, so two
    families that stack the same samples differently still validate on the same subjects.

    Args:
        kind: task kind.
        y: targets of the train + tuning rows.
        groups: subject id of each row.
        n_folds: requested folds (Budget.n_folds).
        cell_seed: the cell seed.

    Returns:
        list of (train_index, validation_index) arrays.
    """
    return make_folds(kind, y, groups, n_folds, derive_seed(cell_seed, "folds"))
