"""example_ridge: L2-penalised logistic regression (binary) / ridge regression (regression) on
log(1 + count) of the most frequent codes visible before each prediction time.

Everything the model reads goes through TaskData.visible_events (the leakage guard), and every
random choice comes from the factory's seed: the two things `check-model` tests hardest.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression, Ridge

from benchmark.api import Budget, Prediction, TaskData, spec

N_CODES = 300  # the most frequent training codes kept as features


class ExampleRidge:
    """Bag-of-events counts + a linear model, refitted per task."""

    def __init__(self, budget: Budget, seed: int):
        self.seed = seed
        # the budget's level name maps to the model's own knobs: fewer solver iterations for smoke
        self.max_iter = 200 if budget.name == "smoke" else 1000

    def _features(self, data: TaskData, split: str) -> np.ndarray:
        """log(1 + count) of each kept code per sample, rows in data.samples(split) order."""
        rows = data.samples(split).with_row_index("row")
        ev = data.visible_events(split, columns=("subject_id", "time", "code")).collect()
        ev = ev.filter(pl.col("code").is_in(self.codes)).join(rows, on=["subject_id", "prediction_time"])
        ev = ev.with_columns(pl.col("code").replace_strict(self.codes, list(range(len(self.codes))),
                                                           return_dtype=pl.Int64).alias("j"))
        counts = ev.group_by("row", "j").len()
        x = np.zeros((rows.height, len(self.codes)))
        x[counts["row"].to_numpy(), counts["j"].to_numpy()] = counts["len"].to_numpy()
        return np.log1p(x)

    def fit(self, data: TaskData) -> "ExampleRidge":
        """Choose the codes on the training split and fit the linear model there."""
        ev = data.visible_events("train", columns=("subject_id", "time", "code")).collect().drop_nulls("code")
        top = ev.group_by("code").len().sort(["len", "code"], descending=[True, False]).head(N_CODES)
        self.codes = top["code"].to_list()
        self.kind = data.task.kind
        x, y = self._features(data, "train"), data.y("train")
        if self.kind == "binary":
            self.head = LogisticRegression(C=0.1, max_iter=self.max_iter, random_state=self.seed)
        else:
            self.head = Ridge(alpha=10.0)
        self.head.fit(x, y)
        return self

    def predict(self, data: TaskData, split: str) -> Prediction:
        """P(y=1) (binary) or the predicted value (regression), one per data.samples(split) row."""
        x = self._features(data, split)
        score = self.head.predict_proba(x)[:, 1] if self.kind == "binary" else self.head.predict(x)
        n_parameters = int(np.size(self.head.coef_) + np.size(self.head.intercept_))
        return Prediction(score=score, info={"n_parameters": n_parameters, "n_codes": len(self.codes)})


def make(budget: Budget, seed: int) -> ExampleRidge:
    """The factory the benchmark calls for every (task, seed) cell."""
    return ExampleRidge(budget, seed)


SPEC = spec(
    "example_ridge",
    "Example out-of-tree model: L2 logistic / ridge regression on log counts of the 300 most frequent "
    "codes visible at the prediction time",
    make,
    modalities=("structured",),
    task_kinds=("binary", "regression"),
    kind="baseline",
    reference="Hoerl and Kennard 1970 (ridge regression)",
    license="Apache-2.0",
    authors="MEHR-Bench example",
)
