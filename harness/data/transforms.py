"""Image transforms as Dassl builds them for CoOp/CoCoOp, sized to the model's own preprocessing.

Train: RandomResizedCrop(size, scale=(0.08, 1)) + RandomHorizontalFlip + ToTensor + Normalize (no Resize
before the crop: Dassl skips it whenever a random crop is present). Val/test: Resize(size) of the
shorter side keeping the aspect ratio + CenterCrop(size) + ToTensor + Normalize.
"""

from __future__ import annotations

from typing import Any

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


def build_transform(preprocessing: Preprocessing, train: bool,
                    crop_scale: tuple[float, float] = MethodConfig.train_crop_scale) -> Any:
    """The train or test transform for a model's input size, mean, std and interpolation.

    Args:
        preprocessing: the backbone's ``Preprocessing``.
        train: random crop and flip when True, resize and centre crop otherwise.
        crop_scale: the random crop's area range (Dassl ``INPUT.RRCROP_SCALE``), train only.
    """
    if preprocessing.interpolation not in INTERPOLATIONS:
        raise ConfigError(
            f"unknown interpolation {preprocessing.interpolation!r}; expected one of {', '.join(INTERPOLATIONS)}"
        )
    mode = INTERPOLATIONS[preprocessing.interpolation]
    size = preprocessing.image_size
    normalize = T.Normalize(mean=list(preprocessing.mean), std=list(preprocessing.std))
    if train:
        return T.Compose([
            T.RandomResizedCrop(size, scale=crop_scale, interpolation=mode),
            T.RandomHorizontalFlip(p=0.5),
            T.ToTensor(),
            normalize,
        ])
    return T.Compose([
        T.Resize(size, interpolation=mode),  # an int resizes the shorter side, keeping the aspect ratio
        T.CenterCrop(size),
        T.ToTensor(),
        normalize,
    ])
