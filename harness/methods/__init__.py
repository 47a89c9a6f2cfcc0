"""Methods: zero-shot CLIP, CoOp and CoCoOp, registered in ``METHODS`` when this package is imported.

``build_method`` constructs a registered method for a class list; ``load_preset`` / ``resolve_config``
read the published configurations in the top-level ``methods/`` folder (see ``harness.methods.presets``).
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.config import MethodConfig
from harness.methods import cocoop, coop, zeroshot  # noqa: F401  (register "coop", "cocoop", "zeroshot")
from harness.methods.base import Method
from harness.methods.presets import for_shots, load_preset, preset_names, resolve_config
from harness.models.backbone import Backbone
from harness.registries import METHODS

__all__ = ["Method", "build_method", "for_shots", "load_preset", "preset_names", "resolve_config"]


def build_method(
    name: str, backbone: Backbone, config: MethodConfig, classnames: Sequence[str], template: str
) -> Method:
    """Construct the registered method ``name`` and build its text side for ``classnames``.

    Args:
        name: a registered method name (``harness ls methods``).
        backbone: the frozen backbone.
        config: the method's configuration.
        classnames: class names indexed by label.
        template: the dataset's prompt template (used by zero-shot CLIP).

    Raises:
        HarnessError: for an unknown method or a backbone the method cannot work with.
    """
    method_class = METHODS.get(name)
    method = method_class(backbone, config)
    method.set_classes(classnames, template)
    return method
