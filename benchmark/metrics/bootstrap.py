"""Patient-level (subject) bootstrap confidence intervals.

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

When an interval is reported (the rules of issue 12, "no number a sample cannot support"):
- Support: the rarer outcome class (positive / negative subjects for binary metrics and each
  multilabel label, subjects with an event for survival, subjects for regression) must hold at
  least MIN_CI_SUBJECTS subjects. Below it the point value is kept and the interval is None with
  a note, e.g. "CI not reported: 7 positive subjects (needs >= 10)".
- Valid resamples: the metric must be defined in at least MIN_VALID_SHARE of the replicates. An
  interval made from the survivors of a mostly-degenerate bootstrap (e.g. the resamples that
  happened to keep the one positive) describes those survivors, not the sample.

Interval shapes:
- "logit" (metrics on [0, 1]: AUROC, AUPRC, C-index, td-AUC, sensitivity, ...): a Wald interval on
  the logit scale, expit(logit(v) +- z * SE * sqrt(m / (m - 1))), SE the standard deviation of
  the logit replicate values and m the rarer-class support (the bootstrap variance of a mean of m
  draws is (m - 1) / m of the unbiased one). Measured (tests/test_small_sample_stats.py; 800
  simulated samples of n = 300 subjects with exactly 10 positives, binormal scores): coverage of
  the 95% interval 0.94 (AUROC 0.92) to 0.96 (AUROC 0.64), where the percentile interval covered
  0.84 (AUROC 0.92) to 0.91 (400 samples), so the percentile interval was replaced for these
  metrics. Only AUROC was simulated; the other [0, 1] metrics share the interval by analogy.
- "percentile" (Brier, ECE, IBS, regression metrics, and the generic path): the (1 - level)/2 and
  (1 + level)/2 percentiles of the replicate values (numpy's linear interpolation).
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
# 10 holds with the logit interval (coverage >= 0.92 at exactly 10 positives, see the module doc).
MIN_CI_SUBJECTS = 10
# Least share of bootstrap replicates in which the metric must be defined for an interval.
MIN_VALID_SHARE = 0.99
# Elements per (replicates x rows) block of one kernel call (a few MB: stays in cache).
_BLOCK_ELEMENTS = 400_000


@dataclass(frozen=True)
class BootstrapCI:
    """A point estimate with its bootstrap interval (low/high None if not computable or not
    supported by the sample; `note` then says why)."""

    estimate: float
    low: float | None
    high: float | None
    n_boot: int
    n_valid: int
    level: float
    method: str
    note: str | None = None


@dataclass(frozen=True)
class Support:
    """The evidence an interval rests on: subjects in the rarer outcome class.

    Attributes:
        n: number of subjects in the rarer class (positives / negatives, events, subjects).
        what: those subjects in words, e.g. "positive subjects".
    """

    n: int
    what: str

    def note(self, minimum: int = MIN_CI_SUBJECTS) -> str | None:
        """None when the support is enough, else the reason no interval is reported.

        Args:
            minimum: fewest subjects needed.

        Returns:
            e.g. "CI not reported: 7 positive subjects (needs >= 10)", or None.
        """
        if self.n >= minimum:
            return None
        return f"CI not reported: {self.n} {self.what} (needs >= {minimum})"

    @property
    def inflation(self) -> float:
        """Small-sample factor sqrt(m / (m - 1)) applied to bootstrap standard errors."""
        return float(np.sqrt(self.n / (self.n - 1))) if self.n > 1 else float("inf")


def _class_subjects(mask: np.ndarray, row_subject: np.ndarray) -> int:
    """Number of distinct subjects among the rows where mask is True."""
    return int(np.unique(row_subject[np.asarray(mask, dtype=bool)]).size)


def binary_support(y, row_subject) -> Support:
    """Support of a binary metric: the smaller of positive and negative subjects.

    Args:
        y: (n,) 0/1 labels.
        row_subject: (n,) subject code of each row.

    Returns:
        Support ("positive subjects" or "negative subjects").
    """
    yb = np.asarray(y).astype(float).ravel() == 1
    rs = np.asarray(row_subject)
    pos, neg = _class_subjects(yb, rs), _class_subjects(~yb, rs)
    return Support(pos, "positive subjects") if pos <= neg else Support(neg, "negative subjects")


def event_support(event, row_subject) -> Support:
    """Support of a survival metric: subjects with an observed event.

    Args:
        event: (n,) event indicators.
        row_subject: (n,) subject code of each row.

    Returns:
        Support ("subjects with an event").
    """
    ev = np.asarray(event).astype(float).ravel() == 1
    return Support(_class_subjects(ev, np.asarray(row_subject)), "subjects with an event")


def multilabel_support(y, row_subject) -> list[Support]:
    """Support of each label of a multilabel matrix (see `binary_support`).

    Args:
        y: (n, L) 0/1 matrix.
        row_subject: (n,) subject code of each row.

    Returns:
        One Support per label, its words prefixed with "label j:".
    """
    y = np.asarray(y)
    out = []
    for j in range(y.shape[1]):
        s = binary_support(y[:, j], row_subject)
        out.append(Support(s.n, f"{s.what} for label {j}"))
    return out


def weakest(supports: Sequence[Support]) -> Support:
    """The support with the fewest subjects (a macro average is as weak as its weakest label)."""
    return min(supports, key=lambda s: s.n)


def valid_share_note(n_valid: int, n_boot: int, min_share: float = MIN_VALID_SHARE) -> str | None:
    """None when enough replicates are valid, else the reason no interval is reported.

    Args:
        n_valid: replicates where the metric was defined.
        n_boot: replicates drawn.
        min_share: least share needed.

    Returns:
        e.g. "CI not reported: the metric is undefined in 350 of 1000 resamples (needs >= 99%
        defined)", or None.
    """
    if n_boot <= 0 or n_valid >= min_share * n_boot:
        return None
    return (f"CI not reported: the metric is undefined in {n_boot - n_valid} of {n_boot} resamples "
            f"(needs >= {min_share:.0%} defined)")


def _logit(p: np.ndarray, eps: float) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), eps, 1 - eps)
    return np.log(p / (1 - p))


def interval(estimate: float, values: np.ndarray, *, level: float = LEVEL, scale: str = "percentile",
             support: Support | None = None, n_subjects: int | None = None
             ) -> tuple[float | None, float | None, int, str | None]:
    """One metric's interval from its replicate values, with the reporting rules applied.

    Args:
        estimate: the point value on all rows.
        values: (n_boot,) replicate values, NaN where undefined.
        level: coverage.
        scale: "logit" (Wald interval on the logit scale, for metrics on [0, 1]) or "percentile".
        support: the rarer-class support (None: the support rule is not applied).
        n_subjects: subjects resampled (sets the logit clipping at 0.5 / n_subjects).

    Returns:
        (low, high, n_valid, note): low/high None and note set when no interval is reported.
    """
    v = np.asarray(values, dtype=float).ravel()
    ok = v[np.isfinite(v)]
    n_valid = int(len(ok))
    note = (support.note() if support is not None else None) or valid_share_note(n_valid, len(v))
    if note is None and n_valid < 2:
        note = "CI not reported: fewer than 2 valid resamples"
    if note is not None:
        return None, None, n_valid, note
    if scale == "percentile":
        lo, hi = np.percentile(ok, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
        return float(lo), float(hi), n_valid, None
    eps = 0.5 / max(n_subjects or len(ok), 2)
    lg = _logit(ok, eps)
    sd = float(lg.std(ddof=1))
    if sd == 0 and not (eps < estimate < 1 - eps):
        return None, None, n_valid, (f"CI not reported: the metric is {estimate:g} in every resample "
                                     "(a bootstrap cannot bound it)")
    infl = support.inflation if support is not None else 1.0
    z = float(_norm_ppf((1 + level) / 2))
    centre = float(_logit(np.array([estimate]), eps)[0])
    lo, hi = centre - z * sd * infl, centre + z * sd * infl
    return float(1 / (1 + np.exp(-lo))), float(1 / (1 + np.exp(-hi))), n_valid, None


def _norm_ppf(q: float) -> float:
    from scipy.stats import norm
    return float(norm.ppf(q))


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
             rows_as_subjects: bool = False, scale: str = "percentile") -> str:
    """The `method` string stored with a metric: how the interval was made, in words.

    Args:
        n_subjects: subjects resampled.
        n_boot: replicates drawn.
        n_valid: replicates where the metric was defined.
        level: CI coverage.
        seed: the seed used (an int; Generators are reported as "generator").
        rows_as_subjects: True when no subject ids were given.
        scale: "percentile" or "logit" (see the module docstring).

    Returns:
        A one-line description.
    """
    if n_boot == 0:
        return "point estimate (no bootstrap)"
    unit = "rows (no subject ids given, each row treated as a subject)" if rows_as_subjects \
        else "subjects"
    s = seed if isinstance(seed, (int, np.integer)) else "generator"
    shape = ("percentile bootstrap {:.0%} CI" if scale == "percentile" else
             "logit-scale Wald {:.0%} CI with bootstrap SE x sqrt(m/(m-1)), m = rarer-class subjects"
             ).format(level)
    text = f"{shape}, {n_boot} resamples of {n_subjects} {unit}, seed {s}"
    if n_valid < n_boot:
        text += f"; {n_boot - n_valid} degenerate resamples skipped"
    return text


def bootstrap_kernel(kernel: Kernel, n_subjects: int, *, n_boot: int = N_BOOT, seed=0,
                     level: float = LEVEL, chunk_size: int | None = None,
                     rows_as_subjects: bool = False, support: Support | None = None,
                     scale: str = "percentile") -> BootstrapCI:
    """Point estimate and bootstrap CI of a scalar kernel (fast path).

    Args:
        kernel: kernel(counts (R, n_subjects)) -> (R,).
        n_subjects: number of subjects (columns of the counts).
        n_boot: replicates (0 = no interval).
        seed: int seed or numpy Generator.
        level: CI coverage.
        chunk_size: replicates per kernel call.
        rows_as_subjects: note in the method string that no subject ids were given.
        support: rarer-class support; below MIN_CI_SUBJECTS no interval (None = not checked).
        scale: "percentile" or "logit" (metrics on [0, 1]).

    Returns:
        BootstrapCI (low/high None with a note when the sample cannot support an interval).
    """
    est = float(np.asarray(kernel(np.ones((1, n_subjects), dtype=np.int64))).ravel()[0])
    if not np.isfinite(est):
        raise DegenerateInputError("the metric is undefined on the full data")
    if n_boot == 0:
        return BootstrapCI(est, None, None, 0, 0, level, describe(n_subjects, 0, 0, level, seed))
    reps = replicate_values({"m": kernel}, n_subjects, n_boot, seed, chunk_size)["m"][:, 0]
    low, high, n_valid, note = interval(est, reps, level=level, scale=scale, support=support,
                                        n_subjects=n_subjects)
    return BootstrapCI(est, low, high, n_boot, n_valid, level,
                       describe(n_subjects, n_boot, n_valid, level, seed, rows_as_subjects, scale), note)


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

    No interval (None, with a note) when fewer than MIN_VALID_SHARE of the replicates are defined.

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
    low, high, n_valid, note = interval(est, vals, level=level)
    return BootstrapCI(est, low, high, n_boot, n_valid, level,
                       describe(n_subjects, n_boot, n_valid, level, seed, subject_ids is None), note)


def bootstrap_auroc(y_true, y_score, subject_ids=None, *, n_boot: int = N_BOOT, seed=0,
                    level: float = LEVEL) -> BootstrapCI:
    """AUROC with a subject-bootstrap logit-scale CI (vectorised over replicates); no interval
    below MIN_CI_SUBJECTS positive or negative subjects.

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
    kernel = make_auroc_kernel(y_true, y_score, codes)
    return bootstrap_kernel(kernel, n_s, n_boot=n_boot, seed=seed, level=level,
                            rows_as_subjects=subject_ids is None,
                            support=binary_support(y_true, codes), scale="logit")


def bootstrap_auprc(y_true, y_score, subject_ids=None, *, n_boot: int = N_BOOT, seed=0,
                    level: float = LEVEL) -> BootstrapCI:
    """AUPRC (average precision) with a subject-bootstrap logit-scale CI (vectorised); no interval
    below MIN_CI_SUBJECTS positive or negative subjects.

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
    kernel = make_auprc_kernel(y_true, y_score, codes)
    return bootstrap_kernel(kernel, n_s, n_boot=n_boot, seed=seed, level=level,
                            rows_as_subjects=subject_ids is None,
                            support=binary_support(y_true, codes), scale="logit")
