"""Training a method as the official Dassl trainers do (spec section 4), through the method contract.

- The method's ``training_loss`` (cross-entropy by default), ``backward`` and ``before_optimizer_step``;
  its ``build_optimizer`` (SGD, momentum 0.9, weight decay 5e-4, no dampening, no Nesterov by default) over
  its trainable parameters only (CLIP stays frozen and in eval mode); ``on_epoch_end`` after each epoch.
- Learning rate per epoch from ``harness.engine.schedule.learning_rate`` (constant 1e-5 warm-up epoch,
  then cosine over ``max_epoch``, set once per epoch).
- ``RandomSampler`` batches of ``batch_size``, ``drop_last`` only when the set holds at least one batch.
- Seeds, in the official order as far as it applies here: the few-shot selection is made before (by
  ``prepare_task_data``, from its own generator); then ``torch.manual_seed(seed)`` (plus Python ``random`` and
  numpy) and the prompt learner's parameters are re-drawn (``init_parameters``: ctx, then meta-net), so the
  result does not depend on how the method was built; then ``--init`` weights replace them if given, and
  ``fit`` runs (training-free fitting); the sampler has its own ``torch.Generator`` seeded with ``seed``.
  (The official ctx init also depends on the RNG draws of building CLIP, which no other implementation can
  reproduce; with ``ctx_init`` words the context is deterministic.)
- Precision is the backbone's (``training_precision``): ``fp32``; ``amp`` (autocast inside the backbone's
  encoders, float16 with a GradScaler on CUDA, bfloat16 on CPU) and ``bf16`` (bfloat16 backbone weights)
  keep the prompt parameters in float32; ``fp16`` is the official pure-fp16 mode (float16 backbone and
  prompt parameters, plain SGD step on them, no loss scaling).
- A NaN or infinite loss stops the run with an error naming the epoch and step; no result is written.
- After each epoch the resume state is saved (``harness.engine.resume``); at the end the weights go to
  ``<run_dir>/prompt_learner/model.pth.tar-<max_epoch>`` (our format) with a ``checkpoint`` pointer file
  as Dassl writes, and ``<run_dir>/config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from harness.config import MethodConfig
from harness.engine.fit import FitContext
from harness.engine.integrity import record_checksums, repair_training
from harness.engine.loaders import build_train_loader, device_batches, method_inputs, training_precision
from harness.engine.resume import RESUME_FILE, RunIdentity, capture_rng, load_resume_state, restore_rng
from harness.engine.resume import save_resume_state as _save_state
from harness.engine.schedule import learning_rate
from harness.engine.train_types import ProgressCallback, TrainingDiverged, TrainProgress, TrainResult
from harness.errors import DataError, HarnessError
from harness.methods.base import Method, TrainOutput
from harness.methods.checkpoints import save_weights
from harness.models.backbone import Backbone

__all__ = ["TrainProgress", "TrainResult", "TrainingDiverged", "build_train_loader", "train_method",
           "training_precision"]


@dataclass
class _Session:
    """The moving parts of one training (kept together so the loop functions stay small)."""

    method: Method
    backbone: Backbone
    config: MethodConfig
    loader: DataLoader
    normalize: Callable[[torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    generator: torch.Generator
    identity: RunIdentity
    state_path: Path
    history: dict[str, list[float]]
    progress: ProgressCallback | None


def train_method(method: Method, backbone: Backbone, task_data: Any, config: MethodConfig, run_dir: Path,
                 seed: int, progress: ProgressCallback | None = None, run_info: dict[str, Any] | None = None,
                 init_state: Mapping[str, torch.Tensor] | None = None) -> TrainResult:
    """Fit and train ``method`` on ``task_data.train`` and save it into ``run_dir``; resume if a state is there.

    Args:
        method: a method whose classes are ``task_data.classnames`` and that uses training data.
        backbone: its frozen backbone.
        task_data: a ``harness.data.TaskData`` (``train``, ``image_dir``, ``classnames``, ``dataset``).
        config: the method's config; ``max_epoch`` is the number of epochs (see ``harness.methods.for_shots``).
        run_dir: the run folder (created); holds ``prompt_learner/`` and ``config.json``.
        seed: the run's seed (see the module docstring for what it seeds).
        progress: called after every optimizer step with a ``TrainProgress``.
        run_info: extra values recorded in ``config.json`` (dataset, shots, subsample...).
        init_state: learned state to start from instead of a fresh initialisation (``harness train --init``);
            the optimiser and schedule still start at epoch 1.

    Raises:
        TrainingDiverged: the loss became NaN or infinite (names the epoch and step; nothing is written).
        HarnessError: a method without training, or a run folder holding another training.
    """
    if not method.uses_training_data():
        raise HarnessError(f"method {method.name!r} has nothing to train")
    started = time.monotonic()
    run_dir = Path(run_dir)
    epochs = config.max_epoch if method.trainable else 0
    weights = run_dir / "prompt_learner" / f"model.pth.tar-{epochs}"
    identity = RunIdentity(method.name, _identity_digest(config, init_state), int(seed), list(method.classnames))
    state_path = run_dir / "prompt_learner" / RESUME_FILE
    notice = repair_training(weights.parent, weights, state_path)  # a damaged finished training is redone
    saved = load_resume_state(state_path, identity)
    if saved is not None and saved["epoch"] >= epochs and weights.is_file():
        method.load_learned_state(saved["learned"])
        return _result(run_dir, weights, epochs, saved["epoch"], saved["history"], started, already_done=True)
    session = _start(method, backbone, task_data, config, seed, identity, state_path, progress, init_state)
    start_epoch = _resume(session, saved)
    for epoch in range(start_epoch, epochs):
        _run_epoch(session, epoch)
    if epochs == 0:
        _save_epoch(session, 0)  # a fit-only method: the state marks the fit as finished
    method.eval()
    save_weights(weights, method, epoch=epochs, optimizer_state=session.optimizer.state_dict())
    (weights.parent / "checkpoint").write_text(weights.name + "\n", encoding="utf-8")
    _write_config(run_dir, method, config, seed, run_info)
    record_checksums(weights.parent, [weights, state_path])
    result = _result(run_dir, weights, epochs, start_epoch, session.history, started)
    result.notice = notice
    return result


def _identity_digest(config: MethodConfig, init_state: Mapping[str, torch.Tensor] | None) -> str:
    """The config digest, plus a digest of the ``--init`` tensors when given (another start is another run)."""
    if not init_state:
        return config.digest()
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(init_state):
        tensor = init_state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"{config.digest()}+init{digest.hexdigest()[:12]}"


def _start(method: Method, backbone: Backbone, task_data: Any, config: MethodConfig, seed: int,
           identity: RunIdentity, state_path: Path, progress: ProgressCallback | None,
           init_state: Mapping[str, torch.Tensor] | None) -> _Session:
    if list(task_data.classnames) != list(method.classnames):
        raise HarnessError("the method's classes differ from the task's: call set_classes(task_data.classnames, ...)")
    precision = training_precision(config, backbone)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    method.init_parameters()
    if init_state is not None:
        method.load_learned_state(init_state)
    method.fit(FitContext(backbone, task_data, config, int(seed)))
    generator = torch.Generator().manual_seed(seed)
    loader, normalize = build_train_loader(task_data, backbone, config, generator)
    optimizer = method.build_optimizer(_learning_rate(method, config, 0))
    # Loss scaling only where autocast runs in float16 (amp on CUDA); amp on CPU autocasts to bfloat16.
    scaler = torch.amp.GradScaler("cuda") if precision == "amp" and backbone.device.type == "cuda" else None
    return _Session(method, backbone, config, loader, normalize, optimizer, scaler, generator, identity,
                    state_path, {"loss": [], "acc": [], "lr": []}, progress)


def _learning_rate(method: Method, config: MethodConfig, epoch: int) -> float:
    return learning_rate(epoch, config.lr, config.max_epoch, config.warmup_epoch, config.warmup_cons_lr)


def _resume(session: _Session, saved: dict[str, Any] | None) -> int:
    """Load a saved state into the session; the number of epochs already done (0 for a fresh start)."""
    if saved is None:
        return 0
    session.method.load_learned_state(saved["learned"])
    # The optimizer's state refers to the parameters by position; rebuilding keeps their order.
    session.optimizer = session.method.build_optimizer(session.config.lr)
    session.optimizer.load_state_dict(saved["optimizer"])
    if session.scaler is not None and saved["scaler"] is not None:
        session.scaler.load_state_dict(saved["scaler"])
    restore_rng(saved["rng"], session.generator)
    session.history = {key: list(values) for key, values in saved["history"].items()}
    return int(saved["epoch"])


def _run_epoch(session: _Session, epoch: int) -> None:
    config, method = session.config, session.method
    lr = _learning_rate(method, config, epoch)
    for group in session.optimizer.param_groups:
        group["lr"] = lr
    method.train()
    steps = len(session.loader)
    if steps == 0:
        raise DataError("the train loader yields no batch")
    sums: dict[str, float] = {"loss": 0.0, "acc": 0.0}
    batches = device_batches(session.loader, session.normalize, session.backbone.device)
    for step, (images, labels) in enumerate(batches, start=1):
        output = _train_step(session, images, labels, epoch, step, steps)
        loss = float(output.loss.detach())
        accuracy = (output.logits.detach().argmax(dim=-1) == labels).float().mean().item() * 100.0
        sums["loss"] += loss
        sums["acc"] += accuracy
        for name, value in output.terms.items():
            sums[f"term_{name}"] = sums.get(f"term_{name}", 0.0) + float(value)
        if session.progress is not None:
            session.progress(TrainProgress(epoch + 1, config.max_epoch, step, steps, loss, sums["loss"] / step,
                                           sums["acc"] / step, lr))
    for key, value in sums.items():
        session.history.setdefault(key, []).append(value / steps)
    session.history["lr"].append(lr)
    method.on_epoch_end(epoch + 1, config.max_epoch)
    _save_epoch(session, epoch + 1)


def _save_epoch(session: _Session, epochs_done: int) -> None:
    scaler_state = session.scaler.state_dict() if session.scaler is not None else None
    _save_state(session.state_path, epoch=epochs_done, identity=session.identity,
                learned=session.method.learned_state(), optimizer=session.optimizer.state_dict(),
                scaler=scaler_state, rng=capture_rng(session.generator), history=session.history)


def _train_step(session: _Session, images: torch.Tensor, labels: torch.Tensor, epoch: int, step: int,
                steps: int) -> TrainOutput:
    """Forward and loss, NaN/Inf check, backward, gradient hook and optimiser step."""
    method = session.method
    output = method.training_loss(method_inputs(method, session.backbone, images), labels)
    if not bool(torch.isfinite(output.loss)):
        raise TrainingDiverged(
            f"loss is {output.loss.item()} at epoch {epoch + 1}/{session.config.max_epoch}, step {step}/{steps}; "
            "training stopped and no weights or results were written for this run. Rerunning gives the same "
            "loss: lower the learning rate (--set lr=...) or train in fp32 (--precision fp32), then rerun"
        )
    session.optimizer.zero_grad(set_to_none=True)
    scaler = session.scaler
    method.backward(output, scaler.scale if scaler is not None else None)
    if scaler is not None:
        scaler.unscale_(session.optimizer)
    method.before_optimizer_step()
    if scaler is not None:
        scaler.step(session.optimizer)
        scaler.update()
    else:
        session.optimizer.step()
    return output


def _write_config(run_dir: Path, method: Method, config: MethodConfig, seed: int,
                  run_info: dict[str, Any] | None) -> None:
    payload = {"method": method.name, "seed": seed, "config": dataclasses.asdict(config),
               "config_hash": config.digest(), "backbone": method.backbone.name,
               "backbone_sha256": method.backbone.weights_sha256, "classnames": list(method.classnames)}
    payload.update(run_info or {})
    (run_dir / "config.json").write_text(json.dumps(payload, indent=2, default=list) + "\n", encoding="utf-8")


def _result(run_dir: Path, weights: Path, epochs: int, start_epoch: int, history: dict[str, list[float]],
            started: float, already_done: bool = False) -> TrainResult:
    return TrainResult(run_dir, weights, epochs, start_epoch, list(history["loss"]), list(history["acc"]),
                       list(history["lr"]), time.monotonic() - started, already_done)
