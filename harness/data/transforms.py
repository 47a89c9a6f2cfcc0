"""Image transforms as Dassl builds them for CoOp/CoCoOp, sized to the model's own preprocessing.

Train: RandomResizedCrop(size, scale=(0.08, 1)) + RandomHorizontalFlip + ToTensor + Normalize (no Resize
before the crop: Dassl skips it whenever a random crop is present). Val/test: Resize(size) of the
shorter side keeping the aspect ratio + CenterCrop(size) + ToTensor + Normalize.

``build_pipeline`` splits the same computation in two for the loaders: the geometric PIL steps run per image
(in the DataLoader, workers included) and end in a uint8 tensor; ``ToTensor`` and ``Normalize`` run once per
batch (``BatchNormalize``) on the model's device. The float operations are the same ones in the same order,
so the pixels are bit-identical to ``build_transform``'s, with a quarter of the bytes between processes and to
the GPU and one vectorised normalisation instead of one per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from harness.config import MethodConfig
from harness.errors import ConfigError
from harness.models.backbone import Preprocessing

INTERPOLATIONS = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
}


def geometric_steps(preprocessing: Preprocessing, train: bool, crop_scale: tuple[float, float],
                    flip: bool = True) -> list[Any]:
    """The PIL steps of the train or test transform (crop and flip, or resize and centre crop)."""
    if preprocessing.interpolation not in INTERPOLATIONS:
        raise ConfigError(
            f"unknown interpolation {preprocessing.interpolation!r}; expected one of {', '.join(INTERPOLATIONS)}"
        )
    mode = INTERPOLATIONS[preprocessing.interpolation]
    size = preprocessing.image_size
    if train:
        crop = T.RandomResizedCrop(size, scale=crop_scale, interpolation=mode)
        return [crop, T.RandomHorizontalFlip(p=0.5)] if flip else [crop]
    # An int resizes the shorter side, keeping the aspect ratio.
    return [T.Resize(size, interpolation=mode), T.CenterCrop(size)]


def build_transform(preprocessing: Preprocessing, train: bool,
                    crop_scale: tuple[float, float] = MethodConfig.train_crop_scale) -> Any:
    """The train or test transform for a model's input size, mean, std and interpolation (one image, float).

    Args:
        preprocessing: the backbone's ``Preprocessing``.
        train: random crop and flip when True, resize and centre crop otherwise.
        crop_scale: the random crop's area range (Dassl ``INPUT.RRCROP_SCALE``), train only.
    """
    normalize = T.Normalize(mean=list(preprocessing.mean), std=list(preprocessing.std))
    return T.Compose([*geometric_steps(preprocessing, train, crop_scale), T.ToTensor(), normalize])


class PILToUint8:
    """An RGB PIL image as a uint8 ``(H, W, 3)`` tensor: the pixels ``ToTensor`` reads, not yet scaled."""

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """The image's pixels ``(H, W, 3)``, uint8, in a tensor of its own (not a view of the image)."""
        if image.mode != "RGB":
            raise ValueError(f"expected an RGB image, got mode {image.mode!r}")
        return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BatchNormalize:
    """``ToTensor`` + ``Normalize`` of a uint8 batch ``(B, H, W, 3)``: float32 ``(B, 3, H, W)``, contiguous.

    The same float32 operations as the per-image transform (``x / 255``, then ``(x - mean) / std``), so the
    result is bit-identical to stacking ``build_transform``'s outputs.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        if any(value == 0 for value in std):
            raise ConfigError(f"image std {list(std)} has a zero: cannot normalise")
        self.mean = tuple(float(value) for value in mean)
        self.std = tuple(float(value) for value in std)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised float32 images ``(B, 3, H, W)`` on the device of ``images``."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected a uint8 batch (B, H, W, 3), got {images.dtype} {tuple(images.shape)}")
        pixels = images.permute(0, 3, 1, 2).contiguous().to(torch.float32).div(255)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
        return pixels.sub_(mean).div_(std)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={list(self.mean)}, std={list(self.std)})"


@dataclass(frozen=True)
class PixelPipeline:
    """The transform split for loaders: ``per_image`` (PIL to uint8, in the DataLoader), ``normalize`` per batch."""

    per_image: T.Compose
    normalize: BatchNormalize


def build_pipeline(preprocessing: Preprocessing, train: bool,
                   crop_scale: tuple[float, float] = MethodConfig.train_crop_scale, flip: bool = True) -> PixelPipeline:
    """``build_transform`` split into per-image PIL steps and a batched normalisation (same pixels, exactly).

    ``flip=False`` drops the train transform's random horizontal flip (Dassl without ``random_flip``).
    """
    steps = geometric_steps(preprocessing, train, crop_scale, flip)
    return PixelPipeline(T.Compose([*steps, PILToUint8()]), BatchNormalize(preprocessing.mean, preprocessing.std))
