"""Which datasets a protocol runs on: the real ones with ``--data-root``, else the embedded world's.

The dataset cards say it: each card has ``embedded`` (true for the embedded world's datasets) and ``role``
(``source``: trained on in cross-dataset and domain generalization; ``target``: the other datasets;
``domain_shift``: test-only shifted versions of the source). ``restrict`` applies ``--datasets`` purely.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.protocols.plans import DatasetRoles

# The papers' table order (CoCoOp Tables 1-3); datasets not listed follow, sorted by name.
PAPER_ORDER = (
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
    "sun397", "dtd", "eurosat", "ucf101", "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r",
)
ROLES = ("source", "target", "domain_shift")


@dataclass(frozen=True)
class CardInfo:
    """The fields of a dataset card that planning and tables use."""

    name: str
    display_name: str
    role: str
    embedded: bool


def dataset_order_key(name: str) -> tuple[int, str]:
    """Sort key putting datasets in the papers' order, others after them by name."""
    return (PAPER_ORDER.index(name), name) if name in PAPER_ORDER else (len(PAPER_ORDER), name)


def roles_from_cards(cards: Iterable[CardInfo], embedded: bool) -> DatasetRoles:
    """Group the cards of one world (embedded or real) by role, in the papers' order.

    Raises:
        HarnessError: if a card has an unknown role or several cards claim the source role.
    """
    by_role: dict[str, list[str]] = {role: [] for role in ROLES}
    for card in cards:
        if card.embedded != embedded:
            continue
        if card.role not in by_role:
            raise HarnessError(f"dataset card {card.name!r}: role {card.role!r}; expected one of {', '.join(ROLES)}")
        by_role[card.role].append(card.name)
    for names in by_role.values():
        names.sort(key=dataset_order_key)
    if len(by_role["source"]) > 1:
        raise HarnessError(f"several dataset cards have role 'source': {', '.join(by_role['source'])}")
    source = by_role["source"][0] if by_role["source"] else None
    return DatasetRoles(source, tuple(by_role["target"]), tuple(by_role["domain_shift"]))


def restrict(roles: DatasetRoles, protocol: str, requested: Sequence[str] | None) -> DatasetRoles:
    """Apply ``--datasets``: per-dataset protocols keep the named ones; transfer protocols keep the named targets.

    Raises:
        HarnessError: naming a requested dataset the protocol does not use, and the allowed names.
    """
    if requested is None:
        return roles
    from harness.protocols import protocol_entry

    kind = protocol_entry(protocol).pool
    pool: tuple[str, ...] = {"targets": roles.targets, "domain_shift": roles.domain_shift}.get(
        kind, ((roles.source,) if roles.source else ()) + roles.targets)
    unknown = [name for name in requested if name not in pool]
    if unknown:
        raise HarnessError(
            f"--datasets: {', '.join(unknown)} not used by protocol {protocol}; choose from {', '.join(pool)}"
        )
    keep = [name for name in pool if name in requested]
    if kind == "targets":
        return DatasetRoles(roles.source, tuple(keep), roles.domain_shift)
    if kind == "domain_shift":
        return DatasetRoles(roles.source, roles.targets, tuple(keep))
    source = roles.source if roles.source in keep else None
    return DatasetRoles(source, tuple(n for n in keep if n != roles.source), roles.domain_shift)


def load_card_infos() -> list[CardInfo]:
    """Read every registered dataset card (``datasets/*.yaml``) into ``CardInfo``.

    ``load_card`` already requires and validates ``role`` and ``display_name``.
    """
    from harness.data import load_card  # imported here: planning itself stays free of data code
    from harness.registries import DATASETS, load_builtins

    load_builtins()
    cards = (load_card(name) for name in DATASETS.names())
    return [CardInfo(card.name, card.display_name, card.role, card.embedded) for card in cards]


def display_names() -> dict[str, str]:
    """Registry name -> display name (as in the papers' tables) for every registered dataset."""
    return {info.name: info.display_name for info in load_card_infos()}
