"""The method contract: what every method (zero-shot, CoOp, CoCoOp, third-party) provides.

A method owns its text side (and any learnable prompt parameters) and maps L2-normalised image
features to logits over the current classes. The engine owns every loop: it encodes images with the
frozen backbone (``Backbone.encode_images``), calls ``prepare_eval`` once before evaluation and
``forward`` per batch, and trains ``trainable_parameters()`` for methods with ``trainable = True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from harness.config import MethodConfig
from harness.models.backbone import Backbone


class Method(nn.Module):
    """Base class of every method. Subclasses register with ``@METHODS.register("name")``."""

    name: ClassVar[str] = ""
    trainable: ClassVar[bool] = False

    def __init__(self, backbone: Backbone, config: MethodConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = config
        self.classnames: list[str] = []
        self.template = "a photo of a {}."

    def set_classes(self, classnames: Sequence[str], template: str) -> None:
        """Build the text side for ``classnames`` (indexed by label) and the dataset's template."""
        self.classnames = list(classnames)
        self.template = template

    def prepare_eval(self) -> None:
        """Called once, under ``no_grad``, before evaluation: compute what does not depend on the image."""

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)`` for L2-normalised float32 image features ``(batch, embed_dim)``."""
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates (empty for training-free methods)."""
        return [p for p in self.parameters() if p.requires_grad]
