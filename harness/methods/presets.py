"""Method presets: the published configurations as YAML files in the top-level ``methods/`` folder.

A preset file holds MethodConfig keys (``method`` included) plus one ``meta`` mapping that is not
configuration: ``title``, ``reproduces`` (paper and table) and ``source`` (the official config files and
scripts), and for an embedded variant ``changes`` (what differs from the published preset, and why).
``resolve_config`` applies, later winning: MethodConfig defaults < preset < each given layer (run YAML,
CLI flags, ``--set``), each checked by ``harness.config.merge`` (unknown keys and wrong types are errors).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from harness.config import MethodConfig, load_yaml_mapping, merge
from harness.errors import ConfigError
from harness.paths import presets_dir
from harness.registries import METHODS

META_KEY = "meta"
REQUIRED_META = ("title", "reproduces", "source")


def preset_names() -> list[str]:
    """Names of the preset files (``methods/<name>.yaml``), sorted."""
    folder = presets_dir()
    return sorted(path.stem for path in folder.glob("*.yaml")) if folder.is_dir() else []


def preset_path(name: str) -> Path:
    """The file of preset ``name``; ``ConfigError`` naming the known presets if there is none."""
    path = presets_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(preset_names()) or '(none)'}")
    return path


def load_preset(name: str) -> dict[str, Any]:
    """Read preset ``name``: a dict of MethodConfig keys plus the ``meta`` mapping.

    Raises:
        ConfigError: for a missing file, a missing ``method`` key or an incomplete ``meta`` mapping.
    """
    path = preset_path(name)
    data = load_yaml_mapping(path)
    if "method" not in data:
        raise ConfigError(f"{path}: a preset must name its method (key 'method')")
    meta = data.get(META_KEY)
    if not isinstance(meta, dict) or any(not meta.get(key) for key in REQUIRED_META):
        raise ConfigError(f"{path}: '{META_KEY}' must be a mapping with {', '.join(REQUIRED_META)}")
    return data


def preset_layer(name: str) -> dict[str, Any]:
    """The configuration keys of preset ``name`` (its ``meta`` mapping removed)."""
    return {key: value for key, value in load_preset(name).items() if key != META_KEY}


def resolve_config(preset_or_method: str, *layers: tuple[dict[str, Any], str]) -> MethodConfig:
    """The MethodConfig of a preset or a plain method name, with ``layers`` applied in order.

    Args:
        preset_or_method: a preset name (``methods/<name>.yaml``), or a registered method name, which
            starts from the defaults with ``method`` set.
        layers: ``(mapping, source)`` pairs, e.g. ``(run_yaml, "run.yaml")``, ``(sets, "--set")``.

    Raises:
        ConfigError: for an unknown name, key or value (the message names the source and what is allowed).
    """
    if (presets_dir() / f"{preset_or_method}.yaml").is_file():
        config = merge(MethodConfig(), preset_layer(preset_or_method), f"methods/{preset_or_method}.yaml")
    elif preset_or_method in METHODS:
        config = MethodConfig(method=preset_or_method)
    else:
        raise ConfigError(
            f"{preset_or_method!r} is neither a preset ({', '.join(preset_names())}) "
            f"nor a method ({', '.join(METHODS.names())})"
        )
    for layer, source in layers:
        config = merge(config, layer, source)
    if config.method not in METHODS:
        raise ConfigError(f"method={config.method!r} is not registered; methods: {', '.join(METHODS.names())}")
    return config


def for_shots(config: MethodConfig, shots: int | None, dataset: str | None = None) -> MethodConfig:
    """``config`` with ``max_epoch`` resolved for the shot count and dataset (see ``MethodConfig.epochs_for``).

    The published CoOp few-shot schedule depends on both (ImageNet 50 epochs; others 50/100/200 by shots).
    """
    return dataclasses.replace(config, max_epoch=config.epochs_for(shots, dataset))
