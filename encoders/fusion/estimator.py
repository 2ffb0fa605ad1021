"""Estimators around the heads.

* `FusionHead`: scikit-learn style (no logic in __init__, fit returns self, fitted state ends in
  ``_``): ``fit(X, y, X_val, y_val)`` on `FusionInputs`, ``predict_proba`` / ``predict_output``.
* `FusionModel`: the registry contract (``fit(data)``, ``predict(data, split) -> Prediction``):
  builds the inputs through the encoders (leakage guard, disk cache), standardizes them on the
  training split, runs a small random hyperparameter search (``budget.n_trials`` trials, the first
  one the defaults; the trial with the best tuning-split score under the task kind's selection
  metric wins, benchmark.learn.selection, the same rule the baselines and MEHRT probes use; the
  tuning loss breaks ties and decides where the metric is undefined), caps epochs at
  ``budget.max_iterations``, and records ``info["modalities_used"]``.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np

from benchmark.learn.search import Choice, Distribution
from benchmark.learn.selection import SELECTION_METRIC, is_better, selection_score
from benchmark.model_api import Budget, Prediction, TaskData
from encoders.cache import split_rows
from encoders.fusion.inputs import FusionInputs, InputConfig, InputScaler, raw_inputs

# kind name -> the head options reported in a prediction's info (objectives.make_objective reads them)
HEAD_OPTIONS = {"binary": (), "multilabel": (), "survival": ("survival_head",), "regression": ("regression_loss",)}

TRAIN_KEYS = ("lr", "weight_decay", "batch_size", "max_epochs", "patience", "modality_dropout", "l1_ratio")

# random-search spaces, typed (benchmark.learn.search); trial 0 always uses the defaults
SEARCH_SPACES: dict[str, dict[str, Distribution]] = {
    "concat_lr": {"modality_dropout": Choice((0.0, 0.15, 0.3))},  # the L2 penalty is chosen on a path inside fit
    "late_fusion": {"lr": Choice((3e-4, 1e-3, 3e-3)), "weight_decay": Choice((1e-3, 1e-2, 1e-1)),
                    "dropout": Choice((0.0, 0.1, 0.3)), "hidden": Choice((32, 64, 128))},
    "timeline_rnn": {"lr": Choice((3e-4, 1e-3, 3e-3)), "hidden": Choice((32, 64, 128)),
                     "dropout": Choice((0.0, 0.1, 0.3))},
}
_ATTENTION_SPACE = {"lr": Choice((3e-4, 1e-3, 3e-3)), "weight_decay": Choice((1e-3, 1e-2, 1e-1)),
                    "dropout": Choice((0.0, 0.1, 0.3)), "d": Choice((32, 64)),
                    "modality_dropout": Choice((0.0, 0.15, 0.3))}
for _h in ("contrastive", "cross_attention", "coattention", "medcam"):
    SEARCH_SPACES[_h] = _ATTENTION_SPACE

DEFAULTS: dict[str, dict[str, Any]] = {
    # concat_lr: after the ridge path, an elastic-net path on the EHR block (kept only when its
    # tuning loss is lower; no effect without an EHR block): encoders/README.md, "concat_lr"
    "concat_lr": {"l1_ratio": 0.9},
    "late_fusion": {"lr": 1e-3, "weight_decay": 1e-2},
    "timeline_rnn": {"lr": 1e-3, "weight_decay": 1e-2, "modality_dropout": 0.0},
}


def _torch_threads():
    import torch
    return torch


class FusionHead:
    """A fusion head as a scikit-learn style estimator on `FusionInputs`.

    Args:
        head: a key of `heads.HEADS`.
        kind: binary | multilabel | survival | regression.
        n_labels: labels (multilabel).
        survival: "cox" or "discrete" (survival tasks).
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
    """

    def __init__(self, head: str = "concat_lr", kind: str = "binary", n_labels: int = 1, survival: str = "cox",
                 n_bins: int = 10, regression_loss: str = "l1", head_params: dict | None = None, lr: float = 1e-3,
                 weight_decay: float = 1e-2, batch_size: int = 128, max_epochs: int = 60, patience: int = 8,
                 modality_dropout: float = 0.15, pretrain_epochs: int = 30, pretrain_lr: float = 1e-3,
                 finetune_lr: float | None = None, l1_ratio: float = 0.0, threads: int = 1, seed: int = 0):
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
        from encoders.fusion.train import (TrainConfig, augment_with_dropout, fit_enet_path, fit_l2_path,
                                           fit_stage)

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
            history: dict[str, Any] = {}
            params = None
            if module.has_pretraining and self.pretrain_epochs > 0:
                pre = TrainConfig(lr=self.pretrain_lr, weight_decay=self.weight_decay, batch_size=self.batch_size,
                                  max_epochs=self.pretrain_epochs, patience=self.patience, modality_dropout=0.0,
                                  seed=self.seed + 1)
                history["pretrain"] = fit_stage(module, lambda m, b: m.pretrain_loss(b), train, tune, pre,
                                                params=module.pretrain_parameters())
                params = module.finetune_parameters()
                cfg.lr = self.finetune_lr or self.lr
            elif module.has_pretraining:
                params = module.finetune_parameters()
            if self.head == "concat_lr":
                # a linear model: fit exactly (full-batch L-BFGS) along an L2 path chosen on tuning
                aug = augment_with_dropout(train, X.modalities, self.modality_dropout, self.seed)
                history["task"] = fit_l2_path(module, lambda m, b: m.task_loss(b, obj), aug, tune)
                if self.l1_ratio > 0 and X.spec()["ehr_dim"]:
                    # then an elastic net on the EHR block, the other blocks keeping the chosen ridge;
                    # the ridge fit stays if no point of that path has a lower tuning loss
                    ridge_state = copy.deepcopy(module.state_dict())
                    enet = fit_enet_path(module, lambda m, b: m.task_loss(b, obj), aug, tune, module.l1_masks(),
                                         self.l1_ratio, ridge=history["task"]["best_lambda"])
                    enet["kept"] = enet["best_loss"] < history["task"]["best_loss"] - 1e-6
                    history["enet"] = enet
                    if enet["kept"]:
                        history["task"] = {**enet, "ridge": history["task"]["best_lambda"]}
                    else:
                        module.load_state_dict(ridge_state)
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


def _sample_trials(head: str, n_trials: int, seed: int) -> list[dict]:
    """Trial 0 = the defaults, then random draws from the head's space, each configuration at most
    once (a draw equal to an earlier one, or to the defaults, is redrawn; a small space ends early)."""
    import inspect
    space = SEARCH_SPACES.get(head, {})
    rng = np.random.default_rng(seed + 7919)
    init = {k: p.default for k, p in inspect.signature(FusionHead.__init__).parameters.items()}
    defaults = {k: DEFAULTS.get(head, {}).get(k, init[k]) for k in space if k in TRAIN_KEYS}
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


def _tuning_score(est: FusionHead, kind: str, X_tune: FusionInputs, y_tune: np.ndarray) -> float:
    """The kind's selection metric of a fitted head on the tuning split (NaN if undefined or empty)."""
    if len(X_tune) < 2:
        return float("nan")
    return selection_score(kind, np.asarray(y_tune), est.predict_output(X_tune)[0])


