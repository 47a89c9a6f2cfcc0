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
from harness.methods.base import Method
from harness.models.backbone import Backbone
from harness.registries import METHODS

FORMAT = "harness.prompt_learner"
FORMAT_VERSION = 1
# Keys of an official checkpoint fixed by its tensors: an override may not contradict them.
INFERRED_KEYS = ("method", "n_ctx", "csc", "ctx_init")


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


def resolve_weights_path(path: Path) -> Path:
    """A weights file, or a run folder: its ``prompt_learner/checkpoint`` entry, else its last ``model.pth.tar-N``."""
    if path.is_file():
        return path
    folder = path / "prompt_learner" if (path / "prompt_learner").is_dir() else path
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
    path: Path | str, backbone: Backbone, overrides: Mapping[str, Any] | None = None
) -> tuple[Method, MethodConfig]:
    """Build the method stored in ``path`` (our format or an official prompt-learner file) on ``backbone``.

    The caller then calls ``method.set_classes(classnames, template)`` for the dataset it evaluates (our
    files come with their training classes already set).

    Args:
        path: a weights file or a run folder.
        backbone: the backbone the prompts were learned on (same text width and embedding size).
        overrides: MethodConfig keys to change (``--set``), e.g. ``class_token_position`` for an official
            CoOp file trained with ``middle`` or ``front``.

    Raises:
        CheckpointError: for a refused, unreadable or unrecognised file, or one that does not fit the backbone.
    """
    file = resolve_weights_path(Path(path))
    content = read_checkpoint(file)
    overrides = dict(overrides or {})
    if isinstance(content, dict) and content.get("format") == FORMAT:
        return _load_ours(file, content, backbone, overrides)
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict) and "ctx" in content["state_dict"]:
        return _load_official(file, content["state_dict"], backbone, overrides)
    keys = sorted(content) if isinstance(content, dict) else type(content).__name__
    raise CheckpointError(
        f"{file}: not a prompt-learner checkpoint (expected our format or an official file with "
        f"state_dict['ctx']); found {keys}"
    )


def _load_ours(
    file: Path, content: dict[str, Any], backbone: Backbone, overrides: dict[str, Any]
) -> tuple[Method, MethodConfig]:
    if content.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{file}: format version {content.get('format_version')}, expected {FORMAT_VERSION}")
    config = merge(MethodConfig(), content["config"], f"{file} (stored config)")
    _check_fixed_keys(file, config, overrides)
    config = merge(config, overrides, "--set")
    method = _build(file, backbone, config, content["state_dict"])
    if content.get("classnames"):
        method.set_classes(content["classnames"], content.get("template") or method.template)
    return method, config


def _load_official(
    file: Path, state: dict[str, torch.Tensor], backbone: Backbone, overrides: dict[str, Any]
) -> tuple[Method, MethodConfig]:
    state = {key.removeprefix("module."): value for key, value in state.items()}
    ctx = state["ctx"]
    if not isinstance(ctx, torch.Tensor) or ctx.dim() not in (2, 3):
        raise CheckpointError(f"{file}: ctx must be a tensor (n_ctx, D) or (n_cls, n_ctx, D)")
    conditional = any(key.startswith("meta_net.") for key in state)
    inferred = MethodConfig(
        method="cocoop" if conditional else "coop", n_ctx=int(ctx.shape[-2]), csc=ctx.dim() == 3, ctx_init=""
    )
    _check_fixed_keys(file, inferred, overrides)
    config = merge(inferred, overrides, "--set")
    return _build(file, backbone, config, state), config


def _check_fixed_keys(file: Path, config: MethodConfig, overrides: Mapping[str, Any]) -> None:
    for key in INFERRED_KEYS:
        if key in overrides and overrides[key] != getattr(config, key):
            raise CheckpointError(
                f"{file}: {key}={getattr(config, key)!r} is fixed by the weights; "
                f"cannot override it with {overrides[key]!r}"
            )


def _build(file: Path, backbone: Backbone, config: MethodConfig, state: dict[str, torch.Tensor]) -> Method:
    ctx = state["ctx"]
    if ctx.shape[-1] != backbone.text_width:
        raise CheckpointError(
            f"{file}: context width {ctx.shape[-1]} does not match the text width {backbone.text_width} of "
            f"backbone {backbone.name!r} (weights learned on another backbone)"
        )
    method = METHODS.get(config.method)(backbone, config)
    try:
        method.load_learned_state(state)
    except HarnessError as exc:
        raise CheckpointError(f"{file}: {exc}") from None
    return method
