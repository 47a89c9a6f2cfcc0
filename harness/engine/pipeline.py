"""The one library chain behind ``harness run``, ``harness train`` and ``harness eval``.

config resolution -> task data -> backbone -> method (fresh, from ``--weights`` or ``--init``) -> training ->
evaluation -> records. Each verb (and the protocol runner) calls these functions; none of them repeats a step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import MethodConfig
from harness.engine.evaluate import EvalResult, evaluate
from harness.errors import ConfigError

_BACKBONES: dict[tuple[Any, ...], Any] = {}


def config_layers(precision: str | None, overrides: Mapping[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """The layers above a preset: ``--precision`` (when given and not ``auto``), then ``--set``."""
    layers: list[tuple[dict[str, Any], str]] = []
    if precision is not None and precision != "auto":
        layers.append(({"precision": precision}, "--precision"))
    if overrides:
        layers.append((dict(overrides), "--set"))
    return layers


def resolve_method_config(name: str, *, precision: str | None = None, overrides: Mapping[str, Any] | None = None,
                          shots: int | None = None, dataset: str | None = None) -> MethodConfig:
    """A preset's (or method's) config < ``--precision`` < ``--set``, epochs resolved for the shots and dataset.

    The number of epochs follows the preset's schedule for the shot count and dataset (``for_shots``) unless
    ``--set max_epoch=N`` asked for N explicitly, or the method does not use training data.
    """
    from harness.methods import for_shots, resolve_config
    from harness.registries import METHODS

    overrides = dict(overrides or {})
    config = resolve_config(name, *config_layers(precision, overrides))
    if "max_epoch" in overrides or not METHODS.get(config.method).uses_training_data():
        return config
    return for_shots(config, shots, dataset)


def cached_backbone(model: str, pretrained: str | None, device: str, precision: str,
                    model_config: str | None = None) -> Any:
    """The backbone for these settings, loaded once per process (loading dominates short runs)."""
    from harness.models import load_backbone

    key = (model, pretrained, device, precision, model_config)
    if key not in _BACKBONES:
        _BACKBONES[key] = load_backbone(model, pretrained, device=device, precision=precision,
                                        model_config=model_config)
    return _BACKBONES[key]


def load_task(dataset: str, data_root: Path | str | None, *, shots: int | None, seed: int | None,
              subsample: str, draw: int = 0) -> Any:
    """The task data (``harness.data.TaskData``) of a dataset: few-shot train/val, test, base/new classes.

    ``draw`` > 0 is a few-shot draw beyond the official one (``harness run --draws``).
    """
    from harness.data import prepare_task_data

    return prepare_task_data(dataset, Path(data_root) if data_root else None, shots=shots, seed=seed,
                             subsample=subsample, draw=draw)


def build_for_task(config: MethodConfig | None, backbone: Any, task: Any, weights: Path | None = None,
                   overrides: Mapping[str, Any] | None = None, method_name: str | None = None) -> Any:
    """A fresh method for ``task``'s classes, or (``weights``) the one stored in a file, pointed at them.

    Returns:
        ``(method, config)``: with ``weights`` the config is the file's (plus ``overrides``).
    """
    from harness.methods import build_method

    if weights is None:
        return build_method(config.method, backbone, config, task.classnames, task.template, task.dataset), config
    from harness.methods.checkpoints import load_weights  # lazy: only needed with weights

    method, config = load_weights(weights, backbone, overrides, method=method_name)
    method.set_classes(task.classnames, task.template, task.dataset)
    return method, config


@dataclass(frozen=True)
class RecordContext:
    """Provenance of an evaluation that is not in the task: protocol, names, subsample, run key, training data."""

    protocol: str
    method: str
    preset: str
    subsample: str = "all"
    run_key: str | None = None
    shots: int | None = None
    seed: int | None = None
    train_dataset: str | None = None


def evaluate_to_records(method: Any, backbone: Any, task: Any, config: MethodConfig, split: str,
                        context: RecordContext, batch_size: int | None = None,
                        extra: Callable[[EvalResult], dict[str, Any]] | None = None) -> tuple[EvalResult, list[dict]]:
    """Evaluate ``method`` on one split of ``task`` and make its records.

    ``extra`` makes further record keys from the result (the protocol runner saves the per-image predictions
    there and names the file); nothing else is written here.
    """
    from harness.results.records import EvaluationInfo, make_records

    start = time.monotonic()
    result = evaluate(method, backbone, task, split=split, batch_size=batch_size or config.test_batch_size,
                      num_workers=config.num_workers)
    info = EvaluationInfo(
        method=context.method, dataset=task.dataset, split=split, subsample=context.subsample, backbone=backbone.name,
        backbone_sha256=backbone.weights_sha256, split_sha256=task.split_sha256, config_hash=config.digest(),
        shots=context.shots, seed=context.seed, protocol=context.protocol, run_key=context.run_key,
        train_dataset=context.train_dataset,
    )
    keys = {"preset": context.preset, "precision": backbone.precision, "selection": config.selection}
    if extra is not None:
        keys.update(extra(result))
    records = make_records(info, result.metrics(), n_images=result.n_images,
                           duration_s=time.monotonic() - start, extra=keys)
    return result, records


def require_trainable(config: MethodConfig) -> None:
    """``ConfigError`` if the config's method uses no training data (``harness train`` has nothing to do)."""
    from harness.registries import METHODS

    if not METHODS.get(config.method).uses_training_data():
        raise ConfigError(f"method {config.method!r} has nothing to train; use harness eval")
