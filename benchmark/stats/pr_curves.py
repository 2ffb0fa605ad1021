"""Precision-difference curves: paired bootstrap of precision(A) - precision(B) at fixed recall levels.

Precision at recall r is the interpolated precision (the best precision at any threshold whose
recall is at least r). The replicates are the same seeded subject draws as every other interval
(`benchmark.metrics.bootstrap`); the interval is the percentile interval of the replicate deltas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from benchmark.metrics.binary import Kernel
from benchmark.metrics.bootstrap import count_chunks, subject_index
from benchmark.stats.paired import LEVEL, N_BOOT, check_pair

DEFAULT_RECALL_GRID = tuple(np.round(np.linspace(0.05, 1.0, 20), 4))


@dataclass(frozen=True)
class PrecisionDifference:
    """Interpolated precision of A and B on a recall grid, and the paired delta A - B with its CI.

    Attributes:
        recall: (K,) recall grid.
        precision_a: (K,) model A's interpolated precision (max precision at recall >= r).
        precision_b: (K,) model B's.
        delta: (K,) precision_a - precision_b.
        ci_low: (K,) percentile lower bounds of the delta.
        ci_high: (K,) upper bounds.
        n_boot: replicates.
        level: CI coverage.
    """

    recall: np.ndarray
    precision_a: np.ndarray
    precision_b: np.ndarray
    delta: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_boot: int
    level: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (arrays as lists, NaN as None).

        Returns:
            dict field -> value.
        """
        def lst(a):
            return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=float)]
        return {"recall": lst(self.recall), "precision_a": lst(self.precision_a),
                "precision_b": lst(self.precision_b), "delta": lst(self.delta),
                "ci_low": lst(self.ci_low), "ci_high": lst(self.ci_high), "n_boot": self.n_boot,
                "level": self.level}


def _make_interp_precision_kernel(y_true, score, row_subject, grid: np.ndarray) -> Kernel:
    """Kernel: interpolated precision P_interp(r) = max{precision(k) : recall(k) >= r} at each r.

    Rows are sorted by descending score once; tied scores form one threshold (only the last row of
    a tie group is a valid cut). A replicate's weighted TP/FP cumulative sums give precision and
    recall at every cut; a reverse running maximum of precision makes it the interpolated
    precision, which is read at the first cut whose recall reaches r.
    """
    from benchmark.metrics.binary import _as_1d, _binary_labels, _check_both_classes, _row_subject
    y = _binary_labels("y_true", y_true)
    s = _as_1d("y_score", score)
    _check_both_classes(y, "a precision-recall curve")
    rs = _row_subject(row_subject, len(y))
    order = np.argsort(-s, kind="stable")
    ys, ss, sub = y[order], s[order], rs[order]
    last_of_tie = np.r_[ss[1:] != ss[:-1], True]
    cuts = np.flatnonzero(last_of_tie)

    def kernel(counts) -> np.ndarray:
        c = counts if counts.ndim == 2 else counts[None, :]
        w = np.take(c, sub, axis=1).astype(float)
        tp = np.cumsum(w * ys, axis=1)[:, cuts]
        called = np.cumsum(w, axis=1)[:, cuts]
        p_tot = tp[:, -1:]
        prec = np.divide(tp, called, out=np.zeros_like(tp), where=called > 0)
        rec = np.divide(tp, p_tot, out=np.full_like(tp, np.nan), where=p_tot > 0)
        # interpolated precision: running max from the right (recall grows with the cut index)
        prec_i = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
        out = np.full((c.shape[0], len(grid)), np.nan)
        for r in range(c.shape[0]):
            if not np.isfinite(rec[r, -1]):
                continue
            # recall is non-decreasing along cuts; first cut with recall >= grid value
            idx = np.searchsorted(rec[r], grid - 1e-12, side="left")
            good = idx < rec.shape[1]
            out[r, good] = prec_i[r, idx[good]]
        return out

    return kernel


def precision_difference_curve(y_true, score_a, score_b, subject_ids=None, *,
                               recall_grid: Sequence[float] = DEFAULT_RECALL_GRID,
                               n_boot: int = N_BOOT, seed=0, level: float = LEVEL
                               ) -> PrecisionDifference:
    """Paired bootstrap of the precision difference A - B at fixed recall levels.

    Precision at recall r is the interpolated precision (the best precision at any threshold whose
    recall is at least r), the usual definition for comparing PR curves at fixed recall.

    Args:
        y_true: (n,) 0/1 labels.
        score_a: (n,) model A's scores.
        score_b: (n,) model B's scores on the same rows.
        subject_ids: (n,) subject of each row (None = each row its own subject).
        recall_grid: recall values in (0, 1].
        n_boot: replicates.
        seed: int seed or numpy Generator.
        level: CI coverage.

    Returns:
        PrecisionDifference.
    """
    n = check_pair(y_true, score_a, score_b)
    grid = np.asarray(recall_grid, dtype=float)
    rs, n_subjects = subject_index(subject_ids, n)
    ka = _make_interp_precision_kernel(y_true, score_a, rs, grid)
    kb = _make_interp_precision_kernel(y_true, score_b, rs, grid)
    ones = np.ones((1, n_subjects), dtype=np.int64)
    pa, pb = ka(ones)[0], kb(ones)[0]
    reps = np.full((n_boot, len(grid)), np.nan)
    done = 0
    for counts in count_chunks(n_subjects, n_boot, seed, chunk_size=64):
        r = len(counts)
        reps[done:done + r] = ka(counts) - kb(counts)
        done += r
    lo = np.full(len(grid), np.nan)
    hi = np.full(len(grid), np.nan)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    for j in range(len(grid)):
        col = reps[:, j][np.isfinite(reps[:, j])]
        if len(col) >= 2:
            lo[j], hi[j] = np.percentile(col, q)
    return PrecisionDifference(recall=grid, precision_a=pa, precision_b=pb, delta=pa - pb,
                               ci_low=lo, ci_high=hi, n_boot=n_boot, level=level)
