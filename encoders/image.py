"""Image encoders on the sidecar's image files: ResNet-50, DenseNet-121 (torchvision), CLIP ViT-B/32 (open_clip).

* ``image_resnet50``: He et al. 2016, "Deep residual learning for image recognition"; 2048-d
  global-average-pooled features (the classifier is removed).
* ``image_densenet121``: Huang et al. 2017, "Densely connected convolutional networks" (the
  CheXNet backbone, Rajpurkar et al. 2017); 1024-d pooled features.
* ``image_clip_vit_b32``: Radford et al. 2021, "Learning transferable visual models from natural
  language supervision"; open_clip (Cherti et al. 2023) ViT-B-32 image tower, 512-d.

No weights can be downloaded here: pretrained weights come from a local file, given by the
``weights`` argument or ``$MEHR_BENCH_WEIGHTS_<NAME>`` (e.g. ``MEHR_BENCH_WEIGHTS_IMAGE_RESNET50``):
a torchvision state dict (``.pth``/``.pt``/``.safetensors``, classifier keys optional) or an
open_clip checkpoint. Without weights an encoder REFUSES to run (a randomly initialised CNN is not
a result anyone should read on a leaderboard) unless random init is explicitly allowed with
``allow_random_init=True`` or ``MEHR_BENCH_ALLOW_RANDOM_WEIGHTS=1`` (tests only). The input size
is ``image_size`` / ``$MEHR_BENCH_IMAGE_SIZE`` (default 224, the pretraining resolution).

Images are read through the leakage guard (`TaskData.visible_modality`): only studies with time
<= the prediction time are opened. Each distinct file is encoded once; per sample the study
vectors are pooled like precomputed embeddings (mean + the K most recent as tokens).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from benchmark.errors import UserError
from benchmark.model_api import TaskData
from encoders.cache import all_splits, cached_arrays, sample_table, with_sample_index
from encoders.precomputed import ModalityEncoding, pool_studies, time_key

VERSION = "1"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImageEncoderInfo:
    """What an image encoder is: output size, normalisation, parameter count, reference."""

    name: str
    dim: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    n_parameters: int
    reference: str


IMAGE_ENCODERS = {
    "image_resnet50": ImageEncoderInfo("image_resnet50", 2048, IMAGENET_MEAN, IMAGENET_STD, 23_508_032,
                                       "He et al. 2016, Deep residual learning for image recognition"),
    "image_densenet121": ImageEncoderInfo("image_densenet121", 1024, IMAGENET_MEAN, IMAGENET_STD, 6_953_856,
                                          "Huang et al. 2017, Densely connected convolutional networks"),
    "image_clip_vit_b32": ImageEncoderInfo("image_clip_vit_b32", 512, CLIP_MEAN, CLIP_STD, 87_849_216,
                                           "Radford et al. 2021, CLIP; open_clip ViT-B-32 (Cherti et al. 2023)"),
}


def env_name(encoder: str) -> str:
    """The environment variable naming an encoder's weights file."""
    return "MEHR_BENCH_WEIGHTS_" + encoder.upper()


def resolve_weights(encoder: str, weights: str | Path | None, allow_random_init: bool | None) -> Path | None:
    """The local weights file of an encoder, or None for an allowed random init.

    Args:
        encoder: a key of IMAGE_ENCODERS.
        weights: explicit file (else $MEHR_BENCH_WEIGHTS_<NAME>).
        allow_random_init: allow running without weights (else $MEHR_BENCH_ALLOW_RANDOM_WEIGHTS == "1").

    Returns:
        The weights path, or None when random init is allowed and no file is given.

    Raises:
        UserError: no weights and random init not allowed, or the file does not exist.
    """
    w = weights or os.environ.get(env_name(encoder))
    if w:
        p = Path(w)
        if not p.is_file():
            raise UserError(f"weights file for {encoder} not found", file=p, field=env_name(encoder),
                            fix="point it at a local state-dict / checkpoint file")
        return p
    allow = allow_random_init if allow_random_init is not None else os.environ.get("MEHR_BENCH_ALLOW_RANDOM_WEIGHTS") == "1"
    if not allow:
        raise UserError(f"{encoder} has no pretrained weights and refuses to run with random ones",
                        field=env_name(encoder),
                        fix=f"set {env_name(encoder)}=/path/to/weights (no download is possible here); "
                            "random init is for tests only (MEHR_BENCH_ALLOW_RANDOM_WEIGHTS=1)")
    return None


