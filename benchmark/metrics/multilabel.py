"""Multilabel metrics: macro AUROC / AUPRC over labels, plus per-label values.

A label whose column holds a single class has no AUROC; it is reported as refused with a reason
and left out of the macro average (sklearn would raise for the whole matrix instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from benchmark.metrics.binary import (
    DegenerateInputError,
    Kernel,
    _binary_labels,
    _counts_2d,
    make_auprc_kernel,
    make_auroc_kernel,
)

_KERNELS = {"auroc": make_auroc_kernel, "auprc": make_auprc_kernel}


@dataclass(frozen=True)
class LabelScore:
    """One label's value, or the reason it was refused (then value is None)."""

    value: float | None
    refused: str | None = None


def _matrices(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=float)
    if y.ndim != 2 or s.ndim != 2:
        raise DegenerateInputError(
            f"multilabel y_true and y_score must be 2-D (n, labels), got {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise DegenerateInputError(
            f"length mismatch: y_true has shape {y.shape}, y_score {s.shape}")
    if y.shape[0] == 0 or y.shape[1] == 0:
        raise DegenerateInputError("no rows or no labels to evaluate")
    bad = ~np.isfinite(s)
    if bad.any():
        raise DegenerateInputError(f"y_score has {int(bad.sum())} non-finite values (NaN or inf)")
    yb = np.stack([_binary_labels(f"y_true[:, {j}]", y[:, j]) for j in range(y.shape[1])], axis=1)
    return yb, s


def make_multilabel_kernel(y_true, y_score, metric: Literal["auroc", "auprc"] = "auroc",
                           row_subject=None) -> tuple[Kernel, list[str | None]]:
    """Kernel for per-label values and their macro mean.

    The macro value of a replicate is the mean over labels that are defined both on the full data
    and in that replicate (a rare label can lose all its positives in a resample; dropping it
    from that replicate's mean is better than dropping the replicate).

    Args:
        y_true: (n, L) 0/1 matrix.
        y_score: (n, L) scores.
        metric: "auroc" or "auprc".
        row_subject: (n,) subject index of each row; None = one row per subject.

    Returns:
        (kernel, refused): kernel(counts) -> (R, 1 + L) with the macro mean in column 0 and label j
        in column 1 + j (NaN for refused labels); refused[j] is the reason label j was refused.
    """
    y, s = _matrices(y_true, y_score)
    kernels: list[Kernel | None] = []
    refused: list[str | None] = []
    for j in range(y.shape[1]):
        try:
            kernels.append(_KERNELS[metric](y[:, j], s[:, j], row_subject))
            refused.append(None)
        except DegenerateInputError as exc:
            kernels.append(None)
            refused.append(f"label {j}: {exc}")
    if all(k is None for k in kernels):
        raise DegenerateInputError(
            f"no label has both classes, so macro {metric.upper()} is undefined")

    def kernel(counts) -> np.ndarray:
        c = _counts_2d(counts)
        out = np.full((c.shape[0], 1 + len(kernels)), np.nan)
        for j, k in enumerate(kernels):
            if k is not None:
                out[:, 1 + j] = k(c)
        valid = ~np.isnan(out[:, 1:])
        n_valid = valid.sum(axis=1)
        sums = np.where(valid, out[:, 1:], 0.0).sum(axis=1)
        out[:, 0] = np.divide(sums, n_valid, out=np.full(c.shape[0], np.nan), where=n_valid > 0)
        return out

    return kernel, refused


def per_label(y_true, y_score, metric: Literal["auroc", "auprc"] = "auroc") -> list[LabelScore]:
    """Per-label AUROC or AUPRC; single-class labels are refused with a reason.

    Args:
        y_true: (n, L) 0/1 matrix.
        y_score: (n, L) scores.
        metric: "auroc" or "auprc".

    Returns:
        One LabelScore per label.
    """
    try:
        kernel, refused = make_multilabel_kernel(y_true, y_score, metric)
    except DegenerateInputError as exc:
        n_labels = np.shape(y_true)[1] if np.ndim(y_true) == 2 else 0
        return [LabelScore(None, str(exc)) for _ in range(n_labels)]
    vals = kernel(np.ones((1, np.shape(y_true)[0]), dtype=np.int64))[0, 1:]
    return [LabelScore(None, why) if why else LabelScore(float(v)) for v, why in zip(vals, refused)]


def auroc_macro(y_true, y_score) -> float:
    """Unweighted mean AUROC over the labels that have both classes.

    Args:
        y_true: (n, L) 0/1 matrix.
        y_score: (n, L) scores.

    Returns:
        Macro AUROC. Raises DegenerateInputError when no label has both classes.
    """
    kernel, _ = make_multilabel_kernel(y_true, y_score, "auroc")
    return float(kernel(np.ones((1, np.shape(y_true)[0]), dtype=np.int64))[0, 0])


def auprc_macro(y_true, y_score) -> float:
    """Unweighted mean average precision over the labels that have both classes.

    Args:
        y_true: (n, L) 0/1 matrix.
        y_score: (n, L) scores.

    Returns:
        Macro AUPRC. Raises DegenerateInputError when no label has both classes.
    """
    kernel, _ = make_multilabel_kernel(y_true, y_score, "auprc")
    return float(kernel(np.ones((1, np.shape(y_true)[0]), dtype=np.int64))[0, 0])
