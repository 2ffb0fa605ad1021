"""Few-shot / label-fraction runs: `run --k-shots 1,4,16,64,all` or `run --train-fraction 0.01,0.1,1`.

The protocol follows EHRSHOT ("EHRSHOT: An EHR Benchmark for Few-Shot Evaluation of Foundation
Models", arXiv 2307.02028): for each k, k positive and k negative examples are drawn for training and,
separately, k and k for validation (our tuning split), several replicates per k, and every model is
scored on the same, whole test set. MEHR-Bench draws SUBJECTS, not samples, so no subject's samples
are split between drawn and not drawn:

- subject-level: a drawn subject brings all of its samples in that split; a subject not drawn brings none.
- stratified: each subject gets one class, the rarest class (by subjects in that split) among its
  samples' stratification keys (benchmark.kinds: the label for binary, the event indicator for
  survival, the rarest label for multilabel, the quintile bin for regression). "k shots" = k subjects
  of every class (all of a class when it has fewer); a fraction f takes ceil(f * n) subjects of each
  class of n. For a binary task, k shots therefore give at least k positive samples (a positive subject
  may also have negative samples).
- nested: each (seed, draw, split) fixes one seeded order of the subjects of each class; every point
  takes a prefix of it, so the k=2 subset contains the k=1 subset (and fraction 0.1 contains 0.01).
- seeded: the order is derived with benchmark.learn.folds.derive_seed(cell seed, "few-shot", split, draw).
- the held-out split is never subsampled; "all" (k) and 1 (fraction) are the full training data and
  have one draw only (every draw would be the same subset).

The subset is applied where the runner builds TaskData (benchmark.runner.task_data), so every model
family refits on it with no family-specific code; label-free pretraining (MEHRT/EHRT, cached per
cohort and budget) is not redone per point: only the heads refit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from benchmark.errors import UserError
from benchmark.learn.folds import derive_seed
from benchmark.taskspec import TaskSpec

SUBSET_SPLITS = ("train", "tuning")
DEFAULT_DRAWS = 3


@dataclass(frozen=True)
class ShotPoint:
    """One point of a few-shot curve and one draw of it.

    Attributes:
        scheme: "k_shots" or "fraction".
        k: subjects per class (k_shots; None = all).
        fraction: fraction of each class's subjects (fraction scheme).
        draw: the replicate.
    """

    scheme: str
    k: int | None = None
    fraction: float | None = None
    draw: int = 0

    @property
    def is_all(self) -> bool:
        """Whether the point is the full training data."""
        return (self.k is None) if self.scheme == "k_shots" else self.fraction == 1.0

    @property
    def tag(self) -> str:
        """The file-name part of the cell: seed<k>.<tag>.json (e.g. shots-4-d1, frac-0.1-d0)."""
        if self.scheme == "k_shots":
            return f"shots-{'all' if self.k is None else self.k}-d{self.draw}"
        return f"frac-{self.fraction:g}-d{self.draw}"

    @property
    def label(self) -> str:
        """Short words for tables and progress: "k=4 d1", "k=all d0", "10% d0"."""
        what = f"k={'all' if self.k is None else self.k}" if self.scheme == "k_shots" else f"{self.fraction:.4g}x"
        return f"{what} d{self.draw}"


def parse_points(k_shots: str | None, train_fraction: str | None, draws: int = DEFAULT_DRAWS) -> list[ShotPoint]:
    """The points of `--k-shots` or `--train-fraction`, each with its draws.

    Args:
        k_shots: comma-separated positive integers and/or "all" (None: not given).
        train_fraction: comma-separated fractions in (0, 1] (None: not given).
        draws: replicates per point (the full-data point has one).

    Returns:
        The points, in the given order, draws innermost.

    Raises:
        UserError: both or malformed flags, draws < 1.
    """
    if k_shots is not None and train_fraction is not None:
        raise UserError("--k-shots and --train-fraction cannot be combined", field="--k-shots",
                        fix="pass one of them (k shots per class, or fractions of the training subjects)")
    if draws < 1:
        raise UserError(f"--draws {draws} must be at least 1", field="--draws", fix="pass --draws 1 or more")
    flag, text = ("--k-shots", k_shots) if k_shots is not None else ("--train-fraction", train_fraction)
    items = [x.strip() for x in (text or "").split(",") if x.strip()]
    if not items:
        raise UserError(f"{flag} names no point", field=flag, fix=f"e.g. {flag} " +
                        ("1,4,16,64,all" if flag == "--k-shots" else "0.01,0.1,1"))
    out: list[ShotPoint] = []
    for x in items:
        try:
            if flag == "--k-shots":
                p = ShotPoint("k_shots", k=None if x.lower() == "all" else int(x))
                ok = p.k is None or p.k >= 1
            else:
                p = ShotPoint("fraction", fraction=float(x))
                ok = 0.0 < p.fraction <= 1.0
        except ValueError:
            ok = False
        if not ok:
            raise UserError(f"{flag}: {x!r} is not a valid point", field=flag,
                            fix="k shots: positive integers or 'all'" if flag == "--k-shots"
                            else "fractions greater than 0 and at most 1")
        for d in range(1 if p.is_all else draws):
            q = ShotPoint(p.scheme, p.k, p.fraction, d)
            if q not in out:
                out.append(q)
    return out


def _subject_classes(frame: pl.DataFrame, task: TaskSpec) -> pl.DataFrame:
    """(subject_id, cls): each subject's rarest stratification class in this split (module docstring)."""
    key = task.kind_obj.stratification_key(task.kind_obj.targets(frame, len(task.label_names())))
    pairs = frame.select("subject_id").with_columns(pl.Series("cls", np.asarray(key, dtype=np.int64))).unique()
    n_subj = pairs.group_by("cls").agg(pl.len().alias("n"))
    return (pairs.join(n_subj, on="cls").sort("subject_id", "n", "cls")
            .group_by("subject_id", maintain_order=True).first().select("subject_id", "cls"))