def file_identity(path: Path | None) -> str:
    """Hash of a weights file's size and first/last MiB (fast; enters the cache key)."""
    if path is None:
        return "random-init-seed0"
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, path.stat().st_size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def _load_state_dict(path: Path) -> dict:
    import torch
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        sd = load_file(str(path))
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    return {k.removeprefix("module."): v for k, v in sd.items()}


def build_image_model(encoder: str, weights: Path | None, image_size: int = 224):
    """The feature extractor of an encoder (eval mode), weights loaded or seeded random init.

    Args:
        encoder: a key of IMAGE_ENCODERS.
        weights: local weights file, or None for random init (seeded with 0).
        image_size: input side (the ViT's position embeddings are resized to it; CNNs take any size).

    Returns:
        nn.Module mapping images [B, 3, H, W] (normalised) -> features [B, dim].
    """
    import torch
    if encoder not in IMAGE_ENCODERS:
        raise UserError(f"unknown image encoder {encoder!r}", fix="choose from " + ", ".join(IMAGE_ENCODERS))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        if encoder == "image_clip_vit_b32":
            import open_clip
            model = open_clip.create_model("ViT-B-32", pretrained=str(weights) if weights is not None else None,
                                           force_image_size=image_size)
            return _ClipImage(model.visual).eval()
        import torchvision
        net = getattr(torchvision.models, encoder.removeprefix("image_"))(weights=None)
        head = "fc" if encoder == "image_resnet50" else "classifier"
        if weights is not None:
            sd = {k: v for k, v in _load_state_dict(weights).items() if not k.startswith(head + ".")}
            missing, unexpected = net.load_state_dict(sd, strict=False)
            missing = [k for k in missing if not k.startswith(head + ".")]
            if missing or unexpected:
                raise UserError(f"weights do not fit {encoder}: {len(missing)} missing, {len(unexpected)} unexpected "
                                f"keys (e.g. {(missing + unexpected)[:3]})", file=weights,
                                fix=f"give a torchvision {encoder.removeprefix('image_')} state dict")
        setattr(net, head, torch.nn.Identity())
        return net.eval()


