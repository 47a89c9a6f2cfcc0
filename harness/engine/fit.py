"""What ``Method.fit`` sees: the training task's data as frozen image features, through the feature cache.

Training-free methods (a cache of few-shot features, a probe) and methods with a fitted initialisation call
``context.features("train")`` (or ``"val"``); the shared on-disk feature cache applies, keyed like the
evaluation's. The test split is not offered: nothing a method fits may look at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from harness.config import MethodConfig
from harness.errors import DataError

FIT_SPLITS = ("train", "val")


@dataclass
class FitContext:
    """The training task as a method's ``fit`` may use it.

    Attributes:
        backbone: the frozen backbone.
        task: the ``TaskData`` (train/val items, class names, template).
        config: the method's config.
        seed: the run's seed.
    """

    backbone: Any
    task: Any
    config: MethodConfig
    seed: int

    def features(self, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised image features ``(n, embed_dim)`` and labels ``(n,)`` of ``train`` or ``val``.

        Raises:
            DataError: for the test split (never available to fitting) or an unknown one.
        """
        if split not in FIT_SPLITS:
            raise DataError(f"fit may read the {' or '.join(FIT_SPLITS)} split, not {split!r}")
        from harness.engine.evaluate import split_features

        return split_features(self.backbone, self.task, split, self.config.test_batch_size, self.config.num_workers)
