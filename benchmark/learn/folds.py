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

import zlib

import numpy as np
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

from benchmark.kinds import kind_of



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
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
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
