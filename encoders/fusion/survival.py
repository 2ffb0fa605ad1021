"""Survival heads: Cox proportional hazards, logistic-hazard discrete time and Weibull (TorchSurv).

Each turns a network's output into the runner's survival contract: a risk score per sample
(higher = earlier event) and survival curves ``surv_prob [n, k]`` at ``surv_times [k]`` days.

* `CoxObjective` (Cox 1972; DeepSurv, Katzman et al. 2018): one output r = log hazard ratio,
  trained with the Breslow partial likelihood (`losses.cox_ph_loss`) over the risk sets of each
  minibatch (Kvamme et al. 2019 show minibatch risk sets work). Curves from Breslow's baseline
  cumulative hazard on the training split: S(t | x) = exp(-H0(t) exp(r)).
* `DiscreteTimeObjective` (Gensheimer & Narasimhan 2019; Kvamme & Borgan 2021): K outputs =
  hazard logits of K intervals cut at quantiles of the training event times; trained with
  `losses.discrete_time_nll`. S at the interval ends is the product of (1 - h); between ends the
  hazard is spread evenly (piecewise-constant hazard interpolation). Risk = minus the restricted
  mean survival time up to the last cut, -sum_j S(tau_j) (tau_j - tau_{j-1}).
* `WeibullObjective` (the survival objective of "Fusion is not one-size-fits-all: Cross-Modal
  Representation Alignment for Time-to-Event Modeling", whose L_TTE = -sum_i log p(T_i, delta_i | h_i)
  is a full likelihood of each subject's time and censoring indicator): 2 outputs = Weibull log scale
  (in units of the training median follow-up) and log shape per sample, trained with TorchSurv's
  `neg_log_likelihood_weibull` (the library the paper cites): -[delta log h(T) - H(T)] per subject,
  averaged. Curves S(t) = exp(-(t / lambda)^rho); risk = minus the log median survival time.

Evaluation times (``surv_times``) are the 25th, 50th and 75th percentiles of the training event
times, the same convention the runner uses when a model gives no curves.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.learn.cox import Breslow
from encoders.fusion.losses import cox_ph_loss, discrete_time_nll, weibull_nll

EVAL_QUANTILES = (0.25, 0.5, 0.75)


def eval_times(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Days at which curves are reported: quantiles of the training event times (whole days).

    Args:
        time: [n] training times (days).
        event: [n] training events.

    Returns:
        [k] increasing times.
    """
    ev = time[event > 0]
    if len(ev) == 0:
        ev = time
    return np.unique(np.maximum(np.round(np.quantile(ev, EVAL_QUANTILES)), 1.0))


