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


# Extra preset folders added by ``--include`` (third-party methods), searched after ``methods/``.
EXTRA_PRESET_DIRS: list[Path] = []


def preset_dirs() -> list[Path]:
    """The folders presets are read from: ``methods/`` then every included folder."""
    return [presets_dir(), *EXTRA_PRESET_DIRS]


def preset_names() -> list[str]:
    """Names of the preset files (``<folder>/<name>.yaml``), sorted."""
    return sorted({path.stem for folder in preset_dirs() if folder.is_dir() for path in folder.glob("*.yaml")})


def find_preset(name: str) -> Path | None:
    """The file of preset ``name`` (the first folder of ``preset_dirs`` that has it), or ``None``."""
    for folder in preset_dirs():
        path = folder / f"{name}.yaml"
        if path.is_file():
            return path
    return None


def preset_path(name: str) -> Path:
    """The file of preset ``name``; ``ConfigError`` naming the known presets if there is none."""
    path = find_preset(name)
    if path is None:
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
    """The config of a preset or a plain method name, with ``layers`` applied in order.

    The keys allowed are those of the method's own config class (``Method.config_class``).

    Args:
        preset_or_method: a preset name (``methods/<name>.yaml`` or an included preset), or a registered
            method name, which starts from that method's defaults.
        layers: ``(mapping, source)`` pairs, e.g. ``(run_yaml, "run.yaml")``, ``(sets, "--set")``.

    Raises:
        ConfigError: for an unknown name, key or value (the message names the source and what is allowed).
    """
    path = find_preset(preset_or_method)
    if path is not None:
        first, source = preset_layer(preset_or_method), f"{path.parent.name}/{path.name}"
    elif preset_or_method in METHODS:
        first, source = {"method": preset_or_method}, preset_or_method
    else:
        raise ConfigError(
            f"{preset_or_method!r} is neither a preset ({', '.join(preset_names())}) "
            f"nor a method ({', '.join(METHODS.names())})"
        )
    method = str(first["method"])
    if method not in METHODS:
        raise ConfigError(f"{source}: method={method!r} is not registered; methods: {', '.join(METHODS.names())}")
    config = merge(METHODS.get(method).config_class(method=method), first, source)
    for layer, layer_source in layers:
        if "method" in layer and layer["method"] != method:
            raise ConfigError(f"{layer_source}: method={layer['method']!r}, but {source} is for method {method!r}")
        config = merge(config, layer, layer_source)
    return config


def for_shots(config: MethodConfig, shots: int | None, dataset: str | None = None) -> MethodConfig:
    """``config`` with ``max_epoch`` resolved for the shot count and dataset (see ``MethodConfig.epochs_for``).

    The published CoOp few-shot schedule depends on both (ImageNet 50 epochs; others 50/100/200 by shots).
    """
    return dataclasses.replace(config, max_epoch=config.epochs_for(shots, dataset))
