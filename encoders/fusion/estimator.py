"""Estimators around the heads.

* `FusionHead`: scikit-learn style (no logic in __init__, fit returns self, fitted state ends in
  ``_``): ``fit(X, y, X_val, y_val)`` on `FusionInputs`, ``predict_proba`` / ``predict_output``.
* `FusionModel`: the registry contract (``fit(data)``, ``predict(data, split) -> Prediction``):
  builds the inputs through the encoders (leakage guard, disk cache) and tunes the head with the
  one learning protocol every family uses (benchmark.learn), like the tabular baselines:

  1. folds: ``cell_folds`` over the train + tuning rows (subject-grouped, stratified by the kind's
     key, seeded from the cell seed), so every family validates on the same subjects;
  2. random search: ``budget.n_trials`` configurations (trial 0 the head's defaults; the space is
     the head class's ``search_space``); per trial and fold, the inputs are standardized on the
     fold's training part only, the head is trained there (pre-alignment included) with early
     stopping on the fold's validation part, and the validation part is scored by the kind's
     selection metric; the trial's CV score is the mean of its finite fold scores (the baselines'
     rule, benchmark.learn.search); the better CV score wins, the mean validation loss breaks
     ties and decides where the metric is undefined. Like the baselines, one trial still runs the
     folds: they choose its number of epochs;
  3. refit: the winner is trained on all train + tuning rows (scaler fitted on them) for the
     median of its folds' best epochs (for concat_lr: the median point of the regularisation
     path). No early-stopping set is left, so the refit trains a fixed length.

  Epochs are capped at ``budget.max_iterations``; ``info["modalities_used"]`` records the inputs used.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import replace
from typing import Any

import numpy as np

from benchmark.errors import UserError
from benchmark.learn.folds import cell_folds
from benchmark.learn.selection import SELECTION_METRIC, is_better, selection_score
from benchmark.model_api import Budget, Prediction, TaskData
from encoders.cache import split_rows
from encoders.fusion.inputs import FusionInputs, InputConfig, InputScaler, raw_inputs

# kind name -> the head options reported in a prediction's info (objectives.make_objective reads them)
HEAD_OPTIONS = {"binary": (), "multilabel": (), "survival": ("survival_head",), "regression": ("regression_loss",)}

TRAIN_KEYS = ("lr", "weight_decay", "batch_size", "max_epochs", "patience", "modality_dropout", "l1_ratio")

def _torch_threads():
    import torch
    return torch


class FusionHead:
    """A fusion head as a scikit-learn style estimator on `FusionInputs`.

    Args:
        head: a key of `heads.HEADS`.
        kind: binary | multilabel | survival | regression.
        n_labels: labels (multilabel).
        survival: "cox", "discrete" or "weibull" (survival tasks).
        n_bins: intervals of the discrete-time head.
        regression_loss: "l1" or "mse".
        head_params: hyperparameters of the head module (d, hidden, dropout, k, guide, ...).
        lr, weight_decay, batch_size, max_epochs, patience, modality_dropout: training settings.
        pretrain_epochs: epochs of the alignment stage (contrastive, medcam).
        pretrain_lr: learning rate of that stage.
        finetune_lr: learning rate after pre-alignment (default lr).
        l1_ratio: concat_lr only: 0 = ridge on every block (L-BFGS along an L2 path); in (0, 1] =
            elastic net with this L1 share on the bag-of-events EHR block, ridge on the others
            (proximal gradient along the path, `train.fit_enet_path`).
        threads: torch threads while training (1 by default: the heads are small, and on two shared
            cores thread synchronisation costs more than it saves; at most 2).
        seed: torch seed (initialisation, shuffling, modality dropout).
        fixed_epochs: a refit without a validation set: {"task": best epoch (index) to train to,
            or for concat_lr the ridge path point; "enet": the elastic-net path point, None = ridge
            only}. None = early stopping on X_val / y_val.

    The pre-alignment stage (contrastive, medcam) never sees X_val: it runs on the training rows
    and monitors its own training loss, the same way in a fold fit and in the refit.
    """

    def __init__(self, head: str = "concat_lr", kind: str = "binary", n_labels: int = 1, survival: str = "cox",
                 n_bins: int = 10, regression_loss: str = "l1", head_params: dict | None = None, lr: float = 1e-3,
                 weight_decay: float = 1e-2, batch_size: int = 128, max_epochs: int = 60, patience: int = 8,
                 modality_dropout: float = 0.15, pretrain_epochs: int = 30, pretrain_lr: float = 1e-3,
                 finetune_lr: float | None = None, l1_ratio: float = 0.0, threads: int = 1, seed: int = 0,
                 fixed_epochs: dict | None = None):
        self.head = head
        self.kind = kind
        self.n_labels = n_labels
        self.survival = survival
        self.n_bins = n_bins
        self.regression_loss = regression_loss
        self.head_params = head_params
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.modality_dropout = modality_dropout
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_lr = pretrain_lr
        self.finetune_lr = finetune_lr
        self.l1_ratio = l1_ratio
        self.threads = threads
        self.seed = seed
        self.fixed_epochs = fixed_epochs

    def get_params(self) -> dict:
        """The constructor arguments (scikit-learn convention)."""
        import inspect
        return {k: getattr(self, k) for k in inspect.signature(type(self).__init__).parameters if k != "self"}

    def fit(self, X: FusionInputs, y: np.ndarray, X_val: FusionInputs | None = None,
            y_val: np.ndarray | None = None) -> "FusionHead":
        """Train the head (early stopping on X_val / y_val when given).

        Args:
            X: training inputs.
            y: training targets (TaskData.y format of the kind).
            X_val: tuning inputs.
            y_val: tuning targets.

        Returns:
            self, with module_, objective_, history_, n_parameters_.
        """
        torch = _torch_threads()
        from encoders.fusion.heads import build_head
        from encoders.fusion.objectives import make_objective
        from encoders.fusion.train import TrainConfig, fit_stage

        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, min(int(self.threads), 2)))
        try:
            torch.manual_seed(int(self.seed))
            obj = make_objective(self.kind, n_labels=self.n_labels, survival=self.survival, n_bins=self.n_bins,
                                 regression_loss=self.regression_loss).fit_targets(np.asarray(y))
            module = build_head(self.head, X.spec(), obj.n_outputs, **(self.head_params or {}))
            train = X.to_torch()
            train["y"] = obj.target_tensor(np.asarray(y))
            tune = None
            if X_val is not None and y_val is not None and len(X_val) >= 2:
                tune = X_val.to_torch()
                tune["y"] = obj.target_tensor(np.asarray(y_val))
            cfg = TrainConfig(lr=self.lr, weight_decay=self.weight_decay, batch_size=self.batch_size,
                              max_epochs=self.max_epochs, patience=self.patience,
                              modality_dropout=self.modality_dropout, seed=self.seed)
            if self.fixed_epochs is not None:
                # refit: a fixed number of epochs, last weights kept (no validation rows to stop on)
                cfg.max_epochs = max(1, int(self.fixed_epochs["task"]) + 1)
                cfg.patience, cfg.restore_best, tune = cfg.max_epochs + 1, False, None
            history: dict[str, Any] = {}
            params = None
            if module.has_pretraining and self.pretrain_epochs > 0:
                pre = TrainConfig(lr=self.pretrain_lr, weight_decay=self.weight_decay, batch_size=self.batch_size,
                                  max_epochs=self.pretrain_epochs, patience=self.patience, modality_dropout=0.0,
                                  seed=self.seed + 1)
                # training rows only: the validation part must not shape the aligned encoders
                history["pretrain"] = fit_stage(module, lambda m, b: m.pretrain_loss(b), train, None, pre,
                                                params=module.pretrain_parameters())
                params = module.finetune_parameters()
                cfg.lr = self.finetune_lr or self.lr
            elif module.has_pretraining:
                params = module.finetune_parameters()
            if self.head == "concat_lr":
                history.update(self._fit_linear(module, obj, train, tune, X))
            else:
                history["task"] = fit_stage(module, lambda m, b: m.task_loss(b, obj), train, tune, cfg,
                                            params=params, modalities=X.modalities)
            self.module_ = module
            self.objective_ = obj
            obj.calibrate(self._outputs(X))
            self.history_ = history
            self.best_loss_ = float(history["task"]["best_loss"])
            self.n_parameters_ = int(sum(p.numel() for p in module.parameters()))
        finally:
            torch.set_num_threads(threads)
        return self

    def _fit_linear(self, module, obj, train: dict, tune: dict | None, X: FusionInputs) -> dict:
        """concat_lr: exact full-batch fits along an L2 path, then (l1_ratio > 0 and an EHR block)
        an elastic-net path on the EHR block, the other blocks keeping the chosen ridge. With a
        validation set each path keeps its best point and the ridge fit stays if no elastic-net
        point has a lower validation loss; a refit (fixed_epochs) runs each path to its given point.

        Returns:
            history: "ridge" (the L2 path), "task" (the kept fit), "enet" when the elastic net ran.
        """
        from encoders.fusion.train import L2_PATH, augment_with_dropout, fit_enet_path, fit_l2_path

        def loss(m, b):
            return m.task_loss(b, obj)

        fixed = self.fixed_epochs
        aug = augment_with_dropout(train, X.modalities, self.modality_dropout, self.seed)
        if fixed is None:
            ridge = fit_l2_path(module, loss, aug, tune)
        else:
            ridge = fit_l2_path(module, loss, aug, None, lambdas=L2_PATH[:max(0, int(fixed["task"])) + 1],
                                keep_last=True)
        history = {"ridge": ridge, "task": ridge}
        run_enet = self.l1_ratio > 0 and X.spec()["ehr_dim"] and (fixed is None or fixed.get("enet") is not None)
        if not run_enet:
            return history
        ridge_state = copy.deepcopy(module.state_dict())
        n_points = None if fixed is None else int(fixed["enet"]) + 1
        enet = fit_enet_path(module, loss, aug, tune, module.l1_masks(), self.l1_ratio,
                             ridge=ridge["best_lambda"], n_points=n_points)
        enet["kept"] = fixed is not None or enet["best_loss"] < ridge["best_loss"] - 1e-6
        history["enet"] = enet
        if enet["kept"]:
            history["task"] = {**enet, "ridge": ridge["best_lambda"]}
        else:
            module.load_state_dict(ridge_state)
        return history

    def fold_epochs(self) -> dict:
        """What a refit needs from this (early-stopped) fit: {"task": best epoch or ridge path
        point, "enet": the elastic-net path point or None when the ridge fit was kept}."""
        h = self.history_
        enet = h.get("enet")
        return {"task": int(h.get("ridge", h["task"])["best_epoch"]),
                "enet": int(enet["best_epoch"]) if enet is not None and enet["kept"] else None}

    def _outputs(self, X: FusionInputs, chunk: int = 2048) -> np.ndarray:
        torch = _torch_threads()
        self.module_.eval()
        outs = []
        with torch.no_grad():
            for s in range(0, len(X), chunk):
                outs.append(self.module_(X.take(np.arange(s, min(s + chunk, len(X)))).to_torch()).numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.objective_.n_outputs), np.float32)

    def predict_output(self, X: FusionInputs) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Scores in the runner's convention, plus survival curves for survival heads.

        Args:
            X: inputs.

        Returns:
            (score, surv_times or None, surv_prob or None): binary P(y=1) [n]; multilabel [n, L];
            survival risk [n] (higher = earlier event); regression value [n].
        """
        return self.objective_.predict(self._outputs(X).astype(np.float64))

    def predict_proba(self, X: FusionInputs) -> np.ndarray:
        """Probabilities (binary [n], multilabel [n, L]); for other kinds the score of predict_output."""
        return self.predict_output(X)[0]

    def predict(self, X: FusionInputs) -> np.ndarray:
        """Same as predict_proba (risk for survival, value for regression)."""
        return self.predict_output(X)[0]


