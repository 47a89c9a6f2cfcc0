"""Choosing a protocol's datasets from dataset cards (roles, embedded flag) and ``--datasets``."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.protocols import DatasetRoles
from harness.protocols.selection import CardInfo, restrict, roles_from_cards

CARDS = [
    CardInfo("dtd", "DTD", "target", False),
    CardInfo("imagenet_a", "ImageNet-A", "domain_shift", False),
    CardInfo("caltech101", "Caltech101", "target", False),
    CardInfo("imagenet", "ImageNet", "source", False),
    CardInfo("world_src", "World", "source", True),
    CardInfo("world_b", "B", "target", True),
    CardInfo("world_a", "A", "target", True),
]


def test_real_roles_follow_the_papers_order() -> None:
    roles = roles_from_cards(CARDS, embedded=False)
    assert roles == DatasetRoles("imagenet", ("caltech101", "dtd"), ("imagenet_a",))


def test_embedded_roles_use_only_embedded_cards() -> None:
    assert roles_from_cards(CARDS, embedded=True) == DatasetRoles("world_src", ("world_a", "world_b"), ())


def test_bad_roles_are_errors() -> None:
    with pytest.raises(HarnessError, match="role 'sink'"):
        roles_from_cards([CardInfo("x", "X", "sink", True)], embedded=True)
    with pytest.raises(HarnessError, match="several"):
        roles_from_cards([CardInfo("x", "X", "source", True), CardInfo("y", "Y", "source", True)], embedded=True)


def test_restrict_per_dataset_and_transfer_protocols() -> None:
    roles = roles_from_cards(CARDS, embedded=False)
    assert restrict(roles, "base2new", None) == roles
    assert restrict(roles, "base2new", ["dtd"]) == DatasetRoles(None, ("dtd",), ("imagenet_a",))
    assert restrict(roles, "few_shot", ["dtd", "imagenet"]).source == "imagenet"
    assert restrict(roles, "cross_dataset", ["dtd"]).targets == ("dtd",)
    assert restrict(roles, "domain_generalization", ["imagenet_a"]).domain_shift == ("imagenet_a",)
    with pytest.raises(HarnessError, match="imagenet_a not used by protocol base2new"):
        restrict(roles, "base2new", ["imagenet_a"])
