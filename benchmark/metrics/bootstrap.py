"""Patient-level (subject) bootstrap confidence intervals, percentile method.

Resampling unit: the SUBJECT. A replicate draws n_subjects subjects with replacement (uniform,
seeded numpy Generator); a drawn subject brings all of its rows, as many times as it was drawn.
Rows of one patient are correlated, so resampling rows would understate the variance (and a
patient duplicated in the data would count as extra evidence).

Two paths share the same random draws, so for one seed they see identical resamples:
- Kernel path (fast): a replicate is a vector of subject counts (exact multinomial counts from the
  drawn indices, not a Poisson approximation); metric kernels (see `benchmark.metrics.binary`)
  turn a (R, n_subjects) count matrix into R values with one precomputed sort, so 1000 AUROC
  replicates cost a few vectorised passes each instead of 1000 full metric calls.
- Generic path: any `fn(*arrays) -> float` is called on the materialised rows of each replicate.

CI: the (1 - level)/2 and (1 + level)/2 percentiles of the replicate values (numpy's linear
interpolation). Replicates where the metric is undefined (e.g. a resample without positives)
are skipped and counted; the method string reports how many.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np

from benchmark.metrics.binary import (
    DegenerateInputError,
    Kernel,
    make_auprc_kernel,
    make_auroc_kernel,
)

N_BOOT = 1000
LEVEL = 0.95
# Fewest subjects of the rarer outcome class (positives / negatives, events) for which a CI or a
# paired p-value is reported; below it the point value is shown with "CI not reported".
MIN_CI_SUBJECTS = 10
# Elements per (replicates x rows) block of one kernel call (a few MB: stays in cache).
_BLOCK_ELEMENTS = 400_000


@dataclass(frozen=True)
class BootstrapCI:
    """A point estimate with its percentile bootstrap interval (low/high None if not computable)."""

    estimate: float
    low: float | None
    high: float | None
    n_boot: int
    n_valid: int
    level: float
    method: str


def subject_index(subject_ids, n_rows: int | None = None) -> tuple[np.ndarray, int]:
    """Map subject ids (any hashable numpy-able values) to codes 0..n_subjects-1.

    Args:
        subject_ids: (n,) subject id of each row, or None (each row is its own subject).
        n_rows: number of rows, required when subject_ids is None; checked otherwise.

    Returns:
        (row_subject, n_subjects).
    """
    if subject_ids is None:
        if n_rows is None:
            raise ValueError("n_rows is needed when subject_ids is None")
        return np.arange(n_rows), n_rows
    ids = np.asarray(subject_ids)
    if ids.ndim != 1:
        raise DegenerateInputError(f"subject_ids must be one-dimensional, got shape {ids.shape}")
    if n_rows is not None and len(ids) != n_rows:
        raise DegenerateInputError(
            f"length mismatch: subject_ids has {len(ids)} rows, the data has {n_rows}")
    if len(ids) == 0:
        raise DegenerateInputError("no rows to evaluate")
    if ids.dtype.kind == "f" and not np.isfinite(ids).all():
        raise DegenerateInputError("subject_ids contains NaN")
    _, codes = np.unique(ids, return_inverse=True)
    codes = codes.ravel().astype(np.intp)
    return codes, int(codes.max()) + 1


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _draws(n_subjects: int, n_boot: int, seed) -> Iterator[np.ndarray]:
    """Subject indices of each replicate: n_subjects uniform draws with replacement."""
    rng = _rng(seed)
    for _ in range(n_boot):
        yield rng.integers(0, n_subjects, size=n_subjects)


def _chunk_size(n_columns: int) -> int:
    # Small chunks keep each (chunk x n) block of a kernel inside the CPU caches; more
    # replicates per call only save Python overhead, which matters when n is small.
    return max(1, min(256, _BLOCK_ELEMENTS // max(n_columns, 1)))


def count_chunks(n_subjects: int, n_boot: int, seed=0,
                 chunk_size: int | None = None) -> Iterator[np.ndarray]:
    """Replicate subject counts in chunks: row r, column s = times subject s was drawn in rep r.

    Counts come from the same draws as the generic path (`bootstrap_generic`), so both paths see
    the same resamples for the same seed. The yielded array is a reused buffer: consume it
    before asking for the next chunk.

    Args:
        n_subjects: number of subjects.
        n_boot: number of replicates.
        seed: int seed or numpy Generator.
        chunk_size: replicates per chunk (default: bounded by memory, see _BLOCK_ELEMENTS).

    Returns:
        Iterator of integer arrays of shape (chunk, n_subjects).
    """
    chunk = chunk_size or _chunk_size(n_subjects)
    # int32 halves the memory traffic of every kernel; counts sum to n_subjects, and kernels
    # multiply a count by a cumulative count, which stays far below 2^31 for n < 2^24.
    dtype = np.int32 if n_subjects < 2 ** 24 else np.int64
    buf = np.empty((min(chunk, max(n_boot, 1)), n_subjects), dtype=dtype)
    draws = _draws(n_subjects, n_boot, seed)
    done = 0
    while done < n_boot:
        r = min(chunk, n_boot - done)
        for k in range(r):
            # one bincount per replicate (~0.15 ms at 1e5 subjects); a single bincount over
            # r * n_subjects bins would fall out of the cache and be slower
            buf[k] = np.bincount(next(draws), minlength=n_subjects)
        yield buf[:r]
        done += r


def replicate_values(kernels: Mapping[str, Kernel], n_subjects: int, n_boot: int = N_BOOT,
                     seed=0, chunk_size: int | None = None,
                     n_rows: int | None = None) -> dict[str, np.ndarray]:
    """Evaluate several kernels on the same bootstrap replicates.

    Args:
        kernels: name -> kernel(counts (R, n_subjects)) -> (R,) or (R, K).
        n_subjects: number of subjects.
        n_boot: number of replicates.
        seed: int seed or numpy Generator.
        chunk_size: replicates per kernel call (default from the data size).
        n_rows: number of data rows, used to size chunks when rows outnumber subjects.

    Returns:
        name -> (n_boot, K) replicate values (K = 1 for scalar kernels), NaN where undefined.
    """
    chunk = chunk_size or _chunk_size(max(n_subjects, n_rows or 0))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in kernels}
    for counts in count_chunks(n_subjects, n_boot, seed, chunk):
        for name, kernel in kernels.items():
            v = np.asarray(kernel(counts), dtype=float)
            parts[name].append(v.reshape(len(counts), -1))
    return {k: (np.concatenate(v, axis=0) if v else np.empty((0, 1))) for k, v in parts.items()}


def percentile_ci(values: np.ndarray, level: float = LEVEL
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval per column, ignoring NaN replicates.

    Args:
        values: (n_boot,) or (n_boot, K) replicate values.
        level: coverage, e.g. 0.95 for the 2.5th and 97.5th percentiles.

    Returns:
        (low, high, n_valid) arrays of shape (K,); low/high are NaN where fewer than 2 are valid.
    """
    v = np.asarray(values, dtype=float)
    v = v.reshape(len(v), -1)
    n_valid = np.isfinite(v).sum(axis=0)
    low = np.full(v.shape[1], np.nan)
    high = np.full(v.shape[1], np.nan)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    for j in np.flatnonzero(n_valid >= 2):
        col = v[np.isfinite(v[:, j]), j]
        low[j], high[j] = np.percentile(col, q)
    return low, high, n_valid


