"""Prompt-learner checkpoints: the harness's own files and the official ``prompt_learner/model.pth.tar-N``.

Our files (written by ``save_weights``) are plain dicts of tensors and Python values, loadable with
``torch.load(weights_only=True)``: ``format``, ``method``, ``config`` (every MethodConfig field),
``state_dict`` (``ctx`` and ``meta_net.*``, official names; the class buffers are rebuilt from the class
names instead of being stored), ``classnames``, ``template``, ``epoch``, ``backbone``, ``optimizer``
(a plain ``state_dict()``) and ``val_result`` (None, as the official files).

Official files (Dassl ``save_checkpoint``) hold ``state_dict`` (``ctx``, ``token_prefix``, ``token_suffix``,
plus ``meta_net.*`` for CoCoOp), ``epoch``, ``optimizer``, ``scheduler`` and ``val_result``; the scheduler's
state pickles a ``CosineAnnealingLR`` whose ``optimizer`` is a pickled ``SGD`` (holding a ``defaultdict``).
They are read with torch's weights-only unpickler and an explicit allowlist of exactly those classes, so a
file whose unpickling would import or call anything else is refused before any of it runs.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from harness.config import MethodConfig, merge
from harness.errors import CheckpointError, HarnessError
from harness.fs_errors import save_with_space_check
from harness.methods.base import Method, OfficialLayout
from harness.models.backbone import Backbone
from harness.registries import METHODS

FORMAT = "harness.prompt_learner"
FORMAT_VERSION = 1
OUR_FOLDER = "prompt_learner"
# Keys files written before per-method configs stored for every method; ignored when they hold these defaults.
LEGACY_KEYS = {"templates": ()}


def _defaultdict_as_dict(default_factory: Any = None) -> dict[Any, Any]:
    """Stands in for ``collections.defaultdict`` while unpickling (the optimizer's unused ``state``)."""
    return {}


# Globals an official file may name besides tensors: the pickled scheduler and optimizer objects.
OFFICIAL_SAFE_GLOBALS: list[Any] = [
    torch.optim.lr_scheduler.CosineAnnealingLR,
    torch.optim.SGD,
    (_defaultdict_as_dict, "collections.defaultdict"),
    dict,  # the defaultdict's default_factory
]


def read_checkpoint(path: Path) -> Any:
    """Unpickle ``path`` with the weights-only unpickler and the official allowlist, on the CPU.

    Raises:
        CheckpointError: for a missing or unreadable file, or one that would import anything else.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file")
    try:
        with torch.serialization.safe_globals(OFFICIAL_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).strip().splitlines()
        named = [line for line in detail if "GLOBAL" in line or "Unsupported" in line]
        reason = (named or detail or [""])[-1]
        raise CheckpointError(
            f"{path}: refused: loading it would need more than tensors and the allowed torch classes "
            f"(CosineAnnealingLR, SGD, defaultdict); nothing in it was run. Unpickler: {reason.strip()}"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {exc}") from None


def checkpoint_folders() -> list[str]:
    """Sub-folders a run folder may keep weights in: ours (``prompt_learner``) and every official layout's."""
    folders = [OUR_FOLDER]
    for name in METHODS.names():
        for layout in METHODS.get(name).official_layouts:
            folders += [folder for folder in layout.folders if folder not in folders]
    return folders


def resolve_weights_path(path: Path) -> Path:
    """A weights file, or a run folder: its ``<folder>/checkpoint`` entry, else its last ``model.pth.tar-N``.

    ``<folder>`` is ``prompt_learner`` (ours and CoOp's) or another registered official layout's folder.
    """
    if path.is_file():
        return path
    folder = next((path / name for name in checkpoint_folders() if (path / name).is_dir()), path)
    if not folder.is_dir():
        raise CheckpointError(f"{path}: no such weights file or run folder")
    pointer = folder / "checkpoint"
    if pointer.is_file():
        named = folder / pointer.read_text(encoding="utf-8").strip()
        if named.is_file():
            return named
    candidates = [p for p in folder.glob("model.pth.tar-*") if p.name.rsplit("-", 1)[1].isdigit()]
    if not candidates:
        raise CheckpointError(f"{path}: no model.pth.tar-N file in {folder}")
    return max(candidates, key=lambda p: int(p.name.rsplit("-", 1)[1]))


def save_weights(
    path: Path, method: Method, *, epoch: int, optimizer_state: dict[str, Any] | None = None
) -> None:
    """Write ``method``'s learned prompt state in our format, atomically (temporary file, then rename)."""
    backbone = method.backbone
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": method.name,
        "config": dataclasses.asdict(method.config),
        "state_dict": method.learned_state(),
        "classnames": list(method.classnames),
        "template": method.template,
        "epoch": int(epoch),
        "backbone": {"name": backbone.name, "sha256": backbone.weights_sha256},
        "optimizer": optimizer_state,
        "val_result": None,
    }
    atomic_save(payload, path)


