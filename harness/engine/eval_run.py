"""One standalone evaluation, as ``harness eval`` runs it: data, backbone, method, evaluation, records, predictions.

``run_eval`` is the library function behind the CLI verb: it resolves the method configuration (preset or
method name < ``--precision`` < ``--set``), loads the backbone and the task data, builds the method (or
loads trained prompts with ``--weights``), evaluates it and returns the result with its records.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.engine.evaluate import EvalResult, evaluate
from harness.errors import ConfigError
from harness.results.records import EvaluationInfo, make_records


@dataclass(frozen=True)
class EvalJob:
    """What to evaluate (the ``harness eval`` options); ``None`` means "not given"."""

    dataset: str
    method: str | None = None
    data_root: Path | None = None
    subsample: str = "all"
    split: str = "test"
    shots: int | None = None
    seed: int | None = None
    model: str = "embedded"
    pretrained: str | None = None
    model_config: str | None = None
    device: str = "auto"
    precision: str | None = None
    weights: Path | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int | None = None


@dataclass
class EvalOutcome:
    """The result of ``run_eval``: the evaluation, its records and the names it ran under."""

    result: EvalResult
    records: list[dict[str, Any]]
    method: str
    dataset: str
    split: str


def _config_layers(job: EvalJob) -> list[tuple[dict[str, Any], str]]:
    layers: list[tuple[dict[str, Any], str]] = []
    if job.precision is not None:
        layers.append(({"precision": job.precision}, "--precision"))
    if job.overrides:
        layers.append((dict(job.overrides), "--set"))
    return layers


def _build(job: EvalJob, task: Any) -> tuple[Any, Any, Any]:
    """(backbone, method, config) for the job: from a preset/method name, or from ``--weights``."""
    from harness.methods import build_method, resolve_config
    from harness.models import load_backbone

    if job.weights is None:
        if job.method is None:
            raise ConfigError("harness eval needs --method (a method or preset name) or --weights FILE")
        config = resolve_config(job.method, *_config_layers(job))
        backbone = load_backbone(job.model, job.pretrained, job.device, config.precision, model_config=job.model_config)
        method = build_method(config.method, backbone, config, task.classnames, task.template)
        return backbone, method, config
    from harness.methods.checkpoints import load_weights  # lazy: only needed with --weights

    backbone = load_backbone(job.model, job.pretrained, job.device, job.precision or "auto",
                             model_config=job.model_config)
    overrides = dict(job.overrides)
    if job.precision is not None:
        overrides["precision"] = job.precision
    method, config = load_weights(job.weights, backbone, overrides)
    if job.method is not None and resolve_config(job.method).method != config.method:
        raise ConfigError(f"--method {job.method} but {job.weights} holds a {config.method} model")
    method.set_classes(task.classnames, task.template)
    return backbone, method, config


def run_eval(job: EvalJob) -> EvalOutcome:
    """Evaluate one method on one dataset split and make its records (nothing is written here).

    Raises:
        HarnessError: for bad data, configuration or weights (the message says which and what to do).
    """
    from harness.data import prepare_task_data

    task = prepare_task_data(job.dataset, job.data_root, shots=job.shots, seed=job.seed, subsample=job.subsample)
    backbone, method, config = _build(job, task)
    start = time.monotonic()
    result = evaluate(method, backbone, task, split=job.split, batch_size=job.batch_size or config.test_batch_size,
                      num_workers=config.num_workers)
    duration = time.monotonic() - start
    info = EvaluationInfo(
        method=config.method,
        dataset=task.dataset,
        split=job.split,
        subsample=job.subsample,
        backbone=backbone.name,
        backbone_sha256=backbone.weights_sha256,
        split_sha256=task.split_sha256,
        config_hash=config.digest(),
        shots=job.shots,
        seed=job.seed,
        protocol="eval",
    )
    extra = {"preset": job.method or config.method, "precision": backbone.precision}
    records = make_records(info, result.metrics(), n_images=result.n_images, duration_s=duration, extra=extra)
    return EvalOutcome(result, records, config.method, task.dataset, job.split)


def write_predictions(path: Path, result: EvalResult) -> None:
    """One JSON line per image: ``image`` (as in the split file), ``label``, ``pred``, ``logits`` (label order).

    Written to a temporary file and renamed, so the file is either complete or absent.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for image, label, pred, logits in zip(result.impaths, result.labels, result.preds, result.logits.tolist(),
                                              strict=True):
            handle.write(json.dumps({"image": image, "label": label, "pred": pred, "logits": logits}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
