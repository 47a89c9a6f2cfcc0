"""One standalone evaluation, as ``harness eval`` runs it: data, backbone, method, evaluation, records, predictions.

``run_eval`` is the library function behind the CLI verb: it resolves the method configuration (preset or
method name < ``--precision`` < ``--set``), loads the backbone and the task data, builds the method (or
loads trained prompts with ``--weights``), evaluates it and returns the result with its records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.engine.evaluate import EvalResult
from harness.engine.pipeline import (
    RecordContext,
    build_for_task,
    cached_backbone,
    evaluate_to_records,
    load_task,
    resolve_method_config,
)
from harness.errors import ConfigError


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


def run_eval(job: EvalJob) -> EvalOutcome:
    """Evaluate one method on one dataset split and make its records (nothing is written here).

    Raises:
        HarnessError: for bad data, configuration or weights (the message says which and what to do).
    """
    task = load_task(job.dataset, job.data_root, shots=job.shots, seed=job.seed, subsample=job.subsample)
    if job.weights is None:
        if job.method is None:
            raise ConfigError("harness eval needs --method (a method or preset name) or --weights FILE")
        config = resolve_method_config(job.method, precision=job.precision, overrides=job.overrides)
        backbone = cached_backbone(job.model, job.pretrained, job.device, config.precision, job.model_config)
        method, config = build_for_task(config, backbone, task)
    else:
        backbone = cached_backbone(job.model, job.pretrained, job.device, job.precision or "auto", job.model_config)
        overrides = dict(job.overrides)
        if job.precision is not None:
            overrides["precision"] = job.precision
        method_name = resolve_method_config(job.method).method if job.method is not None else None
        method, config = build_for_task(None, backbone, task, weights=job.weights, overrides=overrides,
                                        method_name=method_name)
    context = RecordContext(protocol="eval", method=config.method, preset=job.method or config.method,
                            subsample=job.subsample, shots=job.shots, seed=job.seed)
    result, records = evaluate_to_records(method, backbone, task, config, job.split, context, job.batch_size)
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
