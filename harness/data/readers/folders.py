"""Readers of the split-file datasets whose images sit in one folder per class, and Flowers102.

All read their ``split_zhou_*.json``. A fresh split (only on request) is generated from the folders
(Caltech101, DTD, EuroSAT, Food101: sorted categories, 50/20/30 per class, card renames applied) or,
for Flowers102, from ``imagelabels.mat`` and ``cat_to_name.json``.
"""

from __future__ import annotations

import random
from pathlib import Path

from harness.data.cards import DatasetCard
from harness.data.readers.base import Splits, generate_from_folders, register_reader
from harness.data.splitgen import split_per_class
from harness.data.splitio import read_json
from harness.errors import DataError

for _name in ("split_json", "caltech101", "dtd", "eurosat", "food101"):
    register_reader(_name, generate=None if _name == "split_json" else generate_from_folders)


def read_flower_labels(path: Path) -> list[int]:
    """The 1-based labels of ``imagelabels.mat`` (key ``labels``, shape 1 x N), image i+1 at position i."""
    from scipy.io import loadmat

    try:
        labels = loadmat(str(path))["labels"][0]
    except FileNotFoundError as exc:
        raise DataError(f"file not found: {path}") from exc
    except (KeyError, IndexError, ValueError, OSError) as exc:
        raise DataError(f"cannot read labels from {path}: expected a .mat file with a 1 x N 'labels' array") from exc
    return [int(label) for label in labels]


def generate_flowers(card: DatasetCard, data_root: Path, rng: random.Random) -> Splits:
    """Fresh Flowers102 split: images grouped by label in file order, per class 50/20/30.

    Image ``i`` (0-based) of ``imagelabels.mat`` is ``jpg/image_{i+1:05d}.jpg``; the class name is
    ``cat_to_name.json[str(label)]`` and the stored label is ``label - 1``.
    """
    dataset_dir = card.dataset_dir(data_root)
    labels = read_flower_labels(dataset_dir / "imagelabels.mat")
    names = read_json(dataset_dir / "cat_to_name.json")
    by_label: dict[int, list[str]] = {}
    for index, label in enumerate(labels):
        by_label.setdefault(label, []).append(f"image_{index + 1:05d}.jpg")
    groups = []
    for label, files in by_label.items():
        if str(label) not in names:
            raise DataError(f"{dataset_dir / 'cat_to_name.json'} has no name for label {label}")
        if not 1 <= label <= card.num_classes:
            raise DataError(f"{dataset_dir / 'imagelabels.mat'}: label {label} out of range 1..{card.num_classes}")
        groups.append((label - 1, names[str(label)], files))
    train, val, test = split_per_class(groups, rng)
    return {"train": train, "val": val, "test": test}


register_reader("oxford_flowers", generate=generate_flowers)
