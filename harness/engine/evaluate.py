"""Evaluation: image features of a split, a method's logits over them, accuracy and macro-F1 as Dassl computes them.

``split_features`` is the one place that turns (backbone, task data, split) into image features; the shared
on-disk feature cache (``harness.engine.feature_cache``) is slotted in there, outside the evaluation loop.
The metrics follow Dassl's ``Classification`` evaluator (spec section 10): accuracy = 100 x correct / total
over all images, and macro-F1 = 100 x the mean per-class F1 over the labels present in the ground truth (sklearn's
``f1_score(average="macro", labels=unique(y_true))``: a class that is predicted but absent from the ground
truth does not count).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader

from harness.engine.feature_cache import FeatureCache, resolve_cache
from harness.errors import DataError
from harness.methods.base import Method
from harness.models.backbone import Backbone

if TYPE_CHECKING:  # the data package is imported lazily: the engine stays importable on its own
    from harness.data import PixelPipeline

SPLITS = ("train", "val", "test")


@dataclass
class EvalResult:
    """The outcome of one evaluation.

    Attributes:
        labels / preds: ground truth and argmax prediction per image, in split order.
        logits: float32 tensor ``(n_images, n_classes)`` on the CPU, columns in label order.
        impaths: each image's path relative to the dataset's image folder, as in the split file.
        accuracy / macro_f1: in percent.
    """

    labels: list[int]
    preds: list[int]
    logits: torch.Tensor
    impaths: list[str]
    accuracy: float
    macro_f1: float

    @property
    def n_images(self) -> int:
        """Number of evaluated images."""
        return len(self.labels)

    def metrics(self) -> dict[str, float]:
        """The metrics as records name them."""
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1}


def accuracy(labels: Sequence[int], preds: Sequence[int]) -> float:
    """100 x correct / total (micro accuracy over all images)."""
    if not labels:
        raise ValueError("accuracy of an empty set of predictions")
    correct = sum(int(t == p) for t, p in zip(labels, preds, strict=True))
    return 100.0 * correct / len(labels)


def macro_f1(labels: Sequence[int], preds: Sequence[int]) -> float:
    """100 x mean F1 over the classes present in ``labels`` (sklearn's ``labels=unique(y_true)`` semantics).

    Per class ``c``: F1 = 2 TP / (2 TP + FP + FN), which is the harmonic mean of precision and recall, and 0 when
    TP = 0 (sklearn's value with ``zero_division``). A prediction of a class absent from ``labels`` is a false
    negative of the true class and a false positive of a class that is not averaged, as in sklearn.
    """
    if not labels:
        raise ValueError("macro-F1 of an empty set of predictions")
    pairs = list(zip(labels, preds, strict=True))
    scores = []
    for cls in sorted(set(labels)):
        tp = sum(1 for t, p in pairs if t == cls and p == cls)
        fp = sum(1 for t, p in pairs if t != cls and p == cls)
        fn = sum(1 for t, p in pairs if t == cls and p != cls)
        scores.append(2.0 * tp / (2 * tp + fp + fn))
    return 100.0 * sum(scores) / len(scores)


def split_items(task_data: object, split: str) -> list:
    """The items of ``split`` of a ``TaskData``; an unknown or empty split is a ``DataError``."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    items = list(getattr(task_data, split))
    if not items:
        raise DataError(f"dataset {getattr(task_data, 'dataset', '?')}: the {split} split has no images")
    return items


@torch.no_grad()
def split_features(
    backbone: Backbone, task_data: object, split: str, batch_size: int = 100, num_workers: int = 0,
    cache: FeatureCache | bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L2-normalised float32 image features ``(n, embed_dim)`` (on the backbone's device) and labels ``(n,)``.

    Images are read in split order with the backbone's test transform (resize the shorter side, centre crop).
    ``cache``: ``True`` uses the shared on-disk feature cache (``harness.engine.feature_cache``), ``False``
    encodes every image, or pass a ``FeatureCache``.
    """
    from harness.data import build_pipeline  # lazy: keeps the engine importable on its own

    items = split_items(task_data, split)
    pipeline = build_pipeline(backbone.preprocessing, train=False)
    store = resolve_cache(cache)
    if store is None:
        return encode_items(backbone, items, task_data.image_dir, pipeline, batch_size, num_workers)
    return store.split_features(
        backbone, task_data, split, items, pipeline,
        lambda: encode_items(backbone, items, task_data.image_dir, pipeline, batch_size, num_workers),
    )


@torch.no_grad()
def encode_items(
    backbone: Backbone, items: list, image_dir: object, pipeline: PixelPipeline, batch_size: int, num_workers: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode ``items`` in order with ``pipeline``: features ``(n, embed_dim)`` and labels ``(n,)`` (no cache).

    The loader yields uint8 images (decoded, resized and cropped per image); they are normalised per batch on
    the backbone's device.
    """
    from harness.data import ImageDataset  # lazy: keeps the engine importable on its own

    dataset = ImageDataset(items, image_dir, pipeline.per_image)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=backbone.device.type == "cuda",
    )
    features, labels = [], []
    for images, batch_labels, _ in loader:
        pixels = pipeline.normalize(images.to(backbone.device, non_blocking=True))
        features.append(backbone.encode_images(pixels))
        labels.append(batch_labels)
    return torch.cat(features), torch.cat(labels)


def _pixel_logits(method: Method, backbone: Backbone, task_data: object, items: list, batch_size: int,
                  num_workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a ``pixels`` method over ``items`` in order (test transform, normalised per batch)."""
    from harness.data import ImageDataset, build_pipeline  # lazy: keeps the engine importable on its own

    pipeline = build_pipeline(backbone.preprocessing, train=False)
    loader = DataLoader(ImageDataset(items, task_data.image_dir, pipeline.per_image), batch_size=batch_size,
                        shuffle=False, num_workers=num_workers, pin_memory=backbone.device.type == "cuda")
    logits, labels = [], []
    for images, batch_labels, _ in loader:
        pixels = pipeline.normalize(images.to(backbone.device, non_blocking=True))
        logits.append(method(pixels).float().cpu())
        labels.append(batch_labels)
    return torch.cat(logits), torch.cat(labels)


@torch.no_grad()
def evaluate(
    method: Method, backbone: Backbone, task_data: object, split: str = "test", batch_size: int = 100,
    num_workers: int = 0, cache: FeatureCache | bool = True,
) -> EvalResult:
    """Evaluate ``method`` on one split of ``task_data``.

    Args:
        method: a method whose classes are set (``set_classes``) to ``task_data.classnames``.
        backbone: the frozen backbone the method was built on.
        task_data: a ``harness.data.TaskData``.
        split: ``test`` (default), ``val`` or ``train``.
        batch_size: images per batch, for image encoding and for the method's forward.
        num_workers: DataLoader worker processes.
        cache: the image-feature cache: ``True`` (default) the shared on-disk one, ``False`` none (see
            ``split_features``).

    Returns:
        Labels, predictions, logits and image paths in split order, with accuracy and macro-F1 in percent.
    """
    items = split_items(task_data, split)
    method.eval()
    method.prepare_eval()
    if method.image_input == "pixels":  # the method runs the image tower itself: no feature cache
        logits, labels = _pixel_logits(method, backbone, task_data, items, batch_size, num_workers)
    else:
        features, labels = split_features(backbone, task_data, split, batch_size, num_workers, cache)
        batches = range(0, len(features), batch_size)
        logits = torch.cat([method(features[i : i + batch_size]).float().cpu() for i in batches])
    if logits.shape != (len(items), len(method.classnames)):
        raise DataError(
            f"method {method.name!r} returned logits of shape {tuple(logits.shape)}; expected "
            f"({len(items)}, {len(method.classnames)})"
        )
    label_list = labels.tolist()
    preds = logits.argmax(dim=1).tolist()
    return EvalResult(
        labels=label_list,
        preds=preds,
        logits=logits,
        impaths=[item.impath for item in items],
        accuracy=accuracy(label_list, preds),
        macro_f1=macro_f1(label_list, preds),
    )