def describe(n_subjects: int, n_boot: int, n_valid: int, level: float, seed,
             rows_as_subjects: bool = False) -> str:
    """The `method` string stored with a metric: how the interval was made, in words.

    Args:
        n_subjects: subjects resampled.
        n_boot: replicates drawn.
        n_valid: replicates where the metric was defined.
        level: CI coverage.
        seed: the seed used (an int; Generators are reported as "generator").
        rows_as_subjects: True when no subject ids were given.

    Returns:
        A one-line description.
    """
    if n_boot == 0:
        return "point estimate (no bootstrap)"
    unit = "rows (no subject ids given, each row treated as a subject)" if rows_as_subjects \
        else "subjects"
    s = seed if isinstance(seed, (int, np.integer)) else "generator"
    text = (f"percentile bootstrap {level:.0%} CI, {n_boot} resamples of {n_subjects} {unit}, "
            f"seed {s}")
    if n_valid < n_boot:
        text += f"; {n_boot - n_valid} degenerate resamples skipped"
    return text


def bootstrap_kernel(kernel: Kernel, n_subjects: int, *, n_boot: int = N_BOOT, seed=0,
                     level: float = LEVEL, chunk_size: int | None = None,
                     rows_as_subjects: bool = False) -> BootstrapCI:
    """Point estimate and percentile CI of a scalar kernel (fast path).

    Args:
        kernel: kernel(counts (R, n_subjects)) -> (R,).
        n_subjects: number of subjects (columns of the counts).
        n_boot: replicates (0 = no interval).
        seed: int seed or numpy Generator.
        level: CI coverage.
        chunk_size: replicates per kernel call.
        rows_as_subjects: note in the method string that no subject ids were given.

    Returns:
        BootstrapCI.
    """
    est = float(np.asarray(kernel(np.ones((1, n_subjects), dtype=np.int64))).ravel()[0])
    if not np.isfinite(est):
        raise DegenerateInputError("the metric is undefined on the full data")
    if n_boot == 0:
        return BootstrapCI(est, None, None, 0, 0, level, describe(n_subjects, 0, 0, level, seed))
    reps = replicate_values({"m": kernel}, n_subjects, n_boot, seed, chunk_size)["m"][:, 0]
    low, high, n_valid = percentile_ci(reps, level)
    ok = np.isfinite(low[0])
    return BootstrapCI(est, float(low[0]) if ok else None, float(high[0]) if ok else None, n_boot,
                       int(n_valid[0]), level, describe(n_subjects, n_boot, int(n_valid[0]), level,
                                                        seed, rows_as_subjects))