def _head_class(head: str):
    """The head class (heads import torch, so they are loaded only when a model is tuned)."""
    from encoders.fusion.heads import HEADS
    return HEADS[head]


def _sample_trials(head: str, n_trials: int, seed: int) -> list[dict]:
    """Trial 0 = the defaults, then random draws from the head's `search_space`, each configuration
    at most once (a draw equal to an earlier one, or to the defaults, is redrawn; a small space ends
    early).

    Args:
        head: a key of `heads.HEADS`.
        n_trials: configurations wanted.
        seed: the cell seed.

    Returns:
        [{}, draw, draw, ...] ({} = the defaults).
    """
    import inspect
    cls = _head_class(head)
    space = cls.search_space
    rng = np.random.default_rng(seed + 7919)
    init = {k: p.default for k, p in inspect.signature(FusionHead.__init__).parameters.items()}
    defaults = {k: cls.train_defaults.get(k, init[k]) for k in space if k in TRAIN_KEYS}
    seen = [defaults] if len(defaults) == len(space) else []
    trials = [{}]
    n_configs = int(np.prod([len(v.values) for v in space.values()])) if space else 0
    attempts = 0
    while len(trials) < n_trials and len(seen) < n_configs and attempts < 100 * max(1, n_trials):
        attempts += 1
        draw = {k: v.sample(rng) for k, v in space.items()}
        if draw not in seen:
            seen.append(draw)
            trials.append(draw)
    return trials


