"""One output adapter per task kind: output size, loss, target tensor, and outputs -> scores.

* binary: one logit, binary cross-entropy; score = P(y = 1).
* multilabel: one logit per label, mean binary cross-entropy over labels; score = P(label) [n, L].
* regression: one output on the standardized target (training mean/std), MSE or L1 loss;
  score = de-standardized value.
* survival: `survival.CoxObjective`, `survival.DiscreteTimeObjective` or `survival.WeibullObjective`
  (TorchSurv's Weibull NLL, the objective of the CT + EHR fusion paper's heads).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from encoders.fusion.survival import CoxObjective, DiscreteTimeObjective, WeibullObjective


class BinaryObjective:
    """Binary cross-entropy on one logit."""

    kind = "binary"
    name = "bce"
    n_outputs = 1

    def fit_targets(self, y: np.ndarray) -> "BinaryObjective":
        return self

    def target_tensor(self, y: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(y, dtype=np.float32).reshape(-1, 1))

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(out, y)

    def calibrate(self, out_train: np.ndarray) -> None:
        pass

    def predict(self, out: np.ndarray):
        return 1.0 / (1.0 + np.exp(-np.clip(out[:, 0].astype(float), -50, 50))), None, None


class MultilabelObjective(BinaryObjective):
    """Binary cross-entropy per label (one logit each), averaged over labels."""

    kind = "multilabel"

    def __init__(self, n_labels: int):
        self.n_outputs = n_labels

    def target_tensor(self, y: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(y, dtype=np.float32).reshape(len(y), -1))

    def predict(self, out: np.ndarray):
        return 1.0 / (1.0 + np.exp(-np.clip(out.astype(float), -50, 50))), None, None


class RegressionObjective:
    """MSE or L1 on the standardized target."""

    kind = "regression"
    n_outputs = 1

    def __init__(self, loss: str = "l1"):
        if loss not in ("mse", "l1"):
            raise ValueError(f"regression loss must be 'mse' or 'l1', not {loss!r}")
        self.name = loss

    def fit_targets(self, y: np.ndarray) -> "RegressionObjective":
        y = np.asarray(y, dtype=float)
        self.mu_ = float(np.mean(y))
        self.sd_ = float(np.std(y)) or 1.0
        return self

    def target_tensor(self, y: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(((np.asarray(y, dtype=float) - self.mu_) / self.sd_).astype(np.float32).reshape(-1, 1))

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, y) if self.name == "mse" else F.l1_loss(out, y)

    def calibrate(self, out_train: np.ndarray) -> None:
        pass

    def predict(self, out: np.ndarray):
        return out[:, 0].astype(float) * self.sd_ + self.mu_, None, None


def make_objective(kind: str, *, n_labels: int = 1, survival: str = "cox", n_bins: int = 10,
                   regression_loss: str = "l1"):
    """The objective of a task kind.

    Args:
        kind: binary | multilabel | survival | regression.
        n_labels: labels of a multilabel task.
        survival: "cox", "discrete" or "weibull" (survival tasks).
        n_bins: intervals of the discrete-time head.
        regression_loss: "l1" or "mse".

    Returns:
        An objective (fit_targets, target_tensor, loss, calibrate, predict, n_outputs).
    """
    if kind not in _OBJECTIVES:
        raise ValueError(f"unknown task kind {kind!r}")
    return _OBJECTIVES[kind](n_labels=n_labels, survival=survival, n_bins=n_bins, regression_loss=regression_loss)


def _survival_objective(*, survival: str, n_bins: int, **_) -> Any:
    """Cox (partial likelihood), discrete-time or Weibull head."""
    if survival == "cox":
        return CoxObjective()
    if survival == "discrete":
        return DiscreteTimeObjective(n_bins)
    if survival == "weibull":
        return WeibullObjective()
    raise ValueError(f"survival head must be 'cox', 'discrete' or 'weibull', not {survival!r}")


# kind name -> objective factory (the torch loss is this family's library API, so the table lives here)
_OBJECTIVES = {
    "binary": lambda **_: BinaryObjective(),
    "multilabel": lambda *, n_labels, **_: MultilabelObjective(n_labels),
    "regression": lambda *, regression_loss, **_: RegressionObjective(regression_loss),
    "survival": _survival_objective,
}
