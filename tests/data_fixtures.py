"""Fixture builders other test modules can import: a tiny DTD folder in the exact official layout.

Usage from any test: ``from data_fixtures import build_dtd_fixture`` then
``data_root = build_dtd_fixture(tmp_path)`` and pass ``data_root`` as ``--data-root`` with ``--dataset dtd``.

The layout is the one CoOp's ``DescribableTextures`` reader expects::

    <root>/dtd/images/<category>/<category>_<NNNN>.jpg
    <root>/dtd/split_zhou_DescribableTextures.json   # {"train"|"val"|"test": [[relpath, label, classname], ...]}
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

# The first DTD categories in sorted order, as the official folder listing gives them.
DTD_CLASSES = (
    "banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked",
    "crosshatched", "crystalline", "dotted", "fibrous", "flecked", "freckled", "frilly", "gauzy",
)


def write_image(path: Path, size: int = 8, color: tuple[int, int, int] = (128, 64, 32), fmt: str = "JPEG") -> None:
    """Write a small solid-colour RGB image (JPEG unless ``fmt`` says otherwise), creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), color).save(path, format=fmt)


def class_color(label: int, index: int = 0) -> tuple[int, int, int]:
    """A deterministic colour per class (with a small per-image shift) so classes differ visibly."""
    return ((40 + 53 * label + 3 * index) % 256, (90 + 97 * label) % 256, (200 + 31 * label + 5 * index) % 256)


def build_dtd_fixture(
    root: Path, n_classes: int = 4, per_split: tuple[int, int, int] = (4, 2, 3), image_size: int = 40
) -> Path:
    """Build ``<root>/dtd`` in the official DTD layout with its ``split_zhou_DescribableTextures.json``.

    Args:
        root: the data root to create the ``dtd`` folder in (e.g. ``tmp_path``).
        n_classes: number of categories (at most 16), named like the first real DTD classes.
        per_split: images per class in train, val and test.
        image_size: side of the square JPEG images.

    Returns:
        The data root (``root``), to pass as ``--data-root``.
    """
    if not 1 <= n_classes <= len(DTD_CLASSES):
        raise ValueError(f"n_classes must be in 1..{len(DTD_CLASSES)}, got {n_classes}")
    image_dir = Path(root) / "dtd" / "images"
    split: dict[str, list[list[object]]] = {"train": [], "val": [], "test": []}
    for label, name in enumerate(DTD_CLASSES[:n_classes]):
        counter = 0
        for split_name, count in zip(("train", "val", "test"), per_split):
            for _ in range(count):
                counter += 1
                relpath = f"{name}/{name}_{counter:04d}.jpg"
                write_image(image_dir / relpath, image_size, class_color(label, counter))
                split[split_name].append([relpath, label, name])
    split_path = Path(root) / "dtd" / "split_zhou_DescribableTextures.json"
    split_path.write_text(json.dumps(split, indent=4))
    return Path(root)