def _cv_mean(values: list[float]) -> float:
    """A trial's CV score: the mean of its finite fold scores, NaN if none (benchmark.learn.search's rule)."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _median_point(values: list[int]) -> int:
    """The median of the folds' best epochs (or path points), rounded half up, at least 0."""
    return max(0, int(math.floor(float(np.median(values)) + 0.5)))


def refit_epochs(folds: list[dict]) -> dict:
    """The fixed training length of the refit on all rows, from the folds' early-stopped fits.

    Args:
        folds: per fold, `FusionHead.fold_epochs()` ({"task": int, "enet": int | None}).

    Returns:
        {"task": median task epoch (or ridge path point); "enet": None unless the elastic net was
        kept in more than half of the folds, then the median of those folds' path points}.
    """
    kept = [f["enet"] for f in folds if f["enet"] is not None]
    return {"task": _median_point([f["task"] for f in folds]),
            "enet": _median_point(kept) if 2 * len(kept) > len(folds) else None}


def _beats(kind: str, new: dict, old: dict) -> bool:
    """Trial selection: the better CV score under the kind's selection metric; where neither
    differs (equal or both undefined), the lower mean validation loss."""
    metric = SELECTION_METRIC[kind]
    a, b = new["cv_score"], old["cv_score"]
    if is_better(metric, a, b):
        return True
    if is_better(metric, b, a):
        return False
    return new["cv_loss"] < old["cv_loss"] - 1e-12