def drawn_subjects(frame: pl.DataFrame, task: TaskSpec, point: ShotPoint, seed: int, split: str) -> set[int]:
    """The subjects one split keeps at one point (module docstring: stratified, nested, seeded).

    Args:
        frame: the split's label rows (TaskData.frame(split) layout).
        task: the task (its kind gives the stratification key).
        point: the point and draw.
        seed: the cell seed.
        split: the split's name (part of the seed: training and tuning draws are independent).

    Returns:
        The drawn subject ids.
    """
    if frame.height == 0 or point.is_all:
        return set(frame["subject_id"].to_list())
    classes = _subject_classes(frame, task)
    rng = np.random.default_rng(derive_seed(seed, "few-shot", split, point.draw))
    # one order per (seed, split, draw), independent of k: each point takes a prefix (nested)
    order = classes.with_columns(pl.Series("r", rng.permutation(classes.height))).sort("r")
    keep: set[int] = set()
    for (_,), g in order.group_by(["cls"], maintain_order=True):
        n = point.k if point.scheme == "k_shots" else math.ceil(point.fraction * g.height)
        keep.update(g["subject_id"].head(n).to_list())
    return keep


def subsample(labels: pl.DataFrame, task: TaskSpec, point: ShotPoint, seed: int) -> pl.DataFrame:
    """The label rows (with their split column) a model sees at a point: train and tuning subsampled,
    held_out and any other split unchanged; row order kept.

    Args:
        labels: TaskData.labels (label columns + split, in label order).
        task: the task.
        point: the point and draw.
        seed: the cell seed.

    Returns:
        The subset of the rows.
    """
    keep = pl.lit(True)
    for split in SUBSET_SPLITS:
        subj = drawn_subjects(labels.filter(pl.col("split") == split), task, point, seed, split)
        keep = keep & ((pl.col("split") != split) | pl.col("subject_id").is_in(sorted(subj)))
    return labels.filter(keep)


def subset_problem(labels: pl.DataFrame, task: TaskSpec, n_folds: int) -> str | None:
    """Why a drawn subset cannot be fitted (a per-cell refusal, never a crash), or None.

    A model needs both classes in training (binary, survival events), at least 2 subjects across
    training and tuning for its cross-validation, and (binary, survival) every class held by at least
    k = min(n_folds, subjects) of those subjects: with fewer, benchmark.learn.folds cannot stratify and
    a fold could train on one class only.

    Args:
        labels: the subset (TaskData.labels layout).
        task: the task.
        n_folds: the budget's CV folds (Budget.n_folds).

    Returns:
        A one-line reason, or None.
    """
    train = labels.filter(pl.col("split") == "train")
    fit = labels.filter(pl.col("split").is_in(list(SUBSET_SPLITS)))
    n_subj = fit["subject_id"].n_unique()
    if n_subj < 2:
        return (f"the drawn subset has {n_subj} subject(s) in training and tuning; cross-validation "
                "needs at least 2")
    kind = task.kind_obj
    pos = kind.events_in_labels(train)
    if pos is None:
        return None
    if kind.one_class_problem(pos, train.height):
        return (f"the drawn subset has one class in training: {pos} of {train.height} training "
                f"{kind.event_word} are positive (a model needs both classes)")
    k = min(int(n_folds), n_subj)
    per_class = _subject_classes(fit, task).group_by("cls").agg(pl.len().alias("n"))
    if per_class.height < 2 or int(per_class["n"].min()) < k:
        counts = ", ".join(f"class {c}: {n}" for c, n in sorted(per_class.iter_rows()))
        return (f"the drawn subset is too small for {k}-fold cross-validation: subjects per class in "
                f"training + tuning ({counts}) must each be at least {k}")
    return None


def record_block(labels: pl.DataFrame, point: ShotPoint) -> dict:
    """The record's few_shot block (benchmark.records.FewShot fields) of a cell's subset."""
    n = {s: labels.filter(pl.col("split") == s)["subject_id"].n_unique() for s in SUBSET_SPLITS}
    what = {"k": point.k} if point.scheme == "k_shots" else {"fraction": point.fraction}
    return {"scheme": point.scheme, **what, "draw": point.draw, "n_train_subjects": n["train"],
            "n_tuning_subjects": n["tuning"]}


def point_of(block) -> ShotPoint | None:
    """The ShotPoint of a record's few_shot block (None for a full-data record)."""
    if block is None:
        return None
    return ShotPoint(block.scheme, block.k, block.fraction, block.draw)


def cell_label(task: str, point: ShotPoint | None) -> str:
    """A cell's task column in the run's summary and its key: the task name, plus the point."""
    return task if point is None else f"{task} [{point.label}]"
