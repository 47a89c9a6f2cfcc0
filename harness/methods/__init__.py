"""Methods: zero-shot CLIP, CoOp and CoCoOp, registered in ``METHODS`` when this package is imported.

``build_method`` constructs a registered method for a class list; ``config_for`` makes a method's config from
keys; ``load_preset`` / ``resolve_config`` read the published configurations in the top-level ``methods/``
folder (see ``harness.methods.presets``). The contract every method implements is ``harness.methods.base``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.config import MethodConfig, merge
from harness.methods import (  # noqa: F401  (register "coop", "cocoop", "zeroshot")
    cocoop,
    coop,
    maple,  # noqa: F401  (register "maple")
    zeroshot,
)
from harness.methods.base import Method, OfficialLayout, TrainOutput
from harness.methods.presets import for_shots, load_preset, preset_names, resolve_config
from harness.models.backbone import Backbone
from harness.registries import METHODS

__all__ = [
    "Method",
    "OfficialLayout",
    "TrainOutput",
    "build_method",
    "config_for",
    "for_shots",
    "load_preset",
    "preset_names",
    "resolve_config",
]


def config_for(method: str, **keys: Any) -> MethodConfig:
    """The config of registered method ``method`` with ``keys`` set (checked like a ``--set`` layer).

    Raises:
        HarnessError: for an unknown method; ``ConfigError`` for an unknown key or a wrong value.
    """
    config_class = METHODS.get(method).config_class
    return merge(config_class(method=method), keys, f"config_for({method!r})")


def build_method(name: str, backbone: Backbone, config: MethodConfig, classnames: Sequence[str], template: str,
                 dataset: str | None = None) -> Method:
    """Construct the registered method ``name`` and build its text side for ``classnames``.

    Args:
        name: a registered method name (``harness ls methods``).
        backbone: the frozen backbone.
        config: the method's configuration (an instance of its ``config_class``).
        classnames: class names indexed by label.
        template: the dataset's prompt template (used by zero-shot CLIP).
        dataset: the dataset's registry name, if known.

    Raises:
        HarnessError: for an unknown method or a backbone the method cannot work with.
    """
    method_class = METHODS.get(name)
    if not isinstance(config, method_class.config_class):
        from harness.errors import ConfigError

        raise ConfigError(f"method {name!r} needs a {method_class.config_class.__name__}, "
                          f"got a {type(config).__name__}")
    method = method_class(backbone, config)
    method.set_classes(classnames, template, dataset)
    return method
