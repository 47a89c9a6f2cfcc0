"""Checking an embedded world on disk and regenerating only what is missing or damaged.

Every file of the world is a pure function of the world seed (``harness.world.make``), so a deleted or
damaged image is repaired by rendering that one image again, and a missing split file by writing its
dataset again. An image is damaged when its sha256 differs from ``manifest.json`` (written by
``make_world``); a world made before the manifest existed is checked for missing and empty files only.
``harness data make-embedded`` calls ``make_or_repair``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from harness.world import make


@dataclass(frozen=True)
class WorldCheck:
    """What a check of the world found: images to render again, datasets to write again."""

    images: list[tuple[make.WorldDataset, int, int, int, Path]]
    datasets: list[make.WorldDataset]

    @property
    def complete(self) -> bool:
        """True when nothing is missing or damaged."""
        return not self.images and not self.datasets


def _read_manifest(root: Path) -> dict[str, str]:
    try:
        entries = json.loads((root / make.MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _damaged(path: Path, relpath: str, manifest: dict[str, str]) -> bool:
    if not path.is_file() or path.stat().st_size == 0:
        return True
    expected = manifest.get(relpath)
    return expected is not None and hashlib.sha256(path.read_bytes()).hexdigest() != expected


def check_world(root: Path) -> WorldCheck:
    """Find the missing or damaged files of the world at ``root`` (see the module docstring)."""
    manifest = _read_manifest(root)
    images, datasets = [], []
    for dataset in make.WORLD_DATASETS:
        folder = root / dataset.folder
        if not (folder / dataset.split_file).is_file():
            datasets.append(dataset)
            continue
        for split_index, (split, count) in enumerate(zip(make.SPLITS, dataset.per_class)):
            for label in range(len(dataset.classes)):
                for index in range(count):
                    relpath = make.image_path(dataset, split, label, index)
                    path = folder / make.IMAGE_DIR / relpath
                    if _damaged(path, f"{dataset.folder}/{make.IMAGE_DIR}/{relpath}", manifest):
                        images.append((dataset, split_index, label, index, path))
    return WorldCheck(images, datasets)


def repair_world(root: Path, found: WorldCheck, seed: int = make.WORLD_SEED) -> None:
    """Render the images and write the datasets ``found`` lists, in place."""
    for dataset in found.datasets:
        make.write_dataset(dataset, root / dataset.folder, seed)
    for dataset, split_index, label, index, path in found.images:
        path.parent.mkdir(parents=True, exist_ok=True)
        make.save_image(dataset, split_index, label, index, seed, path)


def make_or_repair(root: Path, force: bool = False) -> str:
    """Make the world at ``root`` (all of it when absent, outdated or ``force``), else repair what is missing.

    Returns:
        One line saying what was done.
    """
    root = Path(root)
    if force or not make._marker_ok(root, make.WORLD_SEED):
        make.make_world(root, force=True)
        return f"embedded world written to {root}"
    found = check_world(root)
    if found.complete:
        return f"embedded world at {root} is complete (every image present and unchanged)"
    repair_world(root, found)
    if not check_world(root).complete:
        make.make_world(root, force=True)  # a repair that did not take (e.g. manifest damaged): start over
        return f"embedded world at {root} could not be repaired in place; written again"
    parts = [f"{len(found.images)} image(s)"] + ([f"{len(found.datasets)} dataset(s)"] if found.datasets else [])
    return f"embedded world at {root}: regenerated {' and '.join(parts)} that were missing or damaged"
