"""Late fusion (MEHRT paper, OpenReview ywFxZhMnuB, appendix B.2): one tuned model per modality, predictions averaged.

B.2 trains one model of a given baseline family (CatBoost, XGBoost, random forest or logistic
regression) per input: the bag-of-events features, the mean CT embedding and the mean
histopathology (WSI) embedding, and averages the three models' confidence scores per test example;
a patient without one of the imaging modalities gets the mean of the models it has. Here every
member searches the paper's space for its family (baselines.spaces, Tables B1-B4, no early
stopping), and the structured member reads the B.1 features ("paper_b1").

Ours, beyond B.2: CXR embeddings and the PRS vector join as members where the task offers them
(`task.modalities`) and the cohort has them (the paper's cohort has neither); a task offering only
ct and wsi gets exactly the paper's three members.

Modality models:
  * structured: bag-of-events features (benchmark.features.bag_of_events), every sample;
  * ct, wsi, cxr, prs: the mean `embedding` of the sidecar rows a sample may see (time <= the
    prediction time, static rows always), per (subject_id, prediction_time). Sidecars are read only
    through TaskData.visible_modality (the leakage guard, which also drops ground-truth columns).

A modality is used when the task offers it (task.modalities), the cohort has it
(cohort.modality_names()), it has an `embedding` column, and enough train + tuning samples have it
to cross-validate (every fold trains on both classes for binary tasks). Each modality model is
searched and refitted on the samples that have the modality, with the folds of one shared
subject-grouped split of train + tuning (restricted to those samples), so the out-of-fold scores
of all modality models are comparable. A sample's score is the mean of the scores of the modality
models it has (structured always): probabilities for binary / multilabel, log relative hazards for
survival (Breslow curves from the fused training scores), values for regression.

Explanations: leave-one-modality-out drop in the out-of-fold selection metric, plus the SHAP
summary of the structured model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl

from baselines.cox import survival_grid
from baselines.explain import explain_learner, modality_attribution
from baselines.search import make_folds, selection_score
from baselines.spaces import setup_of
from baselines.tabular import dense, in_label_order, n_labels_of, split_rows, stacked_targets
from baselines.tuning import fit_tuned
from benchmark.features.bag_of_events import featurize
from benchmark.kinds import kind_of
from benchmark.learn.cox import Breslow
from benchmark.learn.folds import derive_seed
from benchmark.model_api import Budget, Prediction, TaskData
from benchmark.vocabulary import IMAGE_MODALITIES, SPLITS

# the sidecars with one vector per study or subject (notes have no fixed-size embedding here)
SIDECAR_MODALITIES = (*IMAGE_MODALITIES, "prs")
# what a late-fusion model consumes: bag-of-events plus those sidecars
LATE_FUSION_MODALITIES = ("structured", *SIDECAR_MODALITIES)
FUSION_LIBRARIES = ("catboost", "xgboost", "random_forest", "logistic_regression")  # the paper's four setups


def _embedding_array(col: pl.Series) -> np.ndarray:
    """A fixed-size list / array column of floats -> [n, d] float32."""
    if col.len() == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if isinstance(col.dtype, pl.Array):
        return np.asarray(col.to_numpy(), dtype=np.float32).reshape(col.len(), -1)
    lengths = col.list.len().unique().to_list()
    if len(lengths) != 1:
        raise ValueError(f"embedding lists have different lengths: {sorted(lengths)[:5]}")
    return np.asarray(col.cast(pl.Array(pl.Float32, lengths[0])).to_numpy(), dtype=np.float32)


def modality_features(data: TaskData, name: str) -> dict[str, tuple[np.ndarray, np.ndarray]] | str:
    """Mean visible embedding of one sidecar modality for every sample, per split.

    Args:
        data: the task data; rows come from data.visible_modality(name, ...) only.
        name: modality name (a modalities/<name>.parquet with an `embedding` column).

    Returns:
        split -> (present [n_split] bool, X [n_split, d] float32, zeros where absent), rows in
        data.samples(split) order; or a string saying why the modality cannot be used.
    """
    vis = data.visible_modality(name, SPLITS)
    if "embedding" not in vis.collect_schema().names():
        return f"modality {name} has no embedding column"
    vis = vis.select("subject_id", "prediction_time", "embedding").drop_nulls("embedding").collect()
    out = {}
    for split in SPLITS:
        samples = data.samples(split).with_row_index("row").with_columns(
            pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us")))
        j = samples.join(vis, on=["subject_id", "prediction_time"], how="inner")
        n = samples.height
        emb = _embedding_array(j["embedding"])
        d = emb.shape[1] if len(j) else 0
        if d == 0:
            out[split] = (np.zeros(n, dtype=bool), np.zeros((n, 0), dtype=np.float32))
            continue
        rows = j["row"].to_numpy().astype(np.int64)
        sums = np.zeros((n, d), dtype=np.float64)
        np.add.at(sums, rows, emb)
        counts = np.bincount(rows, minlength=n)
        present = counts > 0
        X = np.zeros((n, d), dtype=np.float32)
        X[present] = (sums[present] / counts[present, None]).astype(np.float32)
        out[split] = (present, X)
    dims = {v[1].shape[1] for v in out.values() if v[0].any()}
    if not dims:
        return f"no sample sees a {name} row at or before its prediction time"
    d = dims.pop()
    return {s: (p, X if X.shape[1] == d else np.zeros((len(p), d), dtype=np.float32)) for s, (p, X) in out.items()}


def fuse(scores: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> np.ndarray:
    """Mean over the modality models each row has (NaN-safe).

    Args:
        scores: modality -> [n] or [n, L] scores (values of absent rows are ignored).
        present: modality -> [n] bool.

    Returns:
        [n] or [n, L] fused scores (NaN where a row has no modality).
    """
    names = list(scores)
    total = np.zeros_like(np.asarray(scores[names[0]], dtype=float))
    count = np.zeros(total.shape[0])
    for m in names:
        s = np.asarray(scores[m], dtype=float)
        ok = present[m] & np.all(np.isfinite(s.reshape(len(s), -1)), axis=1)
        total[ok] += s[ok]
        count[ok] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / (count.reshape(-1, *([1] * (total.ndim - 1))))


def _usable(kind: str, y: np.ndarray, present: np.ndarray, folds, n_folds_min: int = 2) -> str | None:
    """Why a modality cannot be cross-validated on its rows (None if it can)."""
    if present.sum() < 2 * n_folds_min:
        return f"only {int(present.sum())} train+tuning samples have it"
    for tr, va in folds:
        why = kind_of(kind).training_problem(y[tr])
        if why:
            return f"a cross-validation fold {why}"
    return None


class LateFusion:
    """Per-modality tuned models of one family, averaged (the object a late-fusion factory returns).

    Args:
        library: catboost | xgboost | random_forest | logistic_regression (the paper's setup of that
            name in baselines.spaces: its space, no early stopping, B.1 features).
        budget: search budget for every modality model.
        seed: the cell seed.
        threads: library threads.
        explain: add explanations to held-out predictions.
    """

    def __init__(self, library: str, budget: Budget, seed: int = 0, threads: int = 2, explain: bool = True):
        self.library = library
        self.feature_set = setup_of(library).feature_set
        self.budget = budget
        self.seed = seed
        self.threads = threads
        self.explain = explain

    def _blocks(self, data: TaskData) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
        boe = featurize(data, feature_set=self.feature_set)
        self.feature_names_ = list(boe.names)
        blocks = {"structured": {s: (np.ones(data.frame(s).height, dtype=bool), dense(boe.block(s)))
                                 for s in SPLITS}}
        available = set(data.cohort.modality_names())
        self.skipped_: dict[str, str] = {}
        for m in SIDECAR_MODALITIES:
            if m not in data.task.modalities:
                continue
            if m not in available:
                self.skipped_[m] = "not in the cohort"
                continue
            f = modality_features(data, m)
            if isinstance(f, str):
                self.skipped_[m] = f
            else:
                blocks[m] = f
        return blocks

    def fit(self, data: TaskData) -> "LateFusion":
        """Fit one tuned model per usable modality on train + tuning.

        Args:
            data: the task data.

        Returns:
            self
        """
        kind = data.task.kind
        blocks = self._blocks(data)
        y, groups = stacked_targets(data)
        folds = make_folds(kind, y, groups, self.budget.n_folds, derive_seed(self.seed, "folds"))
        n = len(y)
        self.models_: dict[str, Any] = {}
        self.oof_: dict[str, np.ndarray] = {}
        self.present_: dict[str, np.ndarray] = {}
        fitted_scores: dict[str, np.ndarray] = {}
        for m, per_split in blocks.items():
            present = np.concatenate([per_split["train"][0], per_split["tuning"][0]])
            X = np.concatenate([per_split["train"][1], per_split["tuning"][1]])
            idx = np.nonzero(present)[0]
            pos = np.full(n, -1)
            pos[idx] = np.arange(len(idx))
            sub = [(pos[tr][present[tr]], pos[va][present[va]]) for tr, va in folds]
            sub = [(tr, va) for tr, va in sub if len(tr) and len(va)]
            why = _usable(kind, y[idx], present, sub) if len(sub) >= 2 else "fewer than 2 usable folds"
            if why:
                self.skipped_[m] = why
                continue
            tuned = fit_tuned(self.library, kind, X[idx], y[idx], sub, self.budget, self.seed,
                              threads=self.threads, n_labels=n_labels_of(data), tag=m)
            self.models_[m] = tuned
            oof = np.full((n,) + tuned.search.oof.shape[1:], np.nan)
            oof[idx] = tuned.search.oof
            self.oof_[m] = oof
            self.present_[m] = present
            if kind_of(kind).time_to_event:  # the Breslow baseline needs fitted (not OOF) scores
                s = np.full(n, np.nan)
                s[idx] = tuned.model.score(X[idx])
                fitted_scores[m] = s
        if "structured" not in self.models_:
            raise ValueError(f"late fusion could not fit its structured model: {self.skipped_.get('structured')}")
        self.n_rows_ = {"train": data.frame("train").height, "tuning": data.frame("tuning").height}
        self.y_ = y
        if kind_of(kind).time_to_event:
            eta = fuse(fitted_scores, self.present_)
            self.breslow_ = Breslow().fit(eta, y[:, 0], y[:, 1])
            self.surv_times_ = survival_grid(y[:, 0], y[:, 1])
        self.blocks_ = blocks
        return self

    def _held_out_scores(self, data: TaskData) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        blocks = self.blocks_  # per-modality features of every split, built in fit from the same data
        scores, present = {}, {}
        for m, tuned in self.models_.items():
            p, X = blocks[m]["held_out"]
            s = np.full((len(p),) + tuned.search.oof.shape[1:], np.nan)
            if p.any():
                s[p] = tuned.model.score(X[p])
            scores[m], present[m] = s, p
        return fuse(scores, present), present

    def predict(self, data: TaskData, split: str | tuple[str, ...]) -> Prediction:
        """Fused scores: refitted modality models on held_out, out-of-fold scores on train/tuning.

        Args:
            data: the same TaskData as in fit.
            split: a split name or a tuple of them.

        Returns:
            Prediction aligned with data.samples(split); info has modalities_used, per-modality
            hyperparameters and CV scores, and (held_out) the modality attribution.
        """
        splits = split_rows(data, split)
        n_tr = self.n_rows_["train"]
        oof = fuse(self.oof_, self.present_)
        parts, held_present = [], None
        for s in splits:
            if s == "held_out":
                sc, held_present = self._held_out_scores(data)
                parts.append(sc)
            else:
                parts.append(oof[:n_tr] if s == "train" else oof[n_tr:])
        score = in_label_order(data, splits, parts)
        kind = data.task.kind
        info: dict[str, Any] = {
            "library": self.library,
            "modalities_used": list(self.models_),
            "modalities_skipped": dict(self.skipped_),
            "hyperparameters": {m: t.hyperparameters() | ({"feature_set": self.feature_set} if m == "structured" else {})
                                for m, t in self.models_.items()},
            "search_space": setup_of(self.library).source,
            "cv_metric": next(iter(self.models_.values())).search.metric,
            "cv_score": {m: t.search.summary()["cv_score"] for m, t in self.models_.items()},
            "cv_score_fused": _finite(selection_score(kind, self.y_, oof)),
            "n_parameters": int(sum(t.model.size() for t in self.models_.values())),
            "prediction_source": ("refit on train+tuning" if splits == ["held_out"]
                                  else "out-of-fold CV scores (train/tuning), refit (held_out)"),
        }
        if held_present is not None:
            info["held_out_rows_with"] = {m: int(p.sum()) for m, p in held_present.items()}
        surv_times = surv_prob = None
        if kind_of(kind).time_to_event and splits == ["held_out"] and len(self.surv_times_) >= 2:
            surv_times = self.surv_times_
            surv_prob = self.breslow_.survival(score, surv_times)
        if self.explain and splits == ["held_out"]:
            att = modality_attribution(kind, self.y_, self.oof_, self.present_, fuse, selection_score)
            p, X = self.blocks_["structured"]["held_out"]
            att["structured_model"] = explain_learner(self.models_["structured"].model, X, self.feature_names_,
                                                      data.cohort.codes(), seed=derive_seed(self.seed, "explain"))
            info["explanations"] = att
        return Prediction(score=score, surv_times=surv_times, surv_prob=surv_prob, info=info)


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def factory_for(library: str):
    """The ModelSpec factory of a late-fusion model: factory(budget=Budget, seed=int) -> LateFusion."""
    if library not in FUSION_LIBRARIES:
        raise ValueError(f"late fusion supports {FUSION_LIBRARIES}, not {library}")

    def factory(budget: Budget, seed: int = 0) -> LateFusion:
        return LateFusion(library, budget=budget, seed=seed)

    factory.__name__ = f"{library}_late_fusion_factory"
    return factory