def _jsonable(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


class FusionModel:
    """A registered encoder + head model: TaskData in, Prediction out.

    Args:
        head: a key of `heads.HEADS`.
        budget: the run budget (n_trials, max_iterations); None = smoke-like defaults.
        seed: seed of the search and of every trial.
        inputs: which inputs and sources (`InputConfig`); default all of them, precomputed embeddings.
        head_params: fixed head hyperparameters (e.g. guide="ehr", cell="lstm", k=3).
        survival: "cox", "discrete" or "weibull" for survival tasks.
        regression_loss: "l1" or "mse".
        name: the registered model name (recorded in info).
        image_priority: read ONE side modality: the first of these the task offers and the cohort has
            (the CT + EHR fusion paper's heads: ("ct", "cxr", "wsi")); none of them -> UserError.
            None = the modalities of `inputs`.
        train_params: fixed training settings (lr, weight_decay, batch_size, patience, modality_dropout,
            pretrain_epochs, ...).
    """

    def __init__(self, head: str = "concat_lr", budget: Budget | None = None, seed: int = 0,
                 inputs: InputConfig | None = None, head_params: dict | None = None, survival: str = "cox",
                 regression_loss: str = "l1", name: str | None = None,
                 image_priority: tuple[str, ...] | None = None, **train_params):
        self.head = head
        self.image_priority = image_priority
        self.budget = budget
        self.seed = seed
        self.inputs = inputs
        self.head_params = head_params
        self.survival = survival
        self.regression_loss = regression_loss
        self.name = name
        self.train_params = train_params

    # ------------------------------------------------------------------ inputs
    def _raw(self, data: TaskData):
        key = (id(data), id(data.labels), str(data.work_dir))
        cached = getattr(self, "_raw_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        cfg = self._input_config(data)
        if cfg.ehr_source == "fm" and cfg.ehr_fm_budget is None and self.budget is not None:
            cfg = replace(cfg, ehr_fm_budget=self.budget.name)  # the foundation model at the run's budget
        out = raw_inputs(data, cfg)
        self._raw_cache = (key, out)
        return out

    def _input_config(self, data: TaskData) -> InputConfig:
        """The input configuration; with `image_priority`, its modalities = the one image modality."""
        cfg = self.inputs or InputConfig()
        if self.image_priority is None:
            return cfg
        have = set(data.task.modalities) & set(data.cohort.modality_names())
        pick = [m for m in self.image_priority if m in have]
        if not pick:
            raise UserError(f"model {self.name or self.head!r} reads an image modality "
                            f"({', '.join(self.image_priority)}); task {data.task.name!r} offers "
                            f"{sorted(data.task.modalities)} and the cohort has {sorted(data.cohort.modality_names())}",
                            field="modalities", fix="run it on a task (and cohort) with a CT, CXR or WSI modality")
        return dataclasses.replace(cfg, modalities=(pick[0],))

    def _head(self, data: TaskData, hp: dict, tp: dict, fixed_epochs: dict | None = None) -> FusionHead:
        """An unfitted head for this task with trial settings hp (head) and tp (training)."""
        return FusionHead(head=self.head, kind=data.task.kind, n_labels=len(data.task.label_names() or [1]),
                          survival=self.survival, regression_loss=self.regression_loss, head_params=hp,
                          seed=self.seed, fixed_epochs=fixed_epochs, **tp)

    def _trial_settings(self, trial: dict, max_epochs: int) -> tuple[dict, dict]:
        """(head params, training params) of one drawn trial over the model's fixed settings."""
        hp = {**(self.head_params or {})}
        tp = {**_head_class(self.head).train_defaults, **self.train_params}
        tp.pop("l1_ratio", None)  # the elastic-net stage runs once, on the winning trial
        for k, v in trial.items():
            (tp if k in TRAIN_KEYS else hp)[k] = v
        tp["max_epochs"] = min(tp.get("max_epochs", max_epochs), max_epochs)
        tp.setdefault("pretrain_epochs", min(30, max_epochs))
        return hp, tp

    def _cross_validate(self, data: TaskData, arrays: dict, mods, rows: np.ndarray, y: np.ndarray,
                        hp: dict, tp: dict) -> dict:
        """One trial on the cell's folds: per fold, standardize on the fold's training part, train
        there with early stopping on the validation part, score the validation part.

        Args:
            data: the task data.
            arrays, mods: raw inputs (label-aligned) and side modalities.
            rows: train + tuning row indices into arrays (the folds index into these).
            y: their targets.
            hp, tp: head and training settings.

        Returns:
            record: head_params, train_params, cv_score (mean of finite fold scores), cv_loss (mean
            best validation loss), fold_scores, fold_epochs, and the fold scalers (scalers_).
        """
        kind = data.task.kind
        scores, losses, epochs, scalers = [], [], [], []
        for tr, va in self.folds_:
            scaler = InputScaler().fit(arrays, mods, rows[tr])   # the fold's training part only
            Xv = scaler.transform(arrays, rows[va])
            est = self._head(data, hp, tp).fit(scaler.transform(arrays, rows[tr]), y[tr], Xv, y[va])
            scores.append(selection_score(kind, y[va], est.predict_output(Xv)[0]))
            losses.append(est.best_loss_)
            epochs.append(est.fold_epochs())
            scalers.append(scaler)
        return {"head_params": hp, "train_params": tp, "cv_score": _cv_mean(scores),
                "cv_loss": float(np.mean(losses)), "fold_scores": scores, "fold_epochs": epochs,
                "scalers_": scalers}

    def fit(self, data: TaskData) -> "FusionModel":
        """Encode, then tune by cross-validation on the cell's folds and refit the winner on all
        train + tuning rows for the median of its folds' best epochs (see the module docstring).

        Args:
            data: the task data (train + tuning used).

        Returns:
            self, with estimator_, scaler_, folds_, trials_, best_trial_, modalities_.
        """
        arrays, mods, info = self._raw(data)
        kind = data.task.kind
        rows = split_rows(data, ("train", "tuning"))
        y = data.y(("train", "tuning"))
        groups = data.samples(("train", "tuning"))["subject_id"].to_numpy()
        b = self.budget
        n_trials = b.n_trials if b is not None else 1
        n_folds = b.n_folds if b is not None else 3
        max_epochs = b.max_iterations if b is not None else 60
        self.folds_ = cell_folds(kind, y, groups, n_folds, self.seed)
        l1_ratio = {**_head_class(self.head).train_defaults, **self.train_params}.get("l1_ratio") or 0.0
        enet = self.head == "concat_lr" and bool(l1_ratio)
        trials = _sample_trials(self.head, n_trials, self.seed)
        self.trials_ = []
        best = None
        if enet and len(trials) == 1:
            # nothing to choose between, and the elastic-net trial below replaces the winner:
            # its folds give the refit length, so the ridge-only folds would be wasted work
            hp, tp = self._trial_settings(trials[0], max_epochs)
            best = {"trial": 0, "head_params": hp, "train_params": tp}
        for i, trial in enumerate(trials if best is None else []):
            rec = {"trial": i, **self._cross_validate(data, arrays, mods, rows, y,
                                                      *self._trial_settings(trial, max_epochs))}
            self.trials_.append(rec)
            if best is None or _beats(kind, rec, best):
                best = rec
        if enet:
            # concat_lr's elastic-net stage runs once, on the winning trial (the trials differ only
            # in modality dropout, and the path costs ~10x the ridge fit); it replaces the winner,
            # each fold keeping the ridge fit where the elastic net does not lower its loss
            tp = {**best["train_params"], "l1_ratio": float(l1_ratio)}
            best = {"trial": "elastic_net", **self._cross_validate(data, arrays, mods, rows, y,
                                                                   best["head_params"], tp)}
            self.trials_.append(best)
        self.best_trial_ = {**best, "refit_epochs": refit_epochs(best["fold_epochs"])}
        self.scaler_ = InputScaler().fit(arrays, mods, rows)
        X = self.scaler_.transform(arrays, rows)
        self.estimator_ = self._head(data, best["head_params"], best["train_params"],
                                     fixed_epochs=self.best_trial_["refit_epochs"]).fit(X, y)
        self.modalities_ = mods
        self.input_info_ = {k: v for k, v in info.items() if k in ("sources", "ts_codes", "pooling")}
        if "ehr_names" in info:   # the EHR columns the scaler kept (names of the SHAP inputs)
            self.input_info_["ehr_names"] = [info["ehr_names"][j] for j in self.scaler_.ehr_keep_]
        structured = "ehr" in arrays or "ts" in arrays
        self.modalities_used_ = (["structured"] if structured else []) + [
            m for m in mods if X.arrays[f"{m}.present"].any()]
        return self

    def maskable_modalities(self) -> list[str]:
        """Side modalities used in fit that can be masked at test time (benchmark.ablation)."""
        return [m for m in self.modalities_ if m in self.modalities_used_]

    def present_rows(self, data: TaskData, split: str, modality: str) -> np.ndarray:
        """Rows of a split that have at least one visible study of the modality."""
        arrays, _, _ = self._raw(data)
        return arrays[f"{modality}.present"][split_rows(data, split)].astype(bool)

    def predict_masked(self, data: TaskData, split: str, drop: dict[str, np.ndarray]) -> Prediction:
        """Like predict, with drop[m] (bool over the split's rows) marking rows whose modality m is
        treated as missing (benchmark.ablation)."""
        return self.predict(data, split, drop=drop, explain=False)

    def explain(self, data: TaskData, X: FusionInputs, full: Prediction) -> dict:
        """The explanations block of the held-out prediction: the leave-one-modality-out drop
        (`benchmark.ablation.modality_attribution`: "method", "metric", "metric_all", "modalities")
        and SHAP grouped by modality ("modality_shap", `encoders.fusion.explain`).

        Args:
            data: the task data.
            X: the scaled held-out inputs.
            full: the held-out prediction with every modality.

        Returns:
            The block; a part that cannot be computed is replaced by {"reason": ...}.
        """
        from benchmark.ablation import modality_attribution
        from encoders.fusion.explain import MAX_EVALS, modality_shap

        out = modality_attribution(self, data, full) if self.maskable_modalities() else None
        out = dict(out or {})
        arrays, _, _ = self._raw(data)
        background = self.scaler_.transform(arrays, split_rows(data, ("train", "tuning")))
        level = self.budget.name if self.budget is not None else "smoke"
        codes = self.input_info_.get("ts_codes") or []
        ts_names = [f"{stat}:{c}" for stat in ("last", "mean", "min", "max", "observed") for c in codes] or None
        try:
            out["modality_shap"] = modality_shap(self.estimator_, X, background, data.task.kind,
                                                 ehr_names=self.input_info_.get("ehr_names"), ts_names=ts_names,
                                                 seed=self.seed, max_evals=MAX_EVALS.get(level, MAX_EVALS["smoke"]))
        except (ValueError, RuntimeError, ImportError) as e:
            out["modality_shap"] = {"reason": f"SHAP not computed ({type(e).__name__}: {e})"}
        return out

    def predict(self, data: TaskData, split: str, drop: dict[str, np.ndarray] | None = None,
                explain: bool = True) -> Prediction:
        """Scores of a split (and survival curves for survival tasks).

        Args:
            data: the same task data as in fit.
            split: train | tuning | held_out.
            drop: modality -> rows to treat as missing (`predict_masked`); no explanations then.
            explain: add the explanations block to a held-out prediction (`explain`).

        Returns:
            Prediction aligned with data.samples(split); held-out predictions carry
            info["explanations"] (see `explain`).
        """
        arrays, _, _ = self._raw(data)
        X = self.scaler_.transform(arrays, split_rows(data, split))
        for m, rows in (drop or {}).items():
            X = X.masked(m, rows)
        score, st, sp = self.estimator_.predict_output(X)
        info = {"modalities_used": list(self.modalities_used_),
                "modality_presence": X.presence(),
                "head": self.head, "n_parameters": self.estimator_.n_parameters_, "device": "cpu",
                "hyperparameters": {**self.best_trial_["head_params"], **self.best_trial_["train_params"]},
                "best_epoch": self.best_trial_["refit_epochs"]["task"],
                "cv_metric": SELECTION_METRIC[data.task.kind], "cv_score": _jsonable(self.best_trial_["cv_score"]),
                "cv_loss": _jsonable(self.best_trial_["cv_loss"]), "n_folds": len(self.folds_),
                "n_trials": len(self.trials_), "sources": self.input_info_.get("sources", {}),
                "pooling": self.input_info_.get("pooling", {})}
        if self.image_priority is not None:
            info["image_modality"] = self.modalities_[0]
        if split == "held_out" and drop is None and explain:
            info["explanations"] = self.explain(data, X, Prediction(score=np.asarray(score), surv_times=st,
                                                                    surv_prob=sp, info={}))
        enet = self.estimator_.history_.get("enet")
        if enet is not None:
            kept = enet["kept"]
            info["ehr_elastic_net"] = {"kept": kept, "l1_ratio": enet["l1_ratio"],
                                       "lambda": enet["best_lambda"] if kept else None,
                                       "nonzero_ehr_features": enet["nonzero"][enet["best_epoch"]] if kept else None,
                                       "ehr_features": int(self.estimator_.module_.spec["ehr_dim"])}
        # the head options that apply to this task's kind (see objectives.make_objective)
        info.update({k: v for k, v in (("survival_head", self.survival), ("regression_loss", self.regression_loss))
                     if k in HEAD_OPTIONS[data.task.kind]})
        return Prediction(score=np.asarray(score), surv_times=st, surv_prob=sp, info=info)
