"""Fresh random splits, used ONLY when the user explicitly asks for one (the official split file is missing).

These follow the official generators (``OxfordPets.split_trainval`` and ``DTD.read_and_split_data`` /
``OxfordFlowers.read_data``) but draw from an explicit ``random.Random`` instead of the global ``random``.
A generated split does not match the published one, so numbers obtained with it are not comparable.
Pure functions: no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from harness.data.types import Datum
from harness.errors import DataError


def split_trainval(
    trainval: Sequence[Datum], rng: random.Random, p_val: float = 0.2
) -> tuple[list[Datum], list[Datum]]:
    """Per class (in order of first appearance), shuffle and send ``round(n * p_val)`` items to val.

    Raises:
        DataError: when a class would get no val item (the official code asserts this).
    """
    by_label: dict[int, list[int]] = {}
    for index, item in enumerate(trainval):
        by_label.setdefault(item.label, []).append(index)
    train: list[Datum] = []
    val: list[Datum] = []
    for label, indices in by_label.items():
        n_val = round(len(indices) * p_val)
        if n_val < 1:
            raise DataError(f"class {label} has {len(indices)} trainval images, too few for a {p_val:.0%} val split")
        rng.shuffle(indices)
        val.extend(trainval[i] for i in indices[:n_val])
        train.extend(trainval[i] for i in indices[n_val:])
    return train, val


def split_per_class(
    groups: Sequence[tuple[int, str, list[str]]],
    rng: random.Random,
    p_train: float = 0.5,
    p_val: float = 0.2,
) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Per class: shuffle its images, then ``round(p_train*n)`` to train, ``round(p_val*n)`` to val, rest to test.

    Args:
        groups: ``(label, classname, relative image paths)`` per class, in the order to process them.
        rng: the generator the shuffles draw from.
        p_train: fraction for train.
        p_val: fraction for val.

    Raises:
        DataError: when a class would leave a split empty (fewer than about 4 images).
    """
    train: list[Datum] = []
    val: list[Datum] = []
    test: list[Datum] = []
    for label, classname, paths in groups:
        paths = list(paths)
        rng.shuffle(paths)
        n_train = round(len(paths) * p_train)
        n_val = round(len(paths) * p_val)
        if n_train < 1 or n_val < 1 or len(paths) - n_train - n_val < 1:
            raise DataError(f"class {classname!r} has {len(paths)} images, too few for a train/val/test split")
        train.extend(Datum(p, label, classname) for p in paths[:n_train])
        val.extend(Datum(p, label, classname) for p in paths[n_train : n_train + n_val])
        test.extend(Datum(p, label, classname) for p in paths[n_train + n_val :])
    return train, val, test
