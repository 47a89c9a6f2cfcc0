"""The training side's data and precision: the official train loader, batches on the device, the precision.

- ``RandomSampler`` batches of ``batch_size`` with the sampler's own seeded generator, ``drop_last`` only
  when the set holds at least one batch (as Dassl's ``build_data_loader``).
- The loader yields uint8 crops (the train transform's PIL steps per image); ``ToTensor`` + ``Normalize``
  run once per batch on the device (bit-identical to the per-image transform).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, RandomSampler

from harness.config import MethodConfig
from harness.errors import ConfigError, DataError
from harness.models.backbone import Backbone


def training_precision(config: MethodConfig, backbone: Backbone) -> str:
    """The precision a training runs in: the backbone's (``auto`` in the config follows it).

    The backbone carries the precision it was loaded with (``harness.models.load_backbone``): ``amp``
    autocasts inside its encoders, ``fp16``/``bf16`` convert its weights. The learned parameters stay float32
    except in the official pure-fp16 mode.

    Raises:
        ConfigError: when the config asks for a precision the backbone was not loaded with.
    """
    if config.precision not in ("auto", backbone.precision):
        raise ConfigError(
            f"precision={config.precision} but the backbone was loaded with precision {backbone.precision}; "
            f"load it with --precision {config.precision}"
        )
    return backbone.precision


def build_train_loader(task_data: Any, backbone: Backbone, config: MethodConfig,
                       generator: torch.Generator) -> tuple[DataLoader, Callable[[torch.Tensor], torch.Tensor]]:
    """The official train loader (random sampler, train transform, drop_last only with a full batch).

    Returns:
        The loader, which yields uint8 images cropped and flipped per image, and the batch normalisation that
        completes the official transform (``ToTensor`` + ``Normalize``, bit-identical) on the device.
    """
    from harness.data import ImageDataset, build_pipeline  # lazy: keeps the method modules light

    if not task_data.train:
        raise DataError(f"dataset {task_data.dataset}: the train split is empty")
    pipeline = build_pipeline(backbone.preprocessing, train=True, crop_scale=config.train_crop_scale,
                              flip=config.train_flip)
    dataset = ImageDataset(task_data.train, task_data.image_dir, pipeline.per_image)
    loader = DataLoader(
        dataset, batch_size=config.batch_size, sampler=RandomSampler(dataset, generator=generator),
        drop_last=len(dataset) >= config.batch_size, num_workers=config.num_workers,
        pin_memory=backbone.device.type == "cuda",
    )
    return loader, pipeline.normalize


def device_batches(loader: DataLoader, normalize: Callable[[torch.Tensor], torch.Tensor],
                   device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(pixels, labels)`` on ``device``: each uint8 batch normalised there."""
    for images, labels, _ in loader:
        pixels = normalize(images.to(device, non_blocking=True))
        yield pixels, labels.to(device, non_blocking=True)


def method_inputs(method: Any, backbone: Backbone, pixels: torch.Tensor) -> torch.Tensor:
    """What ``method`` takes: frozen image features (no graph through the tower) or the pixels themselves."""
    if method.image_input == "pixels":
        return pixels
    with torch.no_grad():  # the image encoder is frozen: no graph through it, as in the official model
        return backbone.encode_images(pixels)
