"""From command-line choices to a plan: pick the preset and datasets, then call the protocol's planner.

This is the one place that looks things up (presets, method registry, dataset cards); the planners
themselves stay pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.protocols.plans import DatasetRoles, expand_draws
from harness.protocols.selection import load_card_infos, restrict, roles_from_cards
from harness.protocols.spec import MethodChoice, RunContext, RunSpec

EMBEDDED_SUFFIX = "_embedded"


def preset_for(method: str, protocol: str, embedded: bool, presets: Sequence[str],
               protocol_presets: Mapping[str, str] | None = None) -> str:
    """The preset a method runs a protocol with (pure).

    ``protocol_presets`` (the method's ``Method.protocol_presets``) maps a protocol to a published preset,
    else the method's own name is used; on the embedded world, ``<preset>_embedded`` replaces it when such a
    preset exists (its ``meta.changes`` says what differs and why).
    """
    preset = (protocol_presets or {}).get(protocol, method)
    if embedded and f"{preset}{EMBEDDED_SUFFIX}" in presets:
        return f"{preset}{EMBEDDED_SUFFIX}"
    return preset


def choose_method(method: str, protocol: str, embedded: bool) -> MethodChoice:
    """Resolve ``--method`` (a method or preset name) for ``protocol``: its preset and whether it trains.

    Raises:
        HarnessError: for an unknown method or preset.
    """
    from harness.methods import resolve_config
    from harness.methods.presets import preset_names
    from harness.registries import METHODS, load_builtins

    load_builtins()
    own = METHODS.get(method).protocol_presets if method in METHODS else {}
    preset = preset_for(method, protocol, embedded, preset_names(), own)
    config = resolve_config(preset)
    return MethodChoice(method, preset, METHODS.get(config.method).uses_training_data())


def protocol_datasets(protocol: str, embedded: bool, requested: Sequence[str] | None) -> DatasetRoles:
    """The datasets of ``protocol`` from the cards (embedded or real), restricted to ``requested``."""
    roles = roles_from_cards(load_card_infos(), embedded)
    if roles.source is None and not roles.targets:
        world = "embedded" if embedded else "real"
        raise HarnessError(f"no {world} dataset cards with a role (source/target) in datasets/")
    return restrict(roles, protocol, requested)


def make_plan(protocol: str, method: str, *, datasets: Sequence[str] | None, seeds: Sequence[int],
              shots: int | None, context: RunContext, draws: int = 1) -> list[RunSpec]:
    """The runs of ``protocol`` for ``method``: the real datasets with a data root, else the embedded world's.

    ``draws`` > 1 adds few-shot draws per seed (``expand_draws``; few_shot and base2new only).

    Raises:
        HarnessError: unknown protocol, method or dataset; bad seeds or shots.
    """
    from harness.registries import PROTOCOLS, load_builtins

    load_builtins()
    entry = PROTOCOLS.get(protocol)
    if context.data_root is not None and not Path(context.data_root).is_dir():
        raise HarnessError(f"--data-root {context.data_root}: no such folder")
    embedded = context.data_root is None
    choice = choose_method(method, protocol, embedded)
    roles = protocol_datasets(protocol, embedded, datasets)
    return expand_draws(entry.plan(roles, list(seeds), choice, shots, context), draws, context)