def atomic_save(payload: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    # A full disk surfaces from torch's zip writer as a RuntimeError: say so, and leave no .tmp behind.
    save_with_space_check(lambda target: torch.save(payload, target), temporary, path)


def load_weights(
    path: Path | str, backbone: Backbone, overrides: Mapping[str, Any] | None = None, method: str | None = None
) -> tuple[Method, MethodConfig]:
    """Build the method stored in ``path`` (our format or an official checkpoint) on ``backbone``.

    The caller then calls ``method.set_classes(classnames, template, dataset)`` for the dataset it evaluates
    (our files come with their training classes already set).

    Args:
        path: a weights file or a run folder.
        backbone: the backbone the weights were learned on (same widths).
        overrides: config keys to change (``--set``), e.g. ``class_token_position`` for an official CoOp file
            trained with ``middle`` or ``front``.
        method: the method the file must hold (``--method``); for an official file it chooses among the
            methods whose layout the tensors match.

    Raises:
        CheckpointError: for a refused, unreadable or unrecognised file, or one that does not fit the backbone.
    """
    file = resolve_weights_path(Path(path))
    content = read_checkpoint(file)
    overrides = dict(overrides or {})
    if isinstance(content, dict) and content.get("format") == FORMAT:
        loaded, config = _load_ours(file, content, backbone, overrides)
        if method is not None and config.method != method:
            raise CheckpointError(f"{file}: holds a {config.method} model, not {method}")
        return loaded, config
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict):
        state = {key.removeprefix("module."): value for key, value in content["state_dict"].items()}
        return _load_official(file, state, backbone, overrides, method)
    keys = sorted(content) if isinstance(content, dict) else type(content).__name__
    raise CheckpointError(f"{file}: not a checkpoint of ours nor an official one (no 'state_dict'); found {keys}")


def stored_config(file: Path, content: Mapping[str, Any]) -> MethodConfig:
    """The config stored in one of our files, checked against its method's config class."""
    name = str(content.get("method"))
    if name not in METHODS:
        raise CheckpointError(f"{file}: method {name!r} is not registered (did you forget --include?)")
    config_class = METHODS.get(name).config_class
    known = {item.name for item in dataclasses.fields(config_class)}
    stored = dict(content["config"])
    for key, default in LEGACY_KEYS.items():
        if key not in known and key in stored and tuple(stored[key]) == default:
            del stored[key]
    return merge(config_class(method=name), stored, f"{file} (stored config)")


def _load_ours(
    file: Path, content: dict[str, Any], backbone: Backbone, overrides: dict[str, Any]
) -> tuple[Method, MethodConfig]:
    if content.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{file}: format version {content.get('format_version')}, expected {FORMAT_VERSION}")
    config = stored_config(file, content)
    _check_fixed_keys(file, config, overrides, ("method",))
    config = merge(config, overrides, "--set")
    method = _build(file, backbone, config, content["state_dict"])
    if content.get("classnames"):
        method.set_classes(content["classnames"], content.get("template") or method.template)
    return method, config


def match_official(file: Path, state: Mapping[str, Any], method: str | None) -> tuple[str, OfficialLayout]:
    """The method and layout an official state dict belongs to (``method`` chooses among several matches).

    Raises:
        CheckpointError: when no registered layout matches, or several do and neither ``method`` nor a primary
            layout decides.
    """
    names = [method] if method is not None else METHODS.names()
    found = [(name, layout) for name in names for layout in METHODS.get(name).official_layouts
             if layout.matches(state)]
    if len(found) > 1:
        found = [item for item in found if item[1].primary] or found
    if len(found) == 1:
        return found[0]
    keys = ", ".join(sorted(state)[:8])
    if not found:
        which = f"method {method!r}" if method is not None else "any registered method"
        raise CheckpointError(f"{file}: its state dict (keys {keys}) is not an official checkpoint of {which}")
    raise CheckpointError(f"{file}: matches the official layouts of {', '.join(n for n, _ in found)}; "
                          "say which with --method")


def _load_official(
    file: Path, state: dict[str, Any], backbone: Backbone, overrides: dict[str, Any], method: str | None
) -> tuple[Method, MethodConfig]:
    name, layout = match_official(file, state, method)
    config_class = METHODS.get(name).config_class
    inferred_keys = {"method": name, **layout.infer(state)}
    inferred = merge(config_class(method=name), inferred_keys, f"{file} ({layout.name})")
    _check_fixed_keys(file, inferred, overrides, tuple(inferred_keys))
    config = merge(inferred, overrides, "--set")
    return _build(file, backbone, config, state), config


def _check_fixed_keys(file: Path, config: MethodConfig, overrides: Mapping[str, Any], fixed: tuple[str, ...]) -> None:
    for key in fixed:
        if key in overrides and overrides[key] != getattr(config, key):
            raise CheckpointError(
                f"{file}: {key}={getattr(config, key)!r} is fixed by the weights; "
                f"cannot override it with {overrides[key]!r}"
            )


def _build(file: Path, backbone: Backbone, config: MethodConfig, state: Mapping[str, torch.Tensor]) -> Method:
    method = METHODS.get(config.method)(backbone, config)
    try:
        method.load_learned_state(state)
    except HarnessError as exc:
        raise CheckpointError(f"{file}: {exc}") from None
    return method
