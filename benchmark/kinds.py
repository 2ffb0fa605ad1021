"""Task kinds: one frozen object per kind owns everything kind-specific.

    Binary      label 0/1                  AUROC to select, a threshold chosen on tuning
    Multilabel  L labels, 0/1 each         macro AUROC to select, stratified by the rarest label
    Survival    (days, event observed)     Harrell's C to select, stratified by the event
    Regression  a value (days)             MAE to select (lower is better), stratified by quintile

Code outside this module asks the kind object (`kind_of(task).targets(frame, ...)`) instead of
switching on the kind's name, so a fifth kind is one new class here. The module is numpy/polars
only: the metric functions that compute a kind's selection metric live in benchmark.learn.

Target layouts (what TaskData.y returns, and what every model family fits on):
    binary int8 [n]; multilabel int8 [n, L]; survival float [n, 2] (time days, event 0/1); regression float [n]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import polars as pl

# Metrics where a smaller value is better: the one vocabulary (stats, selection, leaderboard).
LOWER_IS_BETTER = frozenset({"mae", "rmse", "brier", "ece", "ibs"})
REGRESSION_BINS = 5  # stratification: quantile bins of a regression target
# predicted_boolean_value of a binary predictions file: probability >= this. meds-evaluation itself
# only reads the column; MEDS-DEV's reference models fill it as probability > 0.5 (the two differ
# only at exactly 0.5). benchmark.stats.thresholded's accuracy / F1 use the same >= rule, so
# meds-evaluation's binary_accuracy and f1_score on our files equal ours at this threshold.
DECISION_THRESHOLD = 0.5


def sample_keys(samples: pl.DataFrame) -> pl.DataFrame:
    """subject_id (int64) and prediction_time (datetime[us]) of sample rows: the MEDS LabelSchema
    dtypes, which meds-evaluation checks exactly (0.0.3 compares dtypes, 0.0.6 casts with pyarrow)."""
    return samples.select(pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us")))


@dataclass(frozen=True)
class TaskKind:
    """What is specific to one task kind (subclasses fill the class attributes)."""

    name: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]           # the metrics a task of this kind may declare
    selection_metric: ClassVar[str]              # the metric every family selects its configuration by
    has_events: ClassVar[bool] = False           # labels carry a positive / event flag (boolean_value)
    label_columns: ClassVar[tuple[str, ...]]     # the MEDS LabelSchema value columns its labels fill (non-null)
    chooses_threshold: ClassVar[bool] = False    # a decision threshold is chosen on the tuning split
    multi_output: ClassVar[bool] = False         # one score column per label
    time_to_event: ClassVar[bool] = False        # targets (time, event): risk scores, survival curves (Breslow)
    score_type: ClassVar[str]                    # what a model's score is: "probability" | "risk" | "value"
    paired_metrics: ClassVar[tuple[str, ...]]    # metrics `compare` tests pairwise (benchmark.stats names)
    precision_recall: ClassVar[bool] = False     # a precision-recall curve applies (one 0/1 label)
    # what a leaderboard rank needs enough test subjects in: "outcome" (with and without it),
    # "subjects" (all test subjects), or None (not checked)
    rank_support: ClassVar[str | None] = None

    def __str__(self) -> str:
        return self.name

    # ------------------------------------------------------------------ targets
    def targets(self, frame: pl.DataFrame, n_labels: int = 1) -> np.ndarray:
        """The target array of label rows (MEDS LabelSchema columns) in this kind's layout.

        Args:
            frame: label rows.
            n_labels: number of labels (multilabel).

        Returns:
            np.ndarray in the layout of the module docstring.
        """
        raise NotImplementedError

    def check_label(self, label) -> None:
        """Raise ValueError if a task's `label` block lacks the fields this kind reads."""
        raise NotImplementedError

    def n_events(self, y: np.ndarray) -> int | None:
        """Positives (binary, multilabel: over all labels) or observed events (survival) in targets y;
        None where the kind has no such count (regression)."""
        return None

    def events_in_labels(self, labels: pl.DataFrame) -> int | None:
        """Positive labels / observed events among label rows; None where the kind has none."""
        return int(labels["boolean_value"].sum()) if self.has_events else None

    def event_flags(self, y: np.ndarray) -> np.ndarray | None:
        """Per-row bool positive / event-observed flag; None where the kind has none."""
        return None

    def training_problem(self, y: np.ndarray) -> str | None:
        """Why targets y cannot train a model of this kind (e.g. one CV fold's), None if they can."""
        return None

    def outcome_phrase(self) -> str | None:
        """How `fewer than N test subjects with/without ...` names the outcome; None: counts subjects only."""
        return None

    def support_counts(self, y: np.ndarray, label_names: list[str]) -> list[tuple[str, int]]:
        """(what, count) pairs a confidence interval needs enough of, for targets y of one split."""
        return [("samples", len(y))]

    def one_class_problem(self, positives: int, n: int) -> bool:
        """True if `positives` of `n` training rows leave a model with one class only."""
        return positives == 0

    @property
    def event_word(self) -> str:
        """What one positive is called in messages ("labels", "events")."""
        return "labels"

    def lower_is_better(self, metric: str) -> bool:
        """True if a smaller value of `metric` is better."""
        return metric in LOWER_IS_BETTER

    # ------------------------------------------------------------------ metrics
    def evaluation_target(self, y: np.ndarray):
        """Targets in the form benchmark.metrics.evaluate reads (survival: (time, event bool))."""
        return y

    def evaluation_options(self, y_test: np.ndarray, y_fit: np.ndarray, surv_prob, surv_times,
                           horizon: float | None) -> dict:
        """Extra keyword arguments of benchmark.metrics.evaluate for this kind.

        Args:
            y_test: held-out targets.
            y_fit: targets of the rows the model was fitted on (train + tuning).
            surv_prob, surv_times: the prediction's survival curves, or None.
            horizon: the task's horizon in days, or None.

        Returns:
            dict (empty for kinds without options).
        """
        return {}

    # ------------------------------------------------------------------ folds
    def stratification_key(self, y: np.ndarray) -> np.ndarray:
        """The int class each row is stratified by in cross-validation folds."""
        raise NotImplementedError

    def score_shape(self, n: int, y: np.ndarray) -> tuple[int, ...]:
        """Shape of a score array for n rows (one column per label for multilabel)."""
        return (n,)

    # ------------------------------------------------------------------ predictions
    def prediction_columns(self, label_names: list[str]) -> list[str]:
        """Columns a predictions file has beyond subject_id, prediction_time, in file order."""
        raise NotImplementedError

    def score_columns(self, label_names: list[str]) -> list[str]:
        """The model-output columns among `prediction_columns` that metrics read (one per label)."""
        raise NotImplementedError

    def bounded_scores(self) -> bool:
        """True if scores are probabilities (each in [0, 1])."""
        return self.score_type == "probability"

    def predictions_frame(self, samples: pl.DataFrame, y: np.ndarray, score: np.ndarray,
                          label_names: list[str]) -> pl.DataFrame:
        """meds-evaluation PredictionSchema rows (+ documented extensions for the other kinds).

        Args:
            samples: subject_id, prediction_time of the rows.
            y: their targets (this kind's layout).
            score: the model's scores, same rows.
            label_names: label names (multilabel).

        Returns:
            samples with the truth and prediction columns of `prediction_columns`.
        """
        raise NotImplementedError

    def truth_columns(self, columns: list[str]) -> list[str]:
        """The truth columns among a predictions file's columns."""
        raise NotImplementedError

    def read_predictions(self, df: pl.DataFrame, score_prefix: str = "", score_suffix: str = "",
                         sort_labels: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(targets, scores) back from a predictions frame (the inverse of `predictions_frame`).

        Args:
            df: predictions rows (possibly joined with another model's, whose score columns are renamed).
            score_prefix, score_suffix: added around the score column names to read.
            sort_labels: multilabel: labels in name order instead of file order.

        Returns:
            (y in this kind's layout, score).
        """
        raise NotImplementedError


@dataclass(frozen=True)
class Binary(TaskKind):
    name: ClassVar[str] = "binary"
    label_columns: ClassVar[tuple[str, ...]] = ("boolean_value",)
    metrics: ClassVar[tuple[str, ...]] = ("auroc", "auprc", "brier", "ece")
    selection_metric: ClassVar[str] = "auroc"
    paired_metrics: ClassVar[tuple[str, ...]] = ("auroc", "auprc")
    score_type: ClassVar[str] = "probability"
    rank_support: ClassVar[str | None] = "outcome"
    precision_recall: ClassVar[bool] = True
    has_events: ClassVar[bool] = True
    chooses_threshold: ClassVar[bool] = True

    def check_label(self, label):
        if (label.outcome is None) == (label.duration_to is None):
            raise ValueError("label: a binary task needs either outcome + window, or duration_to + threshold")
        if label.outcome is not None and label.window is None:
            raise ValueError("label.window is required with label.outcome")
        if label.duration_to is not None and label.threshold is None:
            raise ValueError("label.threshold is required with label.duration_to")

    def targets(self, frame, n_labels=1):
        return frame["boolean_value"].cast(pl.Int8).to_numpy()

    def n_events(self, y):
        return int(np.asarray(y).sum())

    def event_flags(self, y):
        return np.asarray(y).astype(bool)

    def one_class_problem(self, positives, n):
        return positives == 0 or positives == n

    def support_counts(self, y, label_names):
        pos = int(np.asarray(y).sum())
        return [("positives", pos), ("negatives", len(y) - pos)]

    def outcome_phrase(self):
        return "the outcome"

    def training_problem(self, y):
        return "trains on one class only" if len(np.unique(y)) < 2 else None

    def stratification_key(self, y):
        return np.asarray(y).astype(int)

    def prediction_columns(self, label_names):
        return ["boolean_value", "predicted_boolean_value", "predicted_boolean_probability"]

    def score_columns(self, label_names):
        return ["predicted_boolean_probability"]

    def predictions_frame(self, samples, y, score, label_names):
        # exactly meds-evaluation's PredictionSchema: 0.0.3 and 0.0.6 both index predicted_boolean_value,
        # 0.0.3 wants a float64 probability, 0.0.6 refuses any other column
        p = np.asarray(score, dtype=np.float64)
        return sample_keys(samples).with_columns(pl.Series("boolean_value", np.asarray(y).astype(bool)),
                                                 pl.Series("predicted_boolean_value", p >= DECISION_THRESHOLD),
                                                 pl.Series("predicted_boolean_probability", p))

    def truth_columns(self, columns):
        return ["boolean_value"]

    def read_predictions(self, df, score_prefix="", score_suffix="", sort_labels=False):
        return (df["boolean_value"].cast(int).to_numpy(),
                df[f"{score_prefix}predicted_boolean_probability{score_suffix}"].to_numpy())


@dataclass(frozen=True)
class Multilabel(TaskKind):
    name: ClassVar[str] = "multilabel"
    label_columns: ClassVar[tuple[str, ...]] = ("integer_value",)
    metrics: ClassVar[tuple[str, ...]] = ("auroc_macro", "auprc_macro")
    selection_metric: ClassVar[str] = "auroc_macro"
    paired_metrics: ClassVar[tuple[str, ...]] = ("auroc_macro",)
    score_type: ClassVar[str] = "probability"
    multi_output: ClassVar[bool] = True

    def check_label(self, label):
        if not label.outcomes or label.window is None:
            raise ValueError("label: a multilabel task needs outcomes (name -> predicate) and window")

    def targets(self, frame, n_labels=1):
        # integer_value holds the labels as bits: label j is bit j
        bits = frame["integer_value"].to_numpy().astype(np.int64)
        return ((bits[:, None] >> np.arange(n_labels)[None, :]) & 1).astype(np.int8)

    def n_events(self, y):
        return int(np.asarray(y).sum())

    def support_counts(self, y, label_names):
        y = np.asarray(y)
        return [(f"'{name}' positives", int(y[:, j].sum())) for j, name in enumerate(label_names)]

    def stratification_key(self, y):
        Y = np.asarray(y).reshape(len(y), -1).astype(bool)
        # a row's key is its rarest positive label (index), L if it has none
        order = np.argsort(Y.mean(0), kind="stable")        # labels, rarest first
        pos = np.where(Y[:, order], np.arange(Y.shape[1])[None, :], Y.shape[1]).min(1)
        return np.append(order, Y.shape[1])[pos].astype(int)

    def score_shape(self, n, y):
        return (n, np.asarray(y).shape[1])

    def prediction_columns(self, label_names):
        return [c for n in label_names for c in (f"boolean_value/{n}", f"predicted_boolean_probability/{n}")]

    def score_columns(self, label_names):
        return [f"predicted_boolean_probability/{n}" for n in label_names]

    def predictions_frame(self, samples, y, score, label_names):
        cols = []
        for i, n in enumerate(label_names):
            cols += [pl.Series(f"boolean_value/{n}", y[:, i].astype(bool)),
                     pl.Series(f"predicted_boolean_probability/{n}", np.asarray(score[:, i], dtype=np.float64))]
        return sample_keys(samples).with_columns(cols)

    def truth_columns(self, columns):
        return [c for c in columns if c.startswith("boolean_value/")]

    def read_predictions(self, df, score_prefix="", score_suffix="", sort_labels=False):
        labels = [c.split("/", 1)[1] for c in self.truth_columns(df.columns)]
        labels = sorted(labels) if sort_labels else labels
        y = np.column_stack([df[f"boolean_value/{lab}"].cast(int).to_numpy() for lab in labels])
        s = np.column_stack([df[f"{score_prefix}predicted_boolean_probability/{lab}{score_suffix}"].to_numpy()
                             for lab in labels])
        return y, s


@dataclass(frozen=True)
class Survival(TaskKind):
    name: ClassVar[str] = "survival"
    label_columns: ClassVar[tuple[str, ...]] = ("boolean_value", "float_value")
    metrics: ClassVar[tuple[str, ...]] = ("c_index_harrell", "c_index_uno", "td_auc", "ibs")
    selection_metric: ClassVar[str] = "c_index_harrell"
    time_to_event: ClassVar[bool] = True
    paired_metrics: ClassVar[tuple[str, ...]] = ("c_index",)
    score_type: ClassVar[str] = "risk"  # log relative hazard: higher = earlier event
    rank_support: ClassVar[str | None] = "outcome"
    has_events: ClassVar[bool] = True

    def check_label(self, label):
        if label.event is None or label.horizon is None:
            raise ValueError("label: a survival task needs event and horizon")

    def targets(self, frame, n_labels=1):
        return np.column_stack([frame["float_value"].to_numpy().astype(float),
                                frame["boolean_value"].cast(pl.Float64).to_numpy()])

    def n_events(self, y):
        return int(np.asarray(y)[:, 1].sum())

    def support_counts(self, y, label_names):
        return [("observed events", self.n_events(y))]

    def event_flags(self, y):
        return np.asarray(y)[:, 1].astype(bool)

    @property
    def event_word(self):
        return "events"

    def outcome_phrase(self):
        return "an event"

    def training_problem(self, y):
        return "trains without events" if np.asarray(y)[:, 1].sum() == 0 else None

    def evaluation_target(self, y):
        return (y[:, 0], y[:, 1].astype(bool))

    def evaluation_options(self, y_test, y_fit, surv_prob, surv_times, horizon):
        # IPCW needs the censoring distribution of the fitted rows
        kw = {"train_time": y_fit[:, 0], "train_event": y_fit[:, 1].astype(bool), "horizon": horizon}
        ev_times = y_test[y_test[:, 1] == 1, 0]
        if len(ev_times) >= 4:
            # whole days, so an evaluation time is never one patient's exact event time
            kw["times"] = np.unique(np.round(np.quantile(ev_times, [0.25, 0.5, 0.75])))
        if surv_prob is not None and surv_times is not None:
            kw["surv_prob"], kw["times"] = surv_prob, surv_times
        return kw

    def stratification_key(self, y):
        return np.asarray(y)[:, 1].astype(int)

    def prediction_columns(self, label_names):
        return ["float_value", "boolean_value", "predicted_risk"]

    def score_columns(self, label_names):
        return ["predicted_risk"]

    def predictions_frame(self, samples, y, score, label_names):
        return sample_keys(samples).with_columns(pl.Series("float_value", np.asarray(y[:, 0], dtype=np.float64)),
                                                 pl.Series("boolean_value", y[:, 1].astype(bool)),
                                                 pl.Series("predicted_risk", score.astype(np.float64)))

    def truth_columns(self, columns):
        return ["boolean_value", "float_value"]

    def read_predictions(self, df, score_prefix="", score_suffix="", sort_labels=False):
        y = np.column_stack([df["float_value"].cast(float).to_numpy(), df["boolean_value"].cast(float).to_numpy()])
        return y, df[f"{score_prefix}predicted_risk{score_suffix}"].to_numpy()


@dataclass(frozen=True)
class Regression(TaskKind):
    name: ClassVar[str] = "regression"
    label_columns: ClassVar[tuple[str, ...]] = ("float_value",)
    metrics: ClassVar[tuple[str, ...]] = ("mae", "rmse", "r2")
    selection_metric: ClassVar[str] = "mae"
    paired_metrics: ClassVar[tuple[str, ...]] = ("mae",)
    score_type: ClassVar[str] = "value"
    rank_support: ClassVar[str | None] = "subjects"

    def check_label(self, label):
        if label.duration_to is None:
            raise ValueError("label: a regression task needs duration_to")

    def targets(self, frame, n_labels=1):
        return frame["float_value"].to_numpy().astype(float)

    def stratification_key(self, y):
        v = np.asarray(y).astype(float)
        edges = np.quantile(v, np.linspace(0, 1, REGRESSION_BINS + 1)[1:-1]) if len(v) else []
        return np.searchsorted(np.unique(edges), v, side="right").astype(int)

    def prediction_columns(self, label_names):
        return ["float_value", "predicted_float_value"]

    def score_columns(self, label_names):
        return ["predicted_float_value"]

    def predictions_frame(self, samples, y, score, label_names):
        return sample_keys(samples).with_columns(pl.Series("float_value", np.asarray(y, dtype=np.float64)),
                                                 pl.Series("predicted_float_value", score.astype(np.float64)))

    def truth_columns(self, columns):
        return ["float_value"]

    def read_predictions(self, df, score_prefix="", score_suffix="", sort_labels=False):
        return df["float_value"].cast(float).to_numpy(), df[f"{score_prefix}predicted_float_value{score_suffix}"].to_numpy()


KINDS: dict[str, TaskKind] = {k.name: k() for k in (Binary, Multilabel, Survival, Regression)}
BINARY, MULTILABEL, SURVIVAL, REGRESSION = (KINDS[n] for n in ("binary", "multilabel", "survival", "regression"))


def kind_of(what) -> TaskKind:
    """The kind object of a kind name, a kind object, or anything with a `.kind` (a TaskSpec).

    Args:
        what: "binary" | "multilabel" | "survival" | "regression", a TaskKind, or an object with `.kind`.

    Returns:
        The TaskKind.

    Raises:
        ValueError: an unknown kind name.
    """
    if isinstance(what, TaskKind):
        return what
    name = what if isinstance(what, str) else getattr(what, "kind", what)
    if isinstance(name, TaskKind):
        return name
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task kind {name!r}; expected one of {', '.join(KINDS)}") from None
