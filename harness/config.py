"""Method configuration: the shared keys (``MethodConfig``), each method's subclass of it, and the layered merge.

Merge order (later wins): dataclass defaults < dataset card < method preset < run YAML < CLI flags
< ``--set key=value``. Every layer is a plain mapping checked against the fields of the method's config class
(``Method.config_class``, a subclass of ``MethodConfig``): an unknown
key or a value of the wrong type is a ``ConfigError`` that names the key, the source and what is allowed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import yaml

from harness.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "amp")
# Model selection (--selection): the last epoch, the few-shot validation split, or fixed hyperparameters.
SELECTIONS = ("last", "val", "none")
C = TypeVar("C", bound="MethodConfig")


def option(default: Any, help: str, *, speed: bool = False) -> Any:
    """A config field with its one-line meaning; ``speed=True`` marks keys that never change a number.

    Speed-only keys (worker processes, batch sizes of evaluation, speed paths that compute the same logits) are
    left out of ``digest``, so changing them does not make finished runs stale.
    """
    if isinstance(default, list | dict):
        raise TypeError("config defaults must be immutable (use a tuple)")
    return field(default=default, metadata={"help": help, "speed": speed})


@dataclass(frozen=True)
class MethodConfig:
    """The keys every method shares: the method's name, optimisation, schedule, precision and data loading.

    Each method registers its own subclass (``Method.config_class``) that adds its keys; presets and ``--set``
    are checked against that subclass. Defaults are the official Dassl values used by every CoOp-family yaml.
    """

    method: str = option("zeroshot", "the registered method this configuration is for")
    lr: float = option(0.002, "learning rate (OPTIM.LR)")
    momentum: float = option(0.9, "SGD momentum (OPTIM.MOMENTUM)")
    weight_decay: float = option(5e-4, "weight decay (OPTIM.WEIGHT_DECAY)")
    max_epoch: int = option(200, "number of training epochs (OPTIM.MAX_EPOCH)")
    warmup_epoch: int = option(1, "constant warm-up epochs before the cosine schedule (OPTIM.WARMUP_EPOCH)")
    warmup_cons_lr: float = option(1e-5, "learning rate of the warm-up epochs (OPTIM.WARMUP_CONS_LR)")
    batch_size: int = option(32, "training batch size (DATALOADER.TRAIN_X.BATCH_SIZE)")
    epochs_by_shots: tuple[tuple[int, int], ...] = option(
        (), "epochs per shot count, e.g. {1: 50, 2: 100} (CoOp few-shot schedule)")
    epochs_by_dataset: tuple[tuple[str, int], ...] = option(
        (), "epochs per dataset name, winning over epochs_by_shots (e.g. {imagenet: 50})")
    precision: str = option("auto", "auto (fp32 on CPU, amp on CUDA), fp32, bf16, fp16 (official pure fp16) or amp")
    train_crop_scale: tuple[float, float] = option(
        (0.08, 1.0), "area range of the train-time RandomResizedCrop (Dassl INPUT.RRCROP_SCALE)")
    train_flip: bool = option(True, "random horizontal flip in the train transform (Dassl random_flip)")
    selection: str = option(
        "last", "model selection: last (the last epoch / published fixed values), val (choose on the few-shot "
        "validation split), none (validation-free fixed hyperparameters); never the test split")
    test_batch_size: int = option(100, "evaluation batch size (DATALOADER.TEST.BATCH_SIZE)", speed=True)
    num_workers: int = option(0, "DataLoader worker processes (official: 8)", speed=True)

    def epochs_for(self, shots: int | None, dataset: str | None = None) -> int:
        """The number of epochs: ``epochs_by_dataset``, else ``epochs_by_shots``, else ``max_epoch``."""
        by_dataset = dict(self.epochs_by_dataset)
        if dataset is not None and dataset in by_dataset:
            return by_dataset[dataset]
        return dict(self.epochs_by_shots).get(shots, self.max_epoch) if shots is not None else self.max_epoch

    def digest(self) -> str:
        """A short stable hash of what can change a run's numbers, for run folders and records.

        Covers the method name and every key that is not speed-only and differs from its default, so adding
        a key whose default keeps the old behaviour leaves existing runs' hashes (and their results) valid.
        A default therefore never changes value: a new behaviour gets a new key.
        """
        payload = {"method": self.method}
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name != "method" and not item.metadata.get("speed") and value != item.default:
                payload[item.name] = value
        text = json.dumps(payload, sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def validate(self, source: str) -> None:
        """Check value ranges and choices; raise ``ConfigError`` naming the key and the allowed values.

        Subclasses extend it (calling ``super().validate``) for their own keys.
        """
        if self.selection not in SELECTIONS:
            raise ConfigError(f"{source}: selection={self.selection!r}; allowed: {', '.join(SELECTIONS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"{source}: precision={self.precision!r}; allowed: {', '.join(PRECISIONS)}")
        for key in ("max_epoch", "batch_size", "test_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{source}: {key} must be at least 1, got {getattr(self, key)}")
        if self.num_workers < 0:
            raise ConfigError(f"{source}: num_workers must be 0 or more, got {self.num_workers}")
        low, high = self.train_crop_scale
        if not 0 < low <= high <= 1:
            raise ConfigError(f"{source}: train_crop_scale must be two numbers with 0 < low <= high <= 1, "
                              f"got {list(self.train_crop_scale)}")
        if self.lr <= 0:
            raise ConfigError(f"{source}: lr must be positive, got {self.lr}")

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str, bool]]:
        """``(key, type, default, meaning, speed-only)`` for every key, in declaration order."""
        hints = typing.get_type_hints(cls)
        return [(f.name, _allowed(hints[f.name]), f.default, f.metadata.get("help", ""), bool(f.metadata.get("speed")))
                for f in fields(cls)]


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


def merge(config: C, layer: Mapping[str, Any], source: str) -> C:
    """Return ``config`` with the keys of ``layer`` replaced, after checking each key and type.

    The allowed keys are the fields of ``type(config)`` (the method's own config class).

    Raises:
        ConfigError: naming the unknown key and the allowed keys, or the wrong value and its type.
    """
    config_class = type(config)
    hints = typing.get_type_hints(config_class)
    names = {f.name for f in fields(config_class)}
    updates: dict[str, Any] = {}
    for key, value in layer.items():
        if key not in names:
            raise ConfigError(f"{source}: unknown key {key!r} for method {config.method!r}; "
                              f"allowed keys: {', '.join(sorted(names))}")
        updates[key] = coerce_value(key, value, hints[key], source)
    merged = dataclasses.replace(config, **updates)
    merged.validate(source)
    return merged


def speed_keys(config_class: type[MethodConfig]) -> set[str]:
    """The keys of ``config_class`` that never change a number (left out of ``digest``)."""
    return {f.name for f in fields(config_class) if f.metadata.get("speed")}


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