class CoxObjective:
    """Cox partial-likelihood head (one output)."""

    kind = "survival"
    name = "cox"
    n_outputs = 1

    def fit_targets(self, y: np.ndarray) -> "CoxObjective":
        """Remember the training targets (time, event) for Breslow's baseline and eval times.

        Args:
            y: [n, 2] (days, event).

        Returns:
            self.
        """
        self.train_time_ = y[:, 0].astype(float)
        self.train_event_ = y[:, 1].astype(float)
        self.surv_times_ = eval_times(self.train_time_, self.train_event_)
        return self

    def target_tensor(self, y: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(y, dtype=np.float32))

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return cox_ph_loss(out[:, 0], y[:, 0], y[:, 1])

    def calibrate(self, out_train: np.ndarray) -> None:
        """Breslow baseline cumulative hazard from the training risks (benchmark.learn.cox.Breslow).

        H0(t) = sum_{event times s <= t} d_s / sum_{j: t_j >= s} exp(r_j - c), with c the mean
        training risk (subtracted for numerical stability; scores are shifted by the same c).

        Args:
            out_train: [n, 1] outputs on the training split.
        """
        self.breslow_ = Breslow().fit(out_train[:, 0].astype(float), self.train_time_, self.train_event_)

    def predict(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Risk scores and survival curves.

        Args:
            out: [n, 1] network outputs.

        Returns:
            (risk [n], surv_times [k], surv_prob [n, k]).
        """
        r = out[:, 0].astype(float)
        surv = self.breslow_.survival(r, self.surv_times_)
        return r, self.surv_times_.copy(), surv


class DiscreteTimeObjective:
    """Logistic-hazard discrete-time head (K outputs)."""

    kind = "survival"
    name = "discrete"

    def __init__(self, n_bins: int = 10):
        self.n_bins = n_bins

    @property
    def n_outputs(self) -> int:
        return self.n_outputs_

    def fit_targets(self, y: np.ndarray) -> "DiscreteTimeObjective":
        """Cut time into intervals at quantiles of the training event times.

        Args:
            y: [n, 2] (days, event).

        Returns:
            self.
        """
        t, e = y[:, 0].astype(float), y[:, 1].astype(float)
        ev = t[e > 0] if (e > 0).any() else t
        inner = np.unique(np.quantile(ev, np.linspace(0, 1, self.n_bins + 1)[1:-1]))
        tmax = float(t.max())
        inner = inner[(inner > 0) & (inner < tmax)]
        self.cuts_ = np.r_[0.0, inner, tmax]               # K + 1 edges, intervals (c_{j-1}, c_j]
        self.n_outputs_ = len(self.cuts_) - 1
        self.surv_times_ = eval_times(t, e)
        return self

    def bin_index(self, time: np.ndarray) -> np.ndarray:
        """Interval of each time (times beyond the last cut go to the last interval)."""
        idx = np.searchsorted(self.cuts_, np.asarray(time, dtype=float), side="left") - 1
        return np.clip(idx, 0, self.n_outputs_ - 1)

    def target_tensor(self, y: np.ndarray) -> torch.Tensor:
        y = np.asarray(y, dtype=np.float64)
        return torch.as_tensor(np.column_stack([self.bin_index(y[:, 0]), y[:, 1]]).astype(np.float32))

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return discrete_time_nll(out, y[:, 0].long(), y[:, 1])

    def calibrate(self, out_train: np.ndarray) -> None:
        """Nothing to fit after training (curves come straight from the hazards)."""

    def curves(self, out: np.ndarray) -> np.ndarray:
        """[n, K] survival at the interval ends."""
        h = 1.0 / (1.0 + np.exp(-np.clip(out.astype(float), -50, 50)))
        return np.cumprod(1.0 - h, axis=1)

    def predict(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Risk (minus restricted mean survival time) and curves at surv_times.

        Args:
            out: [n, K] hazard logits.

        Returns:
            (risk [n], surv_times [k], surv_prob [n, k]).
        """
        s_end = self.curves(out)                                      # [n, K]
        widths = np.diff(self.cuts_)
        risk = -(s_end * widths[None, :]).sum(1)
        s_start = np.column_stack([np.ones(len(out)), s_end[:, :-1]])
        j = self.bin_index(self.surv_times_)
        frac = np.clip((self.surv_times_ - self.cuts_[j]) / np.maximum(widths[j], 1e-12), 0, 1)
        # piecewise-constant hazard within an interval: S(t) = S(start) * (S(end)/S(start))^frac
        ratio = np.where(s_start[:, j] > 0, s_end[:, j] / np.maximum(s_start[:, j], 1e-300), 0.0)
        surv = s_start[:, j] * ratio ** frac[None, :]
        return risk, self.surv_times_.copy(), surv


LOG_SHAPE_BOUND = 3.0   # |log rho| <= 3 (rho in [0.05, 20]): keeps exp((rho - 1) log t) finite


class WeibullObjective:
    """Weibull time-to-event head (2 outputs: log scale, log shape), TorchSurv's NLL."""

    kind = "survival"
    name = "weibull"
    n_outputs = 2

    def fit_targets(self, y: np.ndarray) -> "WeibullObjective":
        """Time unit = the training median follow-up (so log scale starts near 0), eval times.

        Args:
            y: [n, 2] (days, event).

        Returns:
            self.
        """
        t, e = y[:, 0].astype(float), y[:, 1].astype(float)
        pos = t[t > 0]
        self.unit_ = float(np.median(pos)) if len(pos) else 1.0
        self.surv_times_ = eval_times(t, e)
        return self

    def target_tensor(self, y: np.ndarray) -> torch.Tensor:
        y = np.asarray(y, dtype=np.float64)
        # a follow-up of 0 days (event on the index day) counts as half a day: log t must be finite
        t = np.maximum(y[:, 0], 0.5) / self.unit_
        return torch.as_tensor(np.column_stack([t, y[:, 1]]).astype(np.float32))

    def log_params(self, out: torch.Tensor) -> torch.Tensor:
        """[n, 2] (log scale, bounded log shape) from the network outputs."""
        return torch.stack([out[:, 0], LOG_SHAPE_BOUND * torch.tanh(out[:, 1] / LOG_SHAPE_BOUND)], 1)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return weibull_nll(self.log_params(out), y[:, 0], y[:, 1])

    explain_label = "risk = minus the log median survival time (Weibull)"

    def explain_output(self, out: np.ndarray) -> np.ndarray:
        """[n, 1] the risk score SHAP explains (the two raw outputs, log scale and log shape, are not
        on a risk scale and averaging them would mean nothing)."""
        return self.predict(out)[0][:, None]

    def calibrate(self, out_train: np.ndarray) -> None:
        """Nothing to fit after training (the curves are parametric)."""

    def predict(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Risk (minus the log median survival time) and curves at surv_times.

        Args:
            out: [n, 2] network outputs.

        Returns:
            (risk [n], surv_times [k], surv_prob [n, k]).
        """
        lp = self.log_params(torch.as_tensor(out, dtype=torch.float64)).numpy()
        log_scale = lp[:, 0] + np.log(self.unit_)                       # days
        rho = np.exp(lp[:, 1])
        risk = -(log_scale + np.log(np.log(2.0)) / rho)                  # median = lambda (ln 2)^(1/rho)
        z = np.exp(np.clip(rho[:, None] * (np.log(self.surv_times_)[None, :] - log_scale[:, None]), -50, 50))
        return risk, self.surv_times_.copy(), np.exp(-z)