def _subject_rows(row_subject: np.ndarray, n_subjects: int):
    """CSR layout of rows per subject: (rows ordered by subject, start of each subject, length)."""
    order = np.argsort(row_subject, kind="stable")
    lengths = np.bincount(row_subject, minlength=n_subjects)
    starts = np.r_[0, np.cumsum(lengths)[:-1]]
    return order, starts, lengths


def resample_rows(idx: np.ndarray, layout) -> np.ndarray:
    """Row indices of a replicate: every row of each drawn subject, once per draw.

    Args:
        idx: (n_subjects,) drawn subject codes.
        layout: from `_subject_rows`.

    Returns:
        Row indices into the original arrays.
    """
    order, starts, lengths = layout
    lens = lengths[idx]
    total = int(lens.sum())
    out_start = np.cumsum(lens) - lens
    # position k of the output belongs to draw d = repeat(...); its row is order[starts[d] + offset]
    offset = np.arange(total) - np.repeat(out_start, lens)
    return order[np.repeat(starts[idx], lens) + offset]


def bootstrap_generic(fn: Callable[..., float], arrays: Sequence, subject_ids=None, *,
                      n_boot: int = N_BOOT, seed=0, level: float = LEVEL) -> BootstrapCI:
    """Percentile subject-bootstrap CI for any metric function (slow path: one call per replicate).

    Args:
        fn: fn(*arrays_resampled) -> float; may raise ValueError (incl. DegenerateInputError) on
            a degenerate resample, which is then skipped.
        arrays: row-aligned arrays (first axis = rows) passed to fn.
        subject_ids: (n,) subject id per row; None = each row is its own subject.
        n_boot: replicates (0 = no interval).
        seed: int seed or numpy Generator (same draws as the kernel path for the same seed).
        level: CI coverage.

    Returns:
        BootstrapCI.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise DegenerateInputError("length mismatch: " + ", ".join(str(len(a)) for a in arrays))
    codes, n_subjects = subject_index(subject_ids, n)
    est = float(fn(*arrays))
    if n_boot == 0:
        return BootstrapCI(est, None, None, 0, 0, level, describe(n_subjects, 0, 0, level, seed))
    layout = _subject_rows(codes, n_subjects)
    vals = np.full(n_boot, np.nan)
    for r, idx in enumerate(_draws(n_subjects, n_boot, seed)):
        rows = resample_rows(idx, layout)
        try:
            vals[r] = fn(*[a[rows] for a in arrays])
        except ValueError:  # degenerate resample (DegenerateInputError is a ValueError)
            pass
    low, high, n_valid = percentile_ci(vals, level)
    ok = np.isfinite(low[0])
    return BootstrapCI(est, float(low[0]) if ok else None, float(high[0]) if ok else None, n_boot,
                       int(n_valid[0]), level,
                       describe(n_subjects, n_boot, int(n_valid[0]), level, seed,
                                subject_ids is None))


def bootstrap_auroc(y_true, y_score, subject_ids=None, *, n_boot: int = N_BOOT, seed=0,
                    level: float = LEVEL) -> BootstrapCI:
    """AUROC with a subject-bootstrap percentile CI (vectorised over replicates).

    Args:
        y_true: (n,) 0/1 labels.
        y_score: (n,) scores.
        subject_ids: (n,) subject id per row; None = each row is its own subject.
        n_boot: replicates.
        seed: int seed or numpy Generator.
        level: CI coverage.

    Returns:
        BootstrapCI.
    """
    codes, n_s = subject_index(subject_ids, len(np.asarray(y_true).ravel()))
    return bootstrap_kernel(make_auroc_kernel(y_true, y_score, codes), n_s, n_boot=n_boot,
                            seed=seed, level=level, rows_as_subjects=subject_ids is None)


def bootstrap_auprc(y_true, y_score, subject_ids=None, *, n_boot: int = N_BOOT, seed=0,
                    level: float = LEVEL) -> BootstrapCI:
    """AUPRC (average precision) with a subject-bootstrap percentile CI (vectorised).

    Args:
        y_true: (n,) 0/1 labels.
        y_score: (n,) scores.
        subject_ids: (n,) subject id per row; None = each row is its own subject.
        n_boot: replicates.
        seed: int seed or numpy Generator.
        level: CI coverage.

    Returns:
        BootstrapCI.
    """
    codes, n_s = subject_index(subject_ids, len(np.asarray(y_true).ravel()))
    return bootstrap_kernel(make_auprc_kernel(y_true, y_score, codes), n_s, n_boot=n_boot,
                            seed=seed, level=level, rows_as_subjects=subject_ids is None)
