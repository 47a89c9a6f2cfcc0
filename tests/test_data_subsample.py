"""The base/new class split on plain lists, and the class counts it gives on the 11 datasets."""

from __future__ import annotations

import math

import pytest

from harness.data import Datum, load_card, split_base_new
from harness.data.subsample import base_new_labels
from harness.errors import DataError
from harness.registries import DATASETS


def items(labels: list[int], prefix: str = "x") -> list[Datum]:
    return [Datum(f"{prefix}{i}.jpg", label, f"class{label}") for i, label in enumerate(labels)]


def test_all_returns_the_splits_unchanged() -> None:
    train, test = items([3, 1, 2]), items([0, 1])
    assert split_base_new([train, test], "all") == [train, test]


def test_odd_count_gives_base_the_extra_class_and_new_is_relabelled_from_zero() -> None:
    train = items([0, 1, 2, 3, 4, 0, 4])
    (base,) = split_base_new([train], "base")
    (new,) = split_base_new([train], "new")
    assert [(d.impath, d.label, d.classname) for d in base] == [
        ("x0.jpg", 0, "class0"), ("x1.jpg", 1, "class1"), ("x2.jpg", 2, "class2"), ("x5.jpg", 0, "class0")
    ]
    assert [(d.impath, d.label, d.classname) for d in new] == [
        ("x3.jpg", 0, "class3"), ("x4.jpg", 1, "class4"), ("x6.jpg", 1, "class4")
    ]


def test_labels_come_from_the_first_split_only() -> None:
    train, test = items([0, 1, 2, 3]), items([0, 1, 2, 3, 4, 5], prefix="t")
    base_train, base_test = split_base_new([train, test], "base")
    new_train, new_test = split_base_new([train, test], "new")
    assert [d.label for d in base_test] == [0, 1]
    assert [d.impath for d in new_test] == ["t2.jpg", "t3.jpg"]  # test classes 4 and 5 are in neither half
    assert [d.label for d in new_test] == [0, 1]


def test_gaps_in_the_label_set_are_relabelled_in_sorted_order() -> None:
    (new,) = split_base_new([items([9, 1, 5, 7])], "new")
    assert [(d.classname, d.label) for d in new] == [("class9", 1), ("class7", 0)]


def test_unknown_subsample_is_an_error() -> None:
    with pytest.raises(DataError, match="unknown subsample 'half'"):
        split_base_new([items([0])], "half")


@pytest.mark.parametrize("name", [n for n in DATASETS.names() if load_card(n).base_new_classes])
def test_card_base_new_counts_follow_ceil_half(name: str) -> None:
    card = load_card(name)
    base = base_new_labels(range(card.num_classes), "base")
    new = base_new_labels(range(card.num_classes), "new")
    assert (len(base), len(new)) == card.base_new_classes
    assert len(base) == math.ceil(card.num_classes / 2)
