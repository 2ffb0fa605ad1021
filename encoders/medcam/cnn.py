"""The CXR image encoder: a small ResNet (torchvision BasicBlocks) for 64x64 grayscale images.

The paper adapts a ResNet-50 pretrained by BarlowTwins-CXR at 224x224. Here no pretrained CXR
weights can be downloaded and training runs on two CPU cores, so the encoder is a ResNet-style
network built from torchvision's ``BasicBlock`` (one block per stage, widths 16-32-64-128, a
stride-2 3x3 stem, global average pooling; about 0.3 M parameters) on 64x64 single-channel inputs.
A user with their own pretrained weights for this encoder (a state dict, e.g. written by
`save_encoder`) points ``$MEHR_BENCH_WEIGHTS_MEDCAM_CXR`` at the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from benchmark.errors import UserError

IMAGE_SIZE = 64
WIDTHS = (16, 32, 64, 128)
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25   # fixed (not fitted), so other sites' images get the same scaling
WEIGHTS_ENV = "MEHR_BENCH_WEIGHTS_MEDCAM_CXR"


def make_cnn(widths: tuple[int, ...] = WIDTHS):
    """ResNet-style encoder mapping images [B, 1, S, S] -> features [B, widths[-1]].

    Args:
        widths: channels of the four stages (each one torchvision BasicBlock; stride 2 from stage 2).

    Returns:
        nn.Module with attribute ``out_dim``.
    """
    import torch
    from torch import nn
    from torchvision.models.resnet import BasicBlock

    class SmallResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, widths[0], 3, stride=2, padding=1, bias=False),
                                      nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))   # S/2
            blocks, cin = [], widths[0]
            for i, w in enumerate(widths):
                stride = 1 if i == 0 else 2
                down = None
                if stride != 1 or cin != w:
                    down = nn.Sequential(nn.Conv2d(cin, w, 1, stride=stride, bias=False), nn.BatchNorm2d(w))
                blocks.append(BasicBlock(cin, w, stride=stride, downsample=down))
                cin = w
            self.blocks = nn.Sequential(*blocks)
            self.out_dim = widths[-1]

        def forward(self, x):              # x [B, 1, S, S]
            h = self.blocks(self.stem(x))  # [B, C, S/16, S/16]
            return torch.flatten(nn.functional.adaptive_avg_pool2d(h, 1), 1)  # [B, C]

    return SmallResNet()


def save_encoder(cnn, path: str | Path) -> Path:
    """Write the encoder's state dict (torch format) atomically; `load_encoder` reads it back."""
    import torch
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(cnn.state_dict(), tmp)
    tmp.replace(path)
    return path


def load_encoder(cnn, path: str | Path):
    """Load a local weights file into the encoder (strict; a `state_dict`/`model` wrapper and a
    `module.` prefix are accepted).

    Raises:
        UserError: the file is missing or its keys / shapes do not fit the encoder.
    """
    import torch
    path = Path(path)
    if not path.is_file():
        raise UserError("MedCAM image-encoder weights file not found", file=path, field=WEIGHTS_ENV,
                        fix="point it at a local state dict of the MedCAM CNN (see encoders/medcam/cnn.py)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        sd = load_file(str(path))
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    try:
        cnn.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise UserError(f"weights do not fit the MedCAM CNN: {str(e).splitlines()[0]}", file=path,
                        field=WEIGHTS_ENV, fix="give a state dict saved from encoders.medcam.cnn.make_cnn()") from None
    return cnn


def weights_from_env() -> Path | None:
    """The pretrained-weights file named by $MEHR_BENCH_WEIGHTS_MEDCAM_CXR, or None."""
    w = os.environ.get(WEIGHTS_ENV)
    return Path(w) if w else None


def read_images(paths: list[Path], size: int = IMAGE_SIZE) -> np.ndarray:
    """Read image files as uint8 [n, size, size] grayscale (any size / format PIL opens; resized
    with antialiasing when the side differs, e.g. real JPGs from the MIMIC-CXR converter).

    Raises:
        UserError: a file is missing or unreadable.
    """
    from PIL import Image, UnidentifiedImageError

    out = np.zeros((len(paths), size, size), np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                im = im.convert("L")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
                out[i] = np.asarray(im, np.uint8)
        except (FileNotFoundError, UnidentifiedImageError, OSError) as e:
            raise UserError(f"cannot read image {p}: {e}", file=p, field="path",
                            fix="check that the listed image files exist and are PNG/JPG") from None
    return out


def to_tensor(images: np.ndarray):
    """uint8 [n, S, S] -> normalised float tensor [n, 1, S, S]."""
    import torch
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    return ((x - PIXEL_MEAN) / PIXEL_STD).unsqueeze(1)
