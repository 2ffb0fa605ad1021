"""Turn a TaskData into the standardized arrays the fusion heads read.

Inputs of one sample (everything through the leakage guard, via the encoders):

* ``ehr``     [De]       structured EHR from `InputConfig.ehr_source` (encoders/fusion/ehr_sources.py):
                         "bag" (default) the bag-of-events features of `benchmark.features.bag_of_events`
                         (counts as log1p, last lab values, demographics); "fm" a foundation model's
                         frozen patient vector; "curated" the task's binarized risk factors; standardized;
* ``ts``      [T, F]     the binned time series of `encoders.timeline` (already standardized),
  ``ts_obs``  [T]        bins at or after the first measurement (attention masks the others),
  ``ts_sum``  [5V]       its per-code summary (last, mean, min, max, fraction observed), standardized;
* per side modality m (ct, wsi, cxr, note, prs): ``m.mean`` [d], ``m.seq`` [K, d], ``m.seq_mask`` [K],
  ``m.present`` (at least one visible study), standardized with the training rows that have it.

Each modality's source is configurable: ``precomputed`` (sidecar embeddings, the default),
``text_minilm`` (note text through sentence-transformers) or an image encoder name
(``image_resnet50``, ``image_densenet121``, ``image_clip_vit_b32``) for image files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from benchmark.model_api import TaskData
from benchmark.vocabulary import SIDE_MODALITIES
from encoders.cache import all_splits
from encoders.fusion.ehr_sources import DEMOGRAPHIC_PREFIXES, EHR_SOURCES, ehr_block, ehr_column_mask  # noqa: F401


@dataclass
class InputConfig:
    """Which inputs a head reads and where each modality comes from.

    Attributes:
        structured: include the EHR vector (array ``ehr``).
        ehr_source: where it comes from: "bag" (the bag of events), "fm" (the frozen patient vector of
            the registered model `ehr_fm_model`, benchmark.model_api.Representer) or "curated" (the
            task's `risk_factors`, 0/1); see encoders/fusion/ehr_sources.py.
        ehr_fm_model: the foundation model of the "fm" source (default "ehrt").
        ehr_fm_budget: the budget level that model is built with ("smoke", "default", "full"; its
            pretraining size and steps); None = the run's budget (FusionModel fills it in; smoke
            outside a run).
        ehr_columns: which bag-of-events columns ("bag" source only): "all", or "demographics" (sex, age at the prediction time,
            race and ethnicity one-hot: the static inputs of the multimodal public EHR benchmark's
            recipe, without code counts, last values or the age at the first event).
        timeline: include the binned time series (and its summary).
        modalities: side modalities to read (only those the task offers are used).
        sources: modality -> "precomputed" | "text_minilm" | image encoder name | "module:function"
            (your own per-study encoder, encoders/custom.py).
        window_hours: time-series window before the prediction time.
        max_studies: K most recent studies kept as tokens.
        pooling: the per-modality vector of the non-attention heads: "mean" of all visible studies,
            the "last" (most recent) study, or "auto" (the default): "last" for a modality whose
            study IS the sample (at least half of the samples have a study at exactly their
            prediction time, e.g. CheXpert's one prediction per X-ray), else "mean" (the MEHRT paper's
            average of the subject's studies up to the prediction time).
        encoder_kw: extra keyword arguments for image/text encoders (weights, allow_random_init, image_size).
    """

    structured: bool = True
    ehr_source: str = "bag"
    ehr_fm_model: str = "ehrt"
    ehr_fm_budget: str | None = None
    ehr_columns: str = "all"
    timeline: bool = True
    modalities: tuple[str, ...] = SIDE_MODALITIES
    sources: dict[str, str] = field(default_factory=dict)
    window_hours: float = 48
    max_studies: int = 4
    pooling: str = "auto"
    encoder_kw: dict = field(default_factory=dict)


class FusionInputs:
    """Standardized input arrays of n samples (dict of numpy arrays), sliceable and torch-convertible."""

    def __init__(self, arrays: dict[str, np.ndarray], modalities: tuple[str, ...]):
        self.arrays = arrays
        self.modalities = tuple(modalities)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def take(self, idx: np.ndarray) -> "FusionInputs":
        """Rows idx of every array."""
        return FusionInputs({k: v[idx] for k, v in self.arrays.items()}, self.modalities)

    def to_torch(self) -> dict:
        """Dict of torch tensors (float32, bool masks)."""
        import torch
        return {k: torch.as_tensor(v) for k, v in self.arrays.items()}

    def spec(self) -> dict:
        """Shapes the heads are built from: ehr_dim, ts_shape, ts_sum_dim, modalities {name: (d, K)}."""
        a = self.arrays
        return {"ehr_dim": a["ehr"].shape[1] if "ehr" in a else 0,
                "ts_shape": tuple(a["ts"].shape[1:]) if "ts" in a else None,
                "ts_sum_dim": a["ts_sum"].shape[1] if "ts_sum" in a else 0,
                "modalities": {m: (a[f"{m}.mean"].shape[1], a[f"{m}.seq"].shape[1]) for m in self.modalities}}

    def masked(self, modality: str, rows: np.ndarray) -> "FusionInputs":
        """A copy where the rows marked True have no `modality` (as samples without any study):
        not present, no study tokens, zero vectors, so a head uses its learned missing token."""
        if modality not in self.modalities:
            raise ValueError(f"cannot mask {modality!r}: the inputs have {list(self.modalities)}")
        rows = np.asarray(rows, dtype=bool)
        a = dict(self.arrays)
        a[f"{modality}.present"] = a[f"{modality}.present"] & ~rows
        a[f"{modality}.seq_mask"] = a[f"{modality}.seq_mask"] & ~rows[:, None]
        a[f"{modality}.mean"] = np.where(rows[:, None], 0, a[f"{modality}.mean"]).astype(np.float32)
        a[f"{modality}.seq"] = np.where(rows[:, None, None], 0, a[f"{modality}.seq"]).astype(np.float32)
        return FusionInputs(a, self.modalities)

    def presence(self) -> dict[str, float]:
        """Fraction of samples with each side modality (and a time series)."""
        out = {m: float(self.arrays[f"{m}.present"].mean()) if len(self) else 0.0 for m in self.modalities}
        if "ts_obs" in self.arrays:
            out["timeline"] = float(self.arrays["ts_obs"].any(1).mean()) if len(self) else 0.0
        return out


def raw_inputs(data: TaskData, cfg: InputConfig) -> tuple[dict[str, np.ndarray], tuple[str, ...], dict]:
    """Unscaled, label-aligned arrays of every input the config asks for (cached encoders).

    Args:
        data: the task data.
        cfg: the input configuration.

    Returns:
        (arrays, side modalities used, info with feature names / sources).
    """
    arrays: dict[str, np.ndarray] = {}
    info: dict = {"sources": {}}
    if cfg.structured:
        # the configured EHR source (bag of events, foundation-model vector or curated risk factors)
        X, names, extra = ehr_block(data, cfg)
        arrays["ehr"] = X
        info["ehr_names"] = names
        info["ehr_source"] = cfg.ehr_source
        info.update(extra)
    if cfg.timeline:
        from encoders.timeline import timeline_features
        tl = timeline_features(data, window_hours=cfg.window_hours)
        arrays["ts"] = tl.x
        # mask bins before the first measurement (pure normal-value fill carries no information)
        arrays["ts_obs"] = np.maximum.accumulate(tl.observed, axis=1)
        arrays["ts_sum"] = tl.summary()
        info["ts_codes"] = tl.codes
    used = []
    offered = set(data.task.modalities)
    for m in cfg.modalities:
        if m not in offered:
            continue
        src = cfg.sources.get(m, "precomputed")
        enc = encode_modality(data, m, src, cfg)
        if enc is None:
            continue
        used.append(m)
        info["sources"][m] = src
        if cfg.pooling not in ("mean", "last", "auto"):
            raise ValueError(f"pooling must be 'mean', 'last' or 'auto', not {cfg.pooling!r}")
        pooling = cfg.pooling
        if pooling == "auto":
            pooling = "last" if study_at_index_share(data, m) >= 0.5 else "mean"
        info.setdefault("pooling", {})[m] = pooling
        arrays[f"{m}.mean"] = enc.mean if pooling == "mean" else enc.seq[:, 0]
        arrays[f"{m}.seq"] = enc.seq
        arrays[f"{m}.seq_mask"] = enc.seq_mask
        arrays[f"{m}.present"] = enc.present
    return arrays, tuple(used), info


def study_at_index_share(data: TaskData, modality: str) -> float:
    """Share of the task's samples that have a study of `modality` at exactly their prediction time
    (1.0 for a task indexed on that modality's studies, such as one prediction per chest X-ray)."""
    import polars as pl
    if modality not in data.cohort.modality_names():
        return 0.0
    samples = data.labels.select("subject_id", "prediction_time").unique()
    if samples.height == 0:
        return 0.0
    at = (data.visible_modality(modality, all_splits(data))
          .filter(pl.col("time") == pl.col("prediction_time"))
          .select("subject_id", "prediction_time").unique().collect())
    return at.height / samples.height


def encode_modality(data: TaskData, modality: str, source: str, cfg: InputConfig):
    """Encode one side modality with its configured source.

    Args:
        data: the task data.
        modality: sidecar name.
        source: "precomputed", "text_minilm", an image encoder name, or "module:function" (your own,
            see encoders/custom.py).
        cfg: input configuration (max_studies, encoder_kw).

    Returns:
        ModalityEncoding, or None when the cohort has no such sidecar.
    """
    if source == "precomputed":
        if modality not in data.cohort.modality_names():
            return None
        from encoders.precomputed import encode_precomputed
        return encode_precomputed(data, modality, max_studies=cfg.max_studies)
    if source == "text_minilm":
        from encoders.text import encode_notes
        kw = {k: v for k, v in cfg.encoder_kw.items() if k in ("model_path",)}
        return encode_notes(data, max_notes=cfg.max_studies, **kw)
    if ":" in source:  # a user function "module:function" (encoders/custom.py)
        from encoders.custom import encode_custom
        return encode_custom(data, modality, source, max_studies=cfg.max_studies)
    from encoders.image import IMAGE_ENCODERS, encode_images
    if source in IMAGE_ENCODERS:
        kw = {k: v for k, v in cfg.encoder_kw.items() if k in ("weights", "allow_random_init", "image_size")}
        return encode_images(data, source, modality=modality, max_studies=cfg.max_studies, **kw)
    raise ValueError(f"unknown source {source!r} for modality {modality!r}")


def _mean_sd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(x) == 0:
        return np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)
    mu = x.mean(0)
    sd = x.std(0)
    return mu.astype(np.float32), np.where(sd > 1e-6, sd, 1.0).astype(np.float32)


class InputScaler:
    """Standardization fitted on the training rows (scikit-learn style: fitted state ends in _)."""

    def fit(self, arrays: dict[str, np.ndarray], modalities: tuple[str, ...], train_rows: np.ndarray) -> "InputScaler":
        """Learn means/stds from the training rows.

        Args:
            arrays: from `raw_inputs`.
            modalities: side modalities present in arrays.
            train_rows: row indices of the training split.

        Returns:
            self.
        """
        self.modalities_ = tuple(modalities)
        self.stats_ = {}
        if "ehr" in arrays:
            mu, sd = _mean_sd(arrays["ehr"][train_rows])
            # drop columns that are constant on the training split
            keep = arrays["ehr"][train_rows].std(0) > 1e-6 if len(train_rows) else np.ones(len(mu), bool)
            self.ehr_keep_ = np.flatnonzero(keep)
            self.stats_["ehr"] = (mu[self.ehr_keep_], sd[self.ehr_keep_])
        if "ts_sum" in arrays:
            self.stats_["ts_sum"] = _mean_sd(arrays["ts_sum"][train_rows])
        for m in self.modalities_:
            pres = arrays[f"{m}.present"][train_rows]
            self.stats_[m] = _mean_sd(arrays[f"{m}.mean"][train_rows][pres])
        return self

    def transform(self, arrays: dict[str, np.ndarray], rows: np.ndarray) -> FusionInputs:
        """Standardized inputs of some rows.

        Args:
            arrays: from `raw_inputs` (label-aligned).
            rows: row indices to return.

        Returns:
            FusionInputs.
        """
        out: dict[str, np.ndarray] = {}
        if "ehr" in arrays:
            mu, sd = self.stats_["ehr"]
            out["ehr"] = np.clip((arrays["ehr"][rows][:, self.ehr_keep_] - mu) / sd, -10, 10).astype(np.float32)
        if "ts" in arrays:
            out["ts"] = arrays["ts"][rows].astype(np.float32)
            out["ts_obs"] = arrays["ts_obs"][rows].astype(bool)
            mu, sd = self.stats_["ts_sum"]
            out["ts_sum"] = np.clip((arrays["ts_sum"][rows] - mu) / sd, -10, 10).astype(np.float32)
        for m in self.modalities_:
            mu, sd = self.stats_[m]
            pres = arrays[f"{m}.present"][rows].astype(bool)
            smask = arrays[f"{m}.seq_mask"][rows].astype(bool)
            out[f"{m}.mean"] = np.where(pres[:, None], (arrays[f"{m}.mean"][rows] - mu) / sd, 0).astype(np.float32)
            out[f"{m}.seq"] = np.where(smask[:, :, None], (arrays[f"{m}.seq"][rows] - mu) / sd, 0).astype(np.float32)
            out[f"{m}.seq_mask"] = smask
            out[f"{m}.present"] = pres
        return FusionInputs(out, self.modalities_)
