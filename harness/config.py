"""Method configuration: one frozen dataclass with the defaults, and the layered merge.

Merge order (later wins): dataclass defaults < dataset card < method preset < run YAML < CLI flags
< ``--set key=value``. Every layer is a plain mapping checked against the dataclass fields: an unknown
key or a value of the wrong type is a ``ConfigError`` that names the key, the source and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import yaml

from harness.errors import ConfigError

CLASS_TOKEN_POSITIONS = ("end", "middle", "front")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "amp")


@dataclass(frozen=True)
class MethodConfig:
    """Everything a method, its training and its evaluation are configured by (official defaults)."""

    method: str = "zeroshot"
    # Prompt learner (official TRAINER.COOP / TRAINER.COCOOP keys).
    n_ctx: int = 16
    ctx_init: str = ""
    csc: bool = False
    class_token_position: str = "end"
    # Zero-shot: extra templates for the ensemble ("{}" is the class name).
    templates: tuple[str, ...] = ()
    # Optimisation (Dassl defaults as used by every CoOp/CoCoOp yaml).
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 5e-4
    max_epoch: int = 200
    warmup_epoch: int = 1
    warmup_cons_lr: float = 1e-5
    batch_size: int = 32
    test_batch_size: int = 100
    # Few-shot epochs by shot count, when a preset differs by shots (CoOp few-shot: 1->50, 2/4->100, 8/16->200).
    epochs_by_shots: tuple[tuple[int, int], ...] = ()
    # Epochs by dataset registry name, which win over epochs_by_shots (CoOp on ImageNet: 50 for every shot count).
    epochs_by_dataset: tuple[tuple[str, int], ...] = ()
    precision: str = "auto"
    # CoCoOp: prompts encoded per text-encoder call (images x classes); 0 sizes the call from chunk_memory_mb,
    # the estimated activation memory one call may use.
    max_prompts_per_chunk: int = 0
    chunk_memory_mb: int = 1024
    # Encode prompts truncated to the longest end-of-text position, and CoOp/CoCoOp's start token + context
    # once per context instead of once per class (both exact for causal text towers).
    truncate_prompts: bool = True
    num_workers: int = 0
    # Train-time RandomResizedCrop area range (Dassl INPUT.RRCROP_SCALE; official (0.08, 1.0)).
    train_crop_scale: tuple[float, float] = (0.08, 1.0)

    def epochs_for(self, shots: int | None, dataset: str | None = None) -> int:
        """The number of epochs: ``epochs_by_dataset``, else ``epochs_by_shots``, else ``max_epoch``."""
        by_dataset = dict(self.epochs_by_dataset)
        if dataset is not None and dataset in by_dataset:
            return by_dataset[dataset]
        return dict(self.epochs_by_shots).get(shots, self.max_epoch) if shots is not None else self.max_epoch

    def digest(self) -> str:
        """A short stable hash of every field, for run keys and records."""
        payload = json.dumps(dataclasses.asdict(self), sort_keys=True, default=list)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _allowed(field_type: Any) -> str:
    return getattr(field_type, "__name__", str(field_type))


def coerce_value(key: str, value: Any, field_type: Any, source: str) -> Any:
    """Check and convert ``value`` for field ``key`` of type ``field_type``; ``ConfigError`` if it does not fit."""
    origin = typing.get_origin(field_type)
    if origin is tuple:
        args = typing.get_args(field_type)
        if isinstance(value, Mapping) and typing.get_origin(args[0]) is tuple:
            value = list(value.items())  # {1: 50, 2: 100} -> ((1, 50), (2, 100))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce_value(key, v, args[0], source) for v in value)
        if len(value) != len(args):  # a fixed-length tuple such as (shots, epochs)
            raise ConfigError(f"{source}: {key} entries must have {len(args)} items, got {value!r}")
        return tuple(coerce_value(key, v, t, source) for v, t in zip(value, args))
    if origin in (typing.Union, types.UnionType):
        return value
    if field_type is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
    if field_type is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{source}: {key} must be an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{source}: {key} must be an integer, got {value!r}") from None
    if field_type is float:
        if isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {key} must be a number, got {value!r}") from None
    if field_type is str:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be a string, got {value!r}")
        return str(value)
    if isinstance(field_type, tuple):
        return value
    raise ConfigError(f"{source}: {key} has unsupported type {_allowed(field_type)}")


def merge(config: MethodConfig, layer: Mapping[str, Any], source: str) -> MethodConfig:
    """Return ``config`` with the keys of ``layer`` replaced, after checking each key and type.

    Raises:
        ConfigError: naming the unknown key and the allowed keys, or the wrong value and its type.
    """
    hints = typing.get_type_hints(MethodConfig)
    names = {f.name for f in fields(MethodConfig)}
    updates: dict[str, Any] = {}
    for key, value in layer.items():
        if key not in names:
            raise ConfigError(f"{source}: unknown key {key!r}; allowed keys: {', '.join(sorted(names))}")
        updates[key] = coerce_value(key, value, hints[key], source)
    merged = dataclasses.replace(config, **updates)
    validate(merged, source)
    return merged


def validate(config: MethodConfig, source: str) -> None:
    """Check value ranges and choices; raise ``ConfigError`` naming the key and the allowed values."""
    if config.class_token_position not in CLASS_TOKEN_POSITIONS:
        raise ConfigError(
            f"{source}: class_token_position={config.class_token_position!r}; "
            f"allowed: {', '.join(CLASS_TOKEN_POSITIONS)}"
        )
    if config.precision not in PRECISIONS:
        raise ConfigError(f"{source}: precision={config.precision!r}; allowed: {', '.join(PRECISIONS)}")
    for key in ("n_ctx", "max_epoch", "batch_size", "test_batch_size", "chunk_memory_mb"):
        if getattr(config, key) < 1:
            raise ConfigError(f"{source}: {key} must be at least 1, got {getattr(config, key)}")
    low, high = config.train_crop_scale
    if not 0 < low <= high <= 1:
        raise ConfigError(f"{source}: train_crop_scale must be two numbers with 0 < low <= high <= 1, "
                          f"got {list(config.train_crop_scale)}")
    if config.lr <= 0:
        raise ConfigError(f"{source}: lr must be positive, got {config.lr}")


def parse_set_options(options: Iterable[str]) -> dict[str, Any]:
    """Parse ``--set key=value`` options; values are read as YAML scalars (``true``, ``3``, ``0.5``, ``abc``)."""
    parsed: dict[str, Any] = {}
    for option in options:
        key, sep, raw = option.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {option!r}: expected key=value")
        try:
            parsed[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {option!r}: cannot parse value: {exc}") from None
    return parsed


def load_yaml_mapping(path: Any) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; raise ``ConfigError`` naming the file otherwise."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
