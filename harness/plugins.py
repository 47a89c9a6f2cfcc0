"""Third-party plug-ins without a fork: ``--include PATH`` imports code that registers methods and presets.

``PATH`` is a Python file, a package folder (with ``__init__.py``) or a plain folder of Python files; importing
it runs its ``@METHODS.register(...)`` decorators. A folder's ``*.yaml`` files (and those of its ``methods/``
sub-folder) become presets, searched after the top-level ``methods/``. Protocol runs record the include paths
in each ``RunSpec`` so that worker processes (``--jobs``, Ray) import the same code before running.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path

from harness.errors import ConfigError

_LOADED: set[Path] = set()


def load_includes(paths: Iterable[str | Path]) -> None:
    """Import every include path once per process (idempotent), after the built-in plug-ins.

    Raises:
        ConfigError: for a path that does not exist or is not a ``.py`` file or a folder, or code that fails
            to import (the message names the path and the error).
    """
    from harness.registries import load_builtins

    load_builtins()
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if path in _LOADED:
            continue
        if path.is_file() and path.suffix == ".py":
            _import_file(path)
        elif path.is_dir():
            _import_folder(path)
        else:
            raise ConfigError(f"--include {raw}: no such Python file or folder")
        _LOADED.add(path)


def _module_name(path: Path) -> str:
    return f"harness_include_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"


def _import_file(path: Path) -> None:
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"--include {path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # any error in third-party code: name the file, keep the cause
        del sys.modules[name]
        raise ConfigError(f"--include {path}: importing it failed: {type(exc).__name__}: {exc}") from exc


def _import_folder(path: Path) -> None:
    from harness.methods.presets import EXTRA_PRESET_DIRS

    if (path / "__init__.py").is_file():
        _import_file(path / "__init__.py")
    else:
        for file in sorted(path.glob("*.py")):
            _import_file(file)
    for folder in (path, path / "methods"):
        if folder.is_dir() and any(folder.glob("*.yaml")) and folder not in EXTRA_PRESET_DIRS:
            EXTRA_PRESET_DIRS.append(folder)
