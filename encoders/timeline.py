"""Clinical time series before the prediction time: 2-hour bins, carry-forward, normal-value fill.

Following the MIMIC-III benchmark of Harutyunyan et al. 2019 ("Multitask learning and
benchmarking with clinical time series data", Sci Data 6:96): numeric codes (vitals and labs, e.g.
LOINC) seen through the leakage guard in the ``window_hours`` before the prediction time are
resampled into ``bin_hours`` bins (the last value in a bin wins); a bin without a measurement
carries the previous bin's value forward; bins before the first measurement get the code's
"normal" value, the median of the training samples' measurements; values are standardized with
the training mean/std; a 0/1 channel per code says whether the bin held a real measurement. With
at most 38 codes that is at most 76 features per bin (the benchmark's 76).

`timeline_features` returns x [n, T, F] (T = window/bin, oldest bin first, F = 2 * codes: values
then masks) and observed [n, T] (any measurement in the bin). `RNNEncoder` is the GRU/LSTM that
the `timeline_gru` / `timeline_lstm` models train on the task's training split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from benchmark.model_api import TaskData
from encoders.cache import all_splits, cached_arrays, sample_table, split_rows, with_sample_index

VERSION = "2"  # 2: inputs without non-static null-time rows (issue 12)
MAX_CODES = 38  # 38 values + 38 masks = 76 features per bin


@dataclass
class Timeline:
    """Binned time series aligned with TaskData.labels rows."""

    x: np.ndarray          # [n, T, 2V] float32: standardized values (V), then observed masks (V)
    observed: np.ndarray   # [n, T] bool: the bin holds at least one measurement
    codes: list[str]       # the V codes, in feature order
    bin_hours: float

    @property
    def present(self) -> np.ndarray:
        """[n] bool: at least one measurement in the window."""
        return self.observed.any(axis=1)

    def summary(self) -> np.ndarray:
        """[n, 5V] per code: last, mean, min, max of the (filled) values and the fraction of bins observed.

        The flat input of the non-sequence heads (concat_lr, late_fusion, contrastive).
        """
        v = len(self.codes)
        vals, mask = self.x[:, :, :v], self.x[:, :, v:]
        return np.concatenate([vals[:, -1], vals.mean(1), vals.min(1), vals.max(1), mask.mean(1)],
                              axis=1).astype(np.float32)


def timeline_features(data: TaskData, *, window_hours: float = 48, bin_hours: float = 2,
                      max_codes: int = MAX_CODES, min_sample_frac: float = 0.01, cache: bool = True) -> Timeline:
    """Build (or load) the binned time series of every sample.

    Args:
        data: the task's samples; events pass through `TaskData.visible_events`.
        window_hours: hours before the prediction time covered (24 or 48 in the benchmark).
        bin_hours: bin width.
        max_codes: at most this many numeric codes (the most frequent in training windows).
        min_sample_frac: keep codes measured in the window of at least this fraction of training samples.
        cache: read/write the on-disk cache.

    Returns:
        Timeline aligned with data.labels rows.
    """
    config = {"window_hours": window_hours, "bin_hours": bin_hours, "max_codes": max_codes,
              "min_sample_frac": min_sample_frac}
    arrays = cached_arrays(data, "timeline", VERSION, config,
                           lambda: _compute(data, window_hours, bin_hours, max_codes, min_sample_frac), cache=cache)
    codes = [str(c) for c in arrays["codes"].tolist()]
    return Timeline(arrays["x"], arrays["observed"].astype(bool), codes, bin_hours)


def _compute(data: TaskData, window_hours: float, bin_hours: float, max_codes: int,
             min_sample_frac: float) -> dict[str, np.ndarray]:
    samples, row_to_sample = sample_table(data)
    n_bins = int(round(window_hours / bin_hours))
    bin_us = int(bin_hours * 3600 * 1e6)
    win_us = n_bins * bin_us
    vis = (with_sample_index(data.visible_events(all_splits(data)), samples)
           .filter(pl.col("numeric_value").is_not_null() & pl.col("time").is_not_null()
                   & pl.col("numeric_value").is_finite())
           .with_columns(((pl.col("prediction_time") - pl.col("time")).dt.total_microseconds()).alias("ago"))
           # ago >= 0 always holds behind the guard; kept as a second line of defence
           .filter((pl.col("ago") >= 0) & (pl.col("ago") < win_us))
           # bin 0 = oldest, n_bins - 1 = the bin ending at the prediction time
           .with_columns((n_bins - 1 - pl.col("ago") // bin_us).cast(pl.Int64).alias("bin"))
           .select("sample", "time", "code", "numeric_value", "bin")
           .collect())
    # vocabulary: numeric codes measured in the windows of training samples
    train_samples = np.unique(row_to_sample[split_rows(data, "train")])
    train_mask = np.zeros(samples.height, dtype=bool)
    train_mask[train_samples] = True
    vis = vis.with_columns(pl.Series("is_train", train_mask[vis["sample"].to_numpy()]))
    n_train = max(len(train_samples), 1)
    freq = (vis.filter(pl.col("is_train")).group_by("code").agg(pl.col("sample").n_unique().alias("k"))
            .filter(pl.col("k") >= min_sample_frac * n_train).sort(["k", "code"], descending=[True, False]))
    codes = sorted(freq["code"].head(max_codes).to_list())
    v = len(codes)
    m = samples.height
    vals = np.full((m, n_bins, v), np.nan, dtype=np.float64)
    if v:
        code_idx = pl.DataFrame({"code": codes, "c": np.arange(v, dtype=np.int64)})
        last = (vis.join(code_idx, on="code", how="inner")
                .sort("sample", "bin", "c", "time", "numeric_value")
                .group_by("sample", "bin", "c", maintain_order=True).agg(pl.col("numeric_value").last())
                .join(pl.DataFrame({"sample": np.arange(m, dtype=np.int64), "is_train": train_mask}), on="sample"))
        vals[last["sample"].to_numpy(), last["bin"].to_numpy(), last["c"].to_numpy()] = last["numeric_value"].to_numpy()
        tr = last.filter(pl.col("is_train"))
        stats = tr.group_by("c").agg(pl.col("numeric_value").median().alias("med"),
                                     pl.col("numeric_value").mean().alias("mu"),
                                     pl.col("numeric_value").std().alias("sd")).sort("c")
        med = np.zeros(v)
        mu = np.zeros(v)
        sd = np.ones(v)
        ci = stats["c"].to_numpy()
        med[ci] = stats["med"].to_numpy()
        mu[ci] = stats["mu"].to_numpy()
        s = stats["sd"].fill_null(1.0).to_numpy()
        sd[ci] = np.where(np.isfinite(s) & (s > 1e-8), s, 1.0)
    else:
        med, mu, sd = np.zeros(0), np.zeros(0), np.ones(0)
    mask = ~np.isnan(vals)
    filled = _carry_forward(vals)
    filled = np.where(np.isnan(filled), med[None, None, :], filled)
    z = np.clip((filled - mu) / sd, -10, 10)
    x = np.concatenate([z, mask.astype(np.float64)], axis=2).astype(np.float32)
    observed = mask.any(axis=2)
    return {"x": x[row_to_sample], "observed": observed[row_to_sample], "codes": np.array(codes, dtype=str)}


def _carry_forward(a: np.ndarray) -> np.ndarray:
    """Forward-fill NaNs along axis 1 (time) of [m, T, V]."""
    m, t, v = a.shape
    idx = np.where(~np.isnan(a), np.arange(t)[None, :, None], 0)
    np.maximum.accumulate(idx, axis=1, out=idx)
    out = np.take_along_axis(a, idx, axis=1)
    return out


def _torch():
    import torch
    return torch


def make_rnn_encoder(n_features: int, hidden: int = 64, cell: str = "gru", n_layers: int = 1, dropout: float = 0.0):
    """A GRU/LSTM over the bins (oldest first); returns the last hidden state.

    Args:
        n_features: F, features per bin.
        hidden: hidden size.
        cell: "gru" (Cho et al. 2014) or "lstm" (Hochreiter & Schmidhuber 1997), as in the LSTM
            baselines of Harutyunyan et al. 2019.
        n_layers: stacked layers.
        dropout: dropout between layers.

    Returns:
        nn.Module mapping x [B, T, F] -> h [B, hidden].
    """
    torch = _torch()
    nn = torch.nn

    class RNNEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            rnn = nn.GRU if cell == "gru" else nn.LSTM
            self.rnn = rnn(n_features, hidden, num_layers=n_layers, batch_first=True,
                           dropout=dropout if n_layers > 1 else 0.0)
            self.out_dim = hidden

        def forward(self, x):  # x [B, T, F]
            out, _ = self.rnn(x)
            return out[:, -1]   # [B, hidden]: state after the bin ending at the prediction time

    if cell not in ("gru", "lstm"):
        raise ValueError(f"cell must be 'gru' or 'lstm', not {cell!r}")
    return RNNEncoder()
