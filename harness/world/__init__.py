"""The embedded world: a procedurally generated miniature of the benchmark and its tiny CLIP.

``make_world(root)`` renders every embedded dataset (image folder + ``split_zhou_*.json``) under ``root``;
``ensure_world(root)`` does so only when no complete, up-to-date world is there.
"""

from __future__ import annotations

from harness.world.datasets import WORLD_DATASETS, WorldDataset, get_world_dataset
from harness.world.make import WORLD_SEED, ensure_world, make_world, world_version

__all__ = [
    "WORLD_DATASETS",
    "WORLD_SEED",
    "WorldDataset",
    "ensure_world",
    "get_world_dataset",
    "make_world",
    "world_version",
]
