"""Reading weights files safely: checksums, and state dicts from every supported file format.

Supported: safetensors, ``torch.save`` files (zip or legacy format, read with ``weights_only=True``), and
TorchScript archives such as OpenAI's released CLIP ``.pt`` files (read as data, see ``torchscript``).
A file is never allowed to run code; anything that is not plain tensor data is refused with a
``CheckpointError`` that names the file.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from harness.errors import CheckpointError
from harness.models.torchscript import is_torchscript_archive, read_torchscript_state_dict

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in chunks (weights files can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_readable_file(path: Path) -> None:
    """Raise ``CheckpointError`` saying what to do when ``path`` is missing, a folder or unreadable."""
    if not path.exists():
        raise CheckpointError(
            f"{path}: weights file not found; pass an existing file (OpenAI CLIP .pt, open_clip .pt/.pth/.bin, "
            ".safetensors) or a folder in the embedded asset format"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the file: {exc.strerror}") from None


def _is_safetensors(path: Path) -> bool:
    # A safetensors file starts with an 8-byte header length followed by a JSON header ("{").
    with open(path, "rb") as handle:
        head = handle.read(9)
    return path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file: {exc}") from None


def _unpickler_reason(exc: Exception) -> str:
    """The useful part of torch's weights-only error (its advice to retry with weights_only=False is dropped)."""
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|$)", str(exc), re.DOTALL)
    reason = match.group(1) if match else str(exc)
    return " ".join(reason.split())[:300]


def _read_torch_file(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(exc)
        if "global" in reason.lower() or "class" in reason.lower():
            # weights_only refused an object that is not tensor data; never retry with weights_only=False.
            raise CheckpointError(
                f"{path}: refused: the file holds Python objects other than tensors, and loading it would run code "
                f"({reason}); save the weights as a plain state dict or safetensors"
            ) from None
        raise CheckpointError(f"{path}: not a readable weights file (expected a torch.save state dict, a "
                              f"TorchScript CLIP archive or safetensors): {reason}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"{path}: not a readable weights file (expected a torch.save state dict, a TorchScript CLIP archive or "
            f"safetensors): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None


def _unwrap(path: Path, loaded: Any) -> dict[str, torch.Tensor]:
    """The flat state dict inside a loaded object (training checkpoints nest it under ``state_dict``)."""
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not loaded:
        raise CheckpointError(
            f"{path}: expected a state dict (a mapping of names to tensors), got {type(loaded).__name__}"
        )
    state = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{path}: the file holds no tensors")
    # DistributedDataParallel checkpoints prefix every key with "module.".
    if all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def read_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read the tensors of a weights file, without running any code from it.

    Args:
        path: a safetensors file, a ``torch.save`` file or a TorchScript archive.

    Returns:
        The state dict and the file format (``"safetensors"``, ``"torchscript"`` or ``"torch"``).

    Raises:
        CheckpointError: missing, unreadable or refused file, with what to do about it.
    """
    check_readable_file(path)
    if _is_safetensors(path):
        return _unwrap(path, _read_safetensors(path)), "safetensors"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if is_torchscript_archive(archive):
                return _unwrap(path, read_torchscript_state_dict(path, archive)), "torchscript"
    return _unwrap(path, _read_torch_file(path)), "torch"
