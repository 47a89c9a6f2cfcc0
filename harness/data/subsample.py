"""The base-to-new class split (``subsample_classes`` of the official code), as a pure function."""

from __future__ import annotations

import math
from collections.abc import Sequence

from harness.data.types import Datum
from harness.errors import DataError

SUBSAMPLES = ("all", "base", "new")


def base_new_labels(labels: Sequence[int], subsample: str) -> list[int]:
    """The labels kept by ``subsample``: the lower ``ceil(n/2)`` sorted labels for base, the rest for new.

    Args:
        labels: labels present in the first split (train after few-shot sampling); repeats allowed.
        subsample: ``all``, ``base`` or ``new``.
    """
    if subsample not in SUBSAMPLES:
        raise DataError(f"unknown subsample {subsample!r}; expected one of {', '.join(SUBSAMPLES)}")
    ordered = sorted(set(labels))
    if subsample == "all":
        return ordered
    half = math.ceil(len(ordered) / 2)  # base gets the extra class when n is odd
    return ordered[:half] if subsample == "base" else ordered[half:]


def split_base_new(splits: Sequence[list[Datum]], subsample: str) -> list[list[Datum]]:
    """Keep the base or new classes in every split and relabel them ``0..m-1`` in sorted order.

    The label set comes from the FIRST split only (train after few-shot sampling, as official);
    ``all`` returns the splits unchanged. Class names are kept.

    Args:
        splits: the splits, first one deciding the labels (e.g. ``[train, val, test]``).
        subsample: ``all``, ``base`` or ``new``.

    Returns:
        The filtered and relabelled splits, in the same order.
    """
    if not splits:
        return []
    selected = base_new_labels([item.label for item in splits[0]], subsample)
    if subsample == "all":
        return [list(items) for items in splits]
    relabel = {old: new for new, old in enumerate(selected)}
    return [
        [Datum(item.impath, relabel[item.label], item.classname) for item in items if item.label in relabel]
        for items in splits
    ]
