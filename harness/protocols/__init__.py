"""Protocols: pure planners registered in ``PROTOCOLS``, each turning dataset names and seeds into runs."""

from __future__ import annotations

from dataclasses import dataclass

from harness.protocols.plans import (
    DEFAULT_SHOTS,
    FEW_SHOT_SHOTS,
    DatasetRoles,
    Planner,
    plan_base2new,
    plan_cross_dataset,
    plan_domain_generalization,
    plan_few_shot,
)
from harness.protocols.spec import EvalSpec, MethodChoice, RunContext, RunSpec, build_run_key
from harness.registries import PROTOCOLS


@dataclass(frozen=True)
class Protocol:
    """A registered protocol: its name, what it does, and its planning function.

    Attributes:
        name: registry name (``harness run --protocol NAME``).
        description: one line for listings.
        plan: the pure planner ``(DatasetRoles, seeds, MethodChoice, shots, RunContext) -> list[RunSpec]``.
        kind: how its results are tabulated: ``base2new``, ``transfer`` (one source model, several targets)
            or ``few_shot``.
        pool: the datasets ``--datasets`` chooses from: ``own`` (source and targets, each trained on),
            ``targets`` or ``domain_shift`` (the source model's test sets).
        reference: the file of published numbers in ``harness/assets/reference/`` (``None``: none).
        plot: the figure ``harness plot`` draws for it (``few_shot``, ``base2new`` or ``None``).
    """

    name: str
    description: str
    plan: Planner
    kind: str
    pool: str = "own"
    reference: str | None = None
    plot: str | None = None


def protocol_entry(name: str) -> Protocol:
    """The registered protocol ``name`` (``HarnessError`` naming the known ones otherwise)."""
    return PROTOCOLS.get(name)


for _protocol in (
    Protocol("base2new", "train on base classes (16 shots), test on base and new classes", plan_base2new,
             "base2new", reference="base2new.csv", plot="base2new"),
    Protocol("cross_dataset", "train on the source (all classes, 16 shots), test on the other datasets",
             plan_cross_dataset, "transfer", pool="targets", reference="cross_dataset.csv"),
    Protocol("domain_generalization", "the source model tested on the domain-shifted sets",
             plan_domain_generalization, "transfer", pool="domain_shift", reference="domain_generalization.csv"),
    Protocol("few_shot", "1/2/4/8/16 shots on all classes, per dataset", plan_few_shot, "few_shot",
             reference="few_shot.csv", plot="few_shot"),
):
    PROTOCOLS.register(_protocol.name, _protocol)

__all__ = [
    "DEFAULT_SHOTS",
    "FEW_SHOT_SHOTS",
    "DatasetRoles",
    "EvalSpec",
    "MethodChoice",
    "Protocol",
    "RunContext",
    "RunSpec",
    "build_run_key",
    "protocol_entry",
]