def _ClipImage(visual):
    import torch

    class ClipImage(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = visual

        def forward(self, x):
            return self.visual(x)

    return ClipImage()


def load_images(paths: list[Path], image_size: int, mean, std):
    """Read image files into a normalised float tensor [B, 3, S, S] (grayscale replicated to RGB).

    Args:
        paths: image files.
        image_size: output side S (bilinear resize with antialiasing).
        mean: per-channel mean.
        std: per-channel std.

    Returns:
        torch.Tensor.
    """
    import torch
    import torch.nn.functional as F
    from PIL import Image

    arrs = []
    for p in paths:
        with Image.open(p) as im:
            arrs.append(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)
    out = []
    for a in arrs:  # images may differ in size: resize one by one
        t = torch.from_numpy(a)[None, None]
        if t.shape[-2:] != (image_size, image_size):
            t = F.interpolate(t, size=(image_size, image_size), mode="bilinear", align_corners=False,
                              antialias=True)
        out.append(t)
    x = torch.cat(out).expand(-1, 3, -1, -1)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


def embed_image_files(encoder: str, paths: list[Path], weights: Path | None, image_size: int,
                      batch_size: int = 32) -> np.ndarray:
    """Features of image files.

    Args:
        encoder: a key of IMAGE_ENCODERS.
        paths: image files.
        weights: weights file or None (random init, already allowed by the caller).
        image_size: input side.
        batch_size: images per forward pass.

    Returns:
        [len(paths), dim] float32.
    """
    import torch
    info = IMAGE_ENCODERS[encoder]
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    try:
        model = build_image_model(encoder, weights, image_size)
        feats = []
        with torch.no_grad():
            for i in range(0, len(paths), batch_size):
                x = load_images(paths[i:i + batch_size], image_size, info.mean, info.std)
                feats.append(model(x).float().reshape(len(x), -1).numpy())
    finally:
        torch.set_num_threads(threads)
    return np.concatenate(feats) if feats else np.zeros((0, info.dim), np.float32)


def encode_images(data: TaskData, encoder: str, *, modality: str = "cxr", weights: str | Path | None = None,
                  allow_random_init: bool | None = None, image_size: int | None = None, max_studies: int = 4,
                  batch_size: int = 32, cache: bool = True) -> ModalityEncoding:
    """Encode the image files each sample may see and pool them per sample.

    Args:
        data: the task's samples; studies pass through `TaskData.visible_modality`.
        encoder: image_resnet50 | image_densenet121 | image_clip_vit_b32.
        modality: sidecar with a `path` column (relative to the cohort folder).
        weights: local weights file (see module docstring).
        allow_random_init: permit random weights (tests only).
        image_size: input side (default $MEHR_BENCH_IMAGE_SIZE or 224).
        max_studies: K most recent studies kept as tokens.
        batch_size: images per forward pass.
        cache: read/write the on-disk cache.

    Returns:
        ModalityEncoding (name = modality) aligned with data.labels rows.

    Raises:
        UserError: no weights (and random init not allowed), no `path` column, or missing files.
    """
    w = resolve_weights(encoder, weights, allow_random_init)
    size = int(image_size or os.environ.get("MEHR_BENCH_IMAGE_SIZE", 224))
    side = data.cohort.root / "modalities" / f"{modality}.parquet"

    def compute() -> dict[str, np.ndarray]:
        if "path" not in data.cohort.modality(modality).collect_schema().names():
            raise UserError(f"modality {modality!r} has no image files (no `path` column)", file=side, field="path",
                            fix="generate the cohort with images (the default), or use the `precomputed` encoder")
        samples, row_to_sample = sample_table(data)
        vis = (with_sample_index(data.visible_modality(modality, all_splits(data)), samples)
               .filter(pl.col("path").is_not_null()).select("sample", "time", "path").collect())
        uniq = sorted(set(vis["path"].to_list()))
        files = [data.cohort.sidecar_file(p, modality) for p in uniq]  # refuses paths outside the cohort
        gone = [str(f) for f in files if not f.is_file()]
        if gone:
            raise UserError(f"{len(gone)} image file(s) listed in {modality}.parquet do not exist (e.g. {gone[0]})",
                            file=side, field="path", fix="regenerate the images or fix the paths")
        feats = embed_image_files(encoder, files, w, size, batch_size)
        lookup = pl.DataFrame({"path": uniq, "u": np.arange(len(uniq), dtype=np.int64)})
        idx = vis.join(lookup, on="path", how="left", maintain_order="left")["u"].to_numpy()
        pooled = pool_studies(vis["sample"].to_numpy().astype(np.int64), time_key(vis["time"]),
                              feats[idx] if len(idx) else np.zeros((0, feats.shape[1]), np.float32),
                              samples.height, max_studies)
        return {k: v[row_to_sample] for k, v in pooled.items()}

    config = {"weights": file_identity(w), "image_size": size, "modality": modality, "max_studies": max_studies}
    return ModalityEncoding.from_arrays(modality, cached_arrays(data, f"image:{encoder}:{modality}", VERSION, config,
                                                                compute, cache=cache))
