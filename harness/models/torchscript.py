"""Read the weights of a TorchScript archive without running any of its code.

``torch.jit.load`` compiles and runs the code stored in the archive, so a hostile file could run anything.
An archive is a zip holding ``<root>/data.pkl`` (a pickle of the module tree whose tensors point at
``<root>/data/<key>`` records) and ``<root>/code/**.py`` (the TorchScript source of each module class). This
module unpickles ``data.pkl`` with an unpickler that resolves only tensor rebuilds and storage types, turns
every module class into an inert attribute holder, and reads which attributes are parameters and buffers from
the ``__parameters__`` / ``__buffers__`` declarations of the source, as text. The result equals
``torch.jit.load(path).state_dict()``.
"""

from __future__ import annotations

import ast
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from harness.errors import CheckpointError

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def is_torchscript_archive(archive: zipfile.ZipFile) -> bool:
    """Whether a zip file is a TorchScript archive (``torch.save`` zips have no ``constants.pkl``)."""
    return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in archive.namelist())


class _ScriptObject:
    """An inert stand-in for a TorchScript module object: it only stores its pickled attributes."""

    qualified_name = ""

    def __setstate__(self, state: Any) -> None:
        self.attributes = state if isinstance(state, dict) else {}


def _rebuild_tensor(
    storage: torch.Tensor, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_unused: Any
) -> torch.Tensor:
    # The storage arrives as a flat tensor of its dtype; ``requires_grad`` and hooks are irrelevant here.
    return torch.as_strided(storage, size, stride, offset)


def _identity(value: Any, *_unused: Any) -> Any:
    return value


# The TorchScript pickler writes typed lists through these helpers; they only wrap plain values.
_JIT_PICKLE_HELPERS = ("build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "restore_type_tag")


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves tensors, storages and module classes as inert data; refuses every other global."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, root: str, path: Path) -> None:
        import io

        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._root = root
        self._path = path
        self._classes: dict[str, type[_ScriptObject]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__"):
            qualified = f"{module}.{name}"
            if qualified not in self._classes:
                self._classes[qualified] = type(name, (_ScriptObject,), {"qualified_name": qualified})
            return self._classes[qualified]
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "torch.jit._pickle" and name in _JIT_PICKLE_HELPERS:
            return _identity
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        raise CheckpointError(
            f"{self._path}: refused: the TorchScript archive's data.pkl references {module}.{name}, "
            "which is not tensor data (a file is never allowed to run code)"
        )

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
            raise CheckpointError(f"{self._path}: unexpected storage record {pid!r} in data.pkl")
        dtype, key = pid[1], str(pid[2])
        try:
            raw = bytearray(self._archive.read(f"{self._root}/data/{key}"))
        except KeyError:
            message = f"{self._path}: data.pkl refers to tensor record {key!r}, missing from the archive"
            raise CheckpointError(message) from None
        if not raw:
            return torch.empty(0, dtype=dtype)
        return torch.frombuffer(raw, dtype=dtype)


def _declared_tensors(archive: zipfile.ZipFile, root: str, qualified_name: str, path: Path) -> list[str]:
    """Names in the ``__parameters__`` and ``__buffers__`` declarations of one class, read as text."""
    module, _, class_name = qualified_name.rpartition(".")
    # A mangled class (``pkg.mod.___torch_mangle_7.Name``) has its own file; some exporters keep it in the
    # file of the unmangled module instead, so both are tried.
    candidates = [module, re.sub(r"\.___torch_mangle_\d+$", "", module)]
    block = None
    for candidate in dict.fromkeys(candidates):
        source_name = f"{root}/code/{candidate.replace('.', '/')}.py"
        if source_name not in archive.namelist():
            continue
        source = archive.read(source_name).decode("utf-8")
        block = re.search(rf"^class {re.escape(class_name)}\(Module\):\n((?:  .*\n?)*)", source, re.MULTILINE)
        if block is not None:
            break
    if block is None:
        raise CheckpointError(f"{path}: cannot find the declaration of TorchScript class {qualified_name} in code/")
    names: list[str] = []
    for kind in ("__parameters__", "__buffers__"):
        match = re.search(rf"^  {kind} = (\[.*?\])$", block.group(1), re.MULTILINE)
        if match:
            # ``literal_eval`` only parses a list of string literals; nothing is executed.
            names.extend(ast.literal_eval(match.group(1)))
    return names


def _collect(obj: _ScriptObject, prefix: str, out: dict[str, torch.Tensor], read_names: Any) -> None:
    attributes = getattr(obj, "attributes", {})
    for name in read_names(obj.qualified_name):
        value = attributes.get(name)
        if isinstance(value, torch.Tensor):  # ``None`` for an optional bias, as in ``state_dict()``
            out[prefix + name] = value
    for name, value in attributes.items():
        if isinstance(value, _ScriptObject):
            _collect(value, f"{prefix}{name}.", out, read_names)


def read_torchscript_state_dict(path: Path, archive: zipfile.ZipFile) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive (like ``state_dict()``), without running its code.

    Raises:
        CheckpointError: when the archive is malformed or its pickle references anything but tensor data.
    """
    pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
    if len(pickles) != 1:
        raise CheckpointError(f"{path}: expected one <root>/data.pkl in the TorchScript archive, found {len(pickles)}")
    root = pickles[0].split("/")[0]
    byteorder = f"{root}/byteorder"
    if byteorder in archive.namelist() and archive.read(byteorder).strip() not in (b"little", b""):
        raise CheckpointError(f"{path}: big-endian TorchScript archives are not supported")
    try:
        top = _RestrictedUnpickler(archive.read(pickles[0]), archive, root, path).load()
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed pickle is reported the same way
        raise CheckpointError(f"{path}: cannot read the TorchScript archive's data.pkl: {exc}") from exc
    if not isinstance(top, _ScriptObject):
        raise CheckpointError(f"{path}: the TorchScript archive does not hold a module at the top level")
    cache: dict[str, list[str]] = {}

    def read_names(qualified_name: str) -> list[str]:
        if qualified_name not in cache:
            cache[qualified_name] = _declared_tensors(archive, root, qualified_name, path)
        return cache[qualified_name]

    state: dict[str, torch.Tensor] = {}
    _collect(top, "", state, read_names)
    return state
