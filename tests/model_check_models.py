"""Planted models for tests/test_model_check.py: one good model and one per failure mode check-model
must catch. Each is reached as `tests.model_check_models:NAME`, the way a user names a module."""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression, Ridge

from benchmark.api import Prediction, TaskData, spec

TOP_CODES = 300


class CountModel:
    """Logistic (binary) / ridge (regression) regression on counts of the most common training codes,
    read through the leakage guard (TaskData.visible_events)."""

    guarded = True

    def __init__(self, budget=None, seed: int = 0):
        self.seed = seed

    def _events(self, data: TaskData, split: str) -> pl.DataFrame:
        if self.guarded:
            return data.visible_events(split, columns=("subject_id", "time", "code")).collect()
        # the cheat: every event of the split's subjects, after the prediction time included
        ids = data.samples(split)["subject_id"].unique()
        raw = data.cohort.scan(("subject_id", "time", "code")).filter(pl.col("subject_id").is_in(ids.implode())).collect()
        return data.samples(split).join(raw, on="subject_id", how="left")

    def _x(self, data: TaskData, split: str) -> np.ndarray:
        """log(1 + count) of each kept code per sample, rows in data.samples(split) order."""
        rows = data.samples(split).with_row_index("row")
        ev = self._events(data, split).filter(pl.col("code").is_in(self.codes))
        ev = ev.join(rows, on=["subject_id", "prediction_time"]).with_columns(
            pl.col("code").replace_strict(self.codes, list(range(len(self.codes))), return_dtype=pl.Int64).alias("j"))
        c = ev.group_by("row", "j").len()
        x = np.zeros((rows.height, len(self.codes)))
        x[c["row"].to_numpy(), c["j"].to_numpy()] = c["len"].to_numpy()
        return np.log1p(x)

    def fit(self, data: TaskData) -> "CountModel":
        ev = self._events(data, "train").drop_nulls("code")
        self.codes = ev.group_by("code").len().sort(["len", "code"], descending=[True, False]).head(TOP_CODES)[
            "code"].to_list()
        self.binary = data.task.kind == "binary"
        self.head = (LogisticRegression(max_iter=500) if self.binary else Ridge()).fit(self._x(data, "train"),
                                                                                     data.y("train"))
        return self

    def score(self, data: TaskData, split: str) -> np.ndarray:
        x = self._x(data, split)
        return self.head.predict_proba(x)[:, 1] if self.binary else self.head.predict(x)

    def predict(self, data: TaskData, split: str) -> Prediction:
        return Prediction(score=self.score(data, split), info={"n_parameters": len(self.codes) + 1})


class Cheater(CountModel):
    guarded = False  # reads data.cohort.scan() directly: sees the leak/probe marker after the prediction time


class FutureCheater(CountModel):
    """The cheat the probe misses: raw cohort events (after the prediction time included), top codes,
    but its features happen to skip the probe's marker codes (SYNTH/LEAK_*). On oncology/mortality_1y
    it sees the deaths that make the label; only the future invariance row finds it."""

    guarded = False

    def _events(self, data: TaskData, split: str) -> pl.DataFrame:
        return super()._events(data, split).filter(~pl.col("code").str.starts_with("SYNTH/LEAK").fill_null(False))


class WholeTimelineScaler(CountModel):
    """Features read through the guard, but the vocabulary and a normaliser (each code's mean
    log-count per subject) computed on ALL subjects' whole timelines, tuning and held-out futures
    included: no single input is from the future, yet the scores move with it."""

    def fit(self, data: TaskData) -> "WholeTimelineScaler":
        raw = data.cohort.scan(("subject_id", "time", "code")).drop_nulls("code").collect()
        per = raw.group_by("subject_id", "code").len()
        top = per.group_by("code").agg(pl.col("len").sum()).sort(["len", "code"], descending=[True, False])
        self.codes = top.head(TOP_CODES)["code"].to_list()
        n = raw["subject_id"].n_unique()
        mean = (per.filter(pl.col("code").is_in(self.codes)).group_by("code")
                .agg((pl.col("len").log1p().sum() / n).alias("m")))
        m = dict(zip(mean["code"].to_list(), mean["m"].to_list()))
        self.scale = np.array([1.0 + m.get(c, 0.0) for c in self.codes])
        self.binary = data.task.kind == "binary"
        self.head = (LogisticRegression(max_iter=500) if self.binary else Ridge()).fit(self._x(data, "train"),
                                                                                     data.y("train"))
        return self

    def _x(self, data: TaskData, split: str) -> np.ndarray:
        return super()._x(data, split) / self.scale


class WrongShape(CountModel):
    def predict(self, data, split):
        return Prediction(score=self.score(data, split)[:-1])


class NaNScores(CountModel):
    def predict(self, data, split):
        s = self.score(data, split)
        s[::3] = np.nan
        return Prediction(score=s)


class Nondeterministic(CountModel):
    def predict(self, data, split):
        noise = np.random.default_rng().uniform(0, 1e-3, len(data.samples(split)))  # OS entropy, not the seed
        return Prediction(score=np.clip(self.score(data, split) + noise, 0, 1))


class NotProbabilities(CountModel):
    def predict(self, data, split):
        return Prediction(score=self.score(data, split) * 3 - 1)


def _raises(budget=None, seed: int = 0):
    raise RuntimeError("weights file missing")


def _model(name: str, factory, kinds=("binary",), n_parameters=None):
    return spec(name, f"planted model {name} for the check-model tests", factory, modalities=("structured",),
                reference="tests", task_kinds=kinds, kind="baseline", n_parameters=n_parameters)


GOOD = _model("planted_good", CountModel, kinds=("binary", "regression"))
CHEATER = _model("planted_cheater", Cheater)
FUTURE_CHEATER = _model("planted_future_cheater", FutureCheater)
WHOLE_TIMELINE_SCALER = _model("planted_whole_timeline_scaler", WholeTimelineScaler)
WRONG_SHAPE = _model("planted_wrong_shape", WrongShape)
NAN = _model("planted_nan", NaNScores)
NONDETERMINISTIC = _model("planted_nondeterministic", Nondeterministic)
NOT_PROBABILITIES = _model("planted_not_probabilities", NotProbabilities)
FACTORY_RAISES = _model("planted_factory_raises", _raises)
BAD_SIZE = _model("planted_bad_size", CountModel, n_parameters=10**9)  # reports ~60 parameters
SPECS = (GOOD, CHEATER)
