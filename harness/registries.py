"""The registry instances, one per plug-in kind, and the loading of the built-in plug-ins.

Built-in plug-ins register themselves with decorators when their subpackage is imported;
``load_builtins`` imports those subpackages once.
"""

from __future__ import annotations

import importlib
from typing import Any

from harness.registry import Registry

METHODS: Registry[Any] = Registry("method")
DATASETS: Registry[Any] = Registry("dataset")
PROTOCOLS: Registry[Any] = Registry("protocol")
BACKBONES: Registry[Any] = Registry("backbone")
EXECUTORS: Registry[Any] = Registry("executor")

_BUILTIN_MODULES = (
    "harness.models",
    "harness.data",
    "harness.methods",
    "harness.protocols",
    "harness.executors",
)
_loaded = False


def load_builtins() -> None:
    """Import the built-in plug-in subpackages so that they register themselves (idempotent)."""
    global _loaded
    if _loaded:
        return
    for name in _BUILTIN_MODULES:
        importlib.import_module(name)
    _loaded = True
