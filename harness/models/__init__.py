"""Backbones: frozen CLIP models loaded from open_clip names, checkpoint files, folders and the embedded asset.

Importing this package registers the built-in backbone sources in ``BACKBONES`` (``harness ls backbones``).
``TowerHooks`` and ``LoRA`` (``harness.models.hooks``) describe what a method changes inside the towers.
"""

from __future__ import annotations

from harness.models import hub, sources  # noqa: F401  (register the built-in backbone sources)
from harness.models.backbone import Backbone, Preprocessing
from harness.models.hooks import LoRA, TowerHooks
from harness.models.loading import load_backbone

__all__ = ["Backbone", "LoRA", "Preprocessing", "TowerHooks", "load_backbone"]
