"""The estimator behind `medcam`, `cxr_supervised` and `cxr_simclr`: one CNN image encoder,
optionally pretrained, then fine-tuned image-only (encoders.medcam.finetune).

    pretrain="medcam"    base encoder = a local weights file ($MEHR_BENCH_WEIGHTS_MEDCAM_CXR) when set,
                         else SimCLR on the training images (our stand-in for the paper's pretrained
                         CXR model); then MedCAM alignment with the ICU time series of the training
                         rows that have one (encoders.medcam.pretrain); then fine-tuning.
    pretrain="simclr"    SimCLR for the same total pretraining epochs as medcam's SimCLR + alignment.
    pretrain="none"      the same CNN from random initialisation, fine-tuning only.

The learning protocol is the benchmark's: the cell's folds (`cell_folds` over train + tuning rows,
subject-grouped, seeded from the cell seed); fold 0's validation part is the validation set of
early stopping and of the lr choice, the other folds' rows are trained on (pretraining included:
the validation rows never shape the encoder). The lr grid is the search space, the first
min(n_trials, 3) values are tried. Epochs follow the budget (`schedule`).

Each sample's image is its most recent CXR study visible at the prediction time (leakage guard);
a sample without one gets a blank image. `predict` reads only the CXR images: no EHR at test time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from benchmark.errors import UserError
from benchmark.learn import cell_folds, derive_seed
from benchmark.model_api import Budget, Prediction, TaskData
from encoders.medcam.cnn import IMAGE_SIZE, load_encoder, make_cnn, read_images, weights_from_env
from encoders.medcam.finetune import LR_GRID, finetune, predict_proba

MODALITY = "cxr"
PRETRAIN = ("medcam", "simclr", "none")


def schedule(budget: Budget | None) -> dict[str, int]:
    """Epochs per budget: fine-tuning cap = min(200, max_iterations / 5) (smoke 12, default 60,
    full 200 = the paper's 200); total pretraining epochs = the same number (medcam splits them
    half SimCLR, half alignment; cxr_simclr spends all on SimCLR)."""
    it = budget.max_iterations if budget is not None else 60
    ft = int(min(200, max(5, it // 5)))
    return {"finetune": ft, "pretrain": ft}


def sample_images(data: TaskData, split: str | tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The most recent visible CXR of each sample of a split (label order).

    Returns:
        (uint8 [n, S, S] images, bool [n] has an image).
    """
    side = data.cohort.root / "modalities" / f"{MODALITY}.parquet"
    if "path" not in data.cohort.modality(MODALITY).collect_schema().names():
        raise UserError(f"modality {MODALITY!r} has no image files (no `path` column)", file=side, field="path",
                        fix="generate the cohort with images, or convert MIMIC-CXR with its JPG files")
    samples = data.samples(split).with_row_index("row")
    vis = (data.visible_modality(MODALITY, split).filter(pl.col("path").is_not_null())
           .select("subject_id", "prediction_time", "time", "path").collect()
           .sort("subject_id", "prediction_time", "time", "path")
           .group_by("subject_id", "prediction_time", maintain_order=True).last())
    rows = samples.join(vis, on=["subject_id", "prediction_time"], how="left").sort("row")
    has = rows["path"].is_not_null().to_numpy()
    images = np.zeros((samples.height, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    paths = [data.cohort.sidecar_file(p, MODALITY) for p in rows["path"].drop_nulls().to_list()]
    if paths:
        images[has] = read_images(paths)
    return images, has


class ImageOnlyClassifier:
    """Image-only classifier (binary / multilabel) on one CNN; see the module docstring.

    Args:
        pretrain: "medcam" | "simclr" | "none".
        budget: the run budget.
        seed: the cell seed.
        name: registry name (recorded in info).
        k: top-k EHR steps of MedCAM's local loss.
        tau: temperature of the alignment losses.
    """

    def __init__(self, pretrain: str, budget: Budget | None = None, seed: int = 0, name: str = "",
                 k: int = 10, tau: float = 0.1):
        if pretrain not in PRETRAIN:
            raise ValueError(f"pretrain must be one of {PRETRAIN}, not {pretrain!r}")
        self.pretrain, self.budget, self.seed, self.name, self.k, self.tau = pretrain, budget, seed, name, k, tau

    # ------------------------------------------------------------------ fit
    def fit(self, data: TaskData) -> "ImageOnlyClassifier":
        import torch

        kind = data.task.kind
        if kind not in ("binary", "multilabel"):
            raise UserError(f"{self.name} classifies images: task {data.task.name} is {kind}",
                            fix="run it on a binary or multilabel task (e.g. cxr/chexpert_multilabel)")
        self.kind_, self.labels_ = kind, list(data.task.label_names())
        splits = ("train", "tuning")
        images, has = sample_images(data, splits)
        y = data.y(splits)
        groups = data.samples(splits)["subject_id"].to_numpy()
        n_folds = self.budget.n_folds if self.budget is not None else 3
        tr, va = cell_folds(kind, y, groups, n_folds, self.seed)[0]
        sched = schedule(self.budget)
        n_trials = self.budget.n_trials if self.budget is not None else 1
        with torch.random.fork_rng():
            torch.manual_seed(derive_seed(self.seed, self.name, "init"))
            cnn = make_cnn()
        info: dict = {"schedule": sched, "n_train": int(len(tr)), "n_val": int(len(va)),
                      "n_without_image": int((~has).sum())}
        pre_imgs = images[tr[has[tr]]]
        if self.pretrain == "simclr":
            info["simclr"] = self._simclr(cnn, pre_imgs, sched["pretrain"])
        elif self.pretrain == "medcam":
            w = weights_from_env()
            if w is not None:
                load_encoder(cnn, w)
                info["base_encoder"] = f"weights file {w.name}"
            else:
                info["base_encoder"] = "SimCLR on the training images"
                info["simclr"] = self._simclr(cnn, pre_imgs, sched["pretrain"] // 2)
            info["alignment"] = self._align(cnn, data, images, has, tr, sched["pretrain"] - sched["pretrain"] // 2)
        lrs = LR_GRID[:max(1, min(n_trials, len(LR_GRID)))]
        self.cnn_, self.head_, ft = finetune(cnn, images, y, tr, va, kind, lrs=lrs, max_epochs=sched["finetune"],
                                             seed=derive_seed(self.seed, self.name, "finetune"))
        info["finetune"] = ft
        self.info_ = info
        return self

    def _simclr(self, cnn, images: np.ndarray, epochs: int) -> dict:
        from encoders.medcam.simclr import simclr_pretrain
        return simclr_pretrain(cnn, images, epochs=epochs, seed=derive_seed(self.seed, self.name, "simclr"))

    def _align(self, cnn, data: TaskData, images: np.ndarray, has: np.ndarray, tr: np.ndarray, epochs: int) -> dict:
        from encoders.cache import split_rows
        from encoders.medcam.pretrain import align
        from encoders.timeline import timeline_features

        tl = timeline_features(data)          # all label rows; the guard applies per sample
        rows = split_rows(data, ("train", "tuning"))
        present = tl.present[rows]
        use = tr[has[tr] & present[tr]]
        out = align(cnn, images[use], tl.x[rows][use], epochs=epochs, k=self.k, tau=self.tau,
                    seed=derive_seed(self.seed, self.name, "align"))
        return {**out, "k": self.k, "tau": self.tau, "n_steps": int(tl.x.shape[1]), "n_features": int(tl.x.shape[2])}

    # ------------------------------------------------------------------ predict
    def _proba(self, images: np.ndarray) -> np.ndarray:
        import torch
        with torch.no_grad():
            return predict_proba(self.cnn_, self.head_, images, self.kind_)

    def predict(self, data: TaskData, split: str) -> Prediction:
        """Scores of a split's samples from their CXR alone (no EHR is read)."""
        images, has = sample_images(data, split)
        info = {"modalities_used": [MODALITY], "n_parameters": self.n_parameters, "pretrain": self.pretrain,
                "n_without_image": int((~has).sum()), **self.info_}
        return Prediction(score=self._proba(images), info=info)

    def predict_images(self, paths: list[Path]) -> np.ndarray:
        """The ImagePredictor protocol: probabilities [n, n_labels] (task outcome order) of image files."""
        p = self._proba(read_images([Path(q) for q in paths]))
        return p.reshape(len(paths), -1)

    @property
    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.cnn_.parameters()) + sum(p.numel() for p in self.head_.parameters()))