def _beats(kind: str, new: dict, old: dict) -> bool:
    """Trial selection: the better tuning score under the kind's selection metric; where neither
    differs (equal or both undefined), the lower tuning loss."""
    metric = SELECTION_METRIC[kind]
    a, b = new["tuning_score"], old["tuning_score"]
    if is_better(metric, a, b):
        return True
    if is_better(metric, b, a):
        return False
    return new["tuning_loss"] < old["tuning_loss"] - 1e-12


class FusionModel:
    """A registered encoder + head model: TaskData in, Prediction out.

    Args:
        head: a key of `heads.HEADS`.
        budget: the run budget (n_trials, max_iterations); None = smoke-like defaults.
        seed: seed of the search and of every trial.
        inputs: which inputs and sources (`InputConfig`); default all of them, precomputed embeddings.
        head_params: fixed head hyperparameters (e.g. guide="ehr", cell="lstm", k=3).
        survival: "cox" or "discrete" for survival tasks.
        regression_loss: "l1" or "mse".
        name: the registered model name (recorded in info).
        train_params: fixed training settings (lr, weight_decay, batch_size, patience, modality_dropout,
            pretrain_epochs, ...).
    """

    def __init__(self, head: str = "concat_lr", budget: Budget | None = None, seed: int = 0,
                 inputs: InputConfig | None = None, head_params: dict | None = None, survival: str = "cox",
                 regression_loss: str = "l1", name: str | None = None, **train_params):
        self.head = head
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
        out = raw_inputs(data, self.inputs or InputConfig())
        self._raw_cache = (key, out)
        return out

    def fit(self, data: TaskData) -> "FusionModel":
        """Encode, standardize on the training split, search hyperparameters, keep the best head.

        Args:
            data: the task data (train + tuning used).

        Returns:
            self, with estimator_, scaler_, modalities_, trials_.
        """
        arrays, mods, info = self._raw(data)
        tr, tu = split_rows(data, "train"), split_rows(data, "tuning")
        self.scaler_ = InputScaler().fit(arrays, mods, tr)
        Xtr, Xtu = self.scaler_.transform(arrays, tr), self.scaler_.transform(arrays, tu)
        ytr, ytu = data.y("train"), data.y("tuning")
        b = self.budget
        n_trials = b.n_trials if b is not None else 1
        max_epochs = b.max_iterations if b is not None else 60
        base = {**DEFAULTS.get(self.head, {}), **self.train_params}
        # concat_lr's elastic-net stage runs once, on the winning trial (the trials differ only in
        # modality dropout, and the path costs ~10x the ridge fit)
        l1_ratio = float(base.pop("l1_ratio", 0.0) or 0.0) if self.head == "concat_lr" else None
        self.trials_ = []
        best = None

        def fit_trial(hp: dict, tp: dict) -> FusionHead:
            return FusionHead(head=self.head, kind=data.task.kind, n_labels=len(data.task.label_names() or [1]),
                              survival=self.survival, regression_loss=self.regression_loss, head_params=hp,
                              seed=self.seed, **tp).fit(Xtr, ytr, Xtu, ytu)

        for i, trial in enumerate(_sample_trials(self.head, n_trials, self.seed)):
            hp = {**(self.head_params or {})}
            tp = dict(base)
            for k, v in trial.items():
                (tp if k in TRAIN_KEYS else hp)[k] = v
            tp.setdefault("max_epochs", max_epochs)
            tp["max_epochs"] = min(tp["max_epochs"], max_epochs)
            tp.setdefault("pretrain_epochs", min(30, max_epochs))
            est = fit_trial(hp, tp)
            rec = {"trial": i, "head_params": hp, "train_params": tp, "tuning_loss": est.best_loss_,
                   "tuning_score": _tuning_score(est, data.task.kind, Xtu, ytu),
                   "best_epoch": est.history_["task"]["best_epoch"]}
            self.trials_.append(rec)
            if best is None or _beats(data.task.kind, rec, best[1]):
                best = (est, rec)
        if l1_ratio:
            rec = best[1]
            tp = {**rec["train_params"], "l1_ratio": l1_ratio}
            est = fit_trial(rec["head_params"], tp)   # ridge path again, then the elastic-net path
            rec = {**rec, "train_params": tp, "tuning_loss": est.best_loss_,
                   "tuning_score": _tuning_score(est, data.task.kind, Xtu, ytu),
                   "best_epoch": est.history_["task"]["best_epoch"]}
            self.trials_.append({**rec, "trial": "elastic_net"})
            best = (est, rec)
        self.estimator_, self.best_trial_ = best
        self.modalities_ = mods
        self.input_info_ = {k: v for k, v in info.items() if k in ("sources", "ts_codes", "pooling")}
        structured = "ehr" in arrays or "ts" in arrays
        self.modalities_used_ = (["structured"] if structured else []) + [
            m for m in mods if Xtr.arrays[f"{m}.present"].any()]
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
        return self.predict(data, split, drop=drop)

    def predict(self, data: TaskData, split: str, drop: dict[str, np.ndarray] | None = None) -> Prediction:
        """Scores of a split (and survival curves for survival tasks).

        Args:
            data: the same task data as in fit.
            split: train | tuning | held_out.

        Returns:
            Prediction aligned with data.samples(split).
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
                "best_epoch": self.best_trial_["best_epoch"], "tuning_loss": self.best_trial_["tuning_loss"],
                "n_trials": len(self.trials_), "sources": self.input_info_.get("sources", {}),
                "pooling": self.input_info_.get("pooling", {})}
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
