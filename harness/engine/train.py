"""Training a prompt-learning method as the official CoOp/CoCoOp trainer does (spec section 4).

- Cross-entropy on the logits; SGD (momentum 0.9, weight decay 5e-4, no dampening, no Nesterov) over the
  method's trainable parameters only (the prompt learner; CLIP stays frozen and in eval mode).
- Learning rate per epoch from ``harness.engine.schedule.learning_rate`` (constant 1e-5 warm-up epoch,
  then cosine over ``max_epoch``, set once per epoch).
- ``RandomSampler`` batches of ``batch_size``, ``drop_last`` only when the set holds at least one batch.
- Seeds, in the official order as far as it applies here: the few-shot selection is made before (by
  ``prepare_task_data``, from its own generator); then ``torch.manual_seed(seed)`` (plus Python ``random`` and
  numpy) and the prompt learner's parameters are re-drawn (``init_parameters``: ctx, then meta-net), so the
  result does not depend on how the method was built; the sampler has its own ``torch.Generator`` seeded
  with ``seed``. (The official ctx init also depends on the RNG draws of building CLIP, which no other
  implementation can reproduce; with ``ctx_init`` words the context is deterministic.)
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler

from harness.config import MethodConfig
from harness.engine.integrity import record_checksums, repair_training
from harness.engine.resume import RESUME_FILE, RunIdentity, capture_rng, load_resume_state, restore_rng
from harness.engine.resume import save_resume_state as _save_state
from harness.engine.schedule import learning_rate
from harness.errors import ConfigError, DataError, HarnessError
from harness.methods.base import Method
from harness.methods.checkpoints import save_weights
from harness.models.backbone import Backbone


class TrainingDiverged(HarnessError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainProgress:
    """One training step, as passed to the ``progress`` callback (after the optimizer step).

    Attributes:
        epoch / max_epoch: 1-based epoch and the number of epochs.
        step / steps: 1-based batch index in the epoch and the number of batches.
        loss: this batch's loss; ``loss_avg`` / ``acc_avg``: means over the epoch so far (accuracy in %).
        lr: the learning rate of this epoch.
    """

    epoch: int
    max_epoch: int
    step: int
    steps: int
    loss: float
    loss_avg: float
    acc_avg: float
    lr: float

    @property
    def epoch_done(self) -> bool:
        """True on the last batch of an epoch (the CLI prints one line per epoch then)."""
        return self.step == self.steps


ProgressCallback = Callable[[TrainProgress], None]


@dataclass
class TrainResult:
    """What a training produced: where the weights are, and how it went."""

    run_dir: Path
    weights: Path
    epochs: int
    resumed_from_epoch: int
    losses: list[float] = field(default_factory=list)  # mean loss per epoch
    accuracies: list[float] = field(default_factory=list)  # mean batch accuracy per epoch (%)
    lrs: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    already_done: bool = False
    notice: str = ""  # what was found damaged and rebuilt ("" normally)


def training_precision(config: MethodConfig, backbone: Backbone) -> str:
    """The precision a training runs in: the backbone's (``auto`` in the config follows it).

    The backbone carries the precision it was loaded with (``harness.models.load_backbone``): ``amp``
    autocasts inside its encoders, ``fp16``/``bf16`` convert its weights. The prompt parameters stay float32
    except in the official pure-fp16 mode.

    Raises:
        ConfigError: when the config asks for a precision the backbone was not loaded with.
    """
    if config.precision not in ("auto", backbone.precision):
        raise ConfigError(
            f"precision={config.precision} but the backbone was loaded with precision {backbone.precision}; "
            f"load it with --precision {config.precision}"
        )
    return backbone.precision


def build_train_loader(task_data: Any, backbone: Backbone, config: MethodConfig,
                       generator: torch.Generator) -> tuple[DataLoader, Callable[[torch.Tensor], torch.Tensor]]:
    """The official train loader (random sampler, train transform, drop_last only with a full batch).

    Returns:
        The loader, which yields uint8 images cropped and flipped per image, and the batch normalisation that
        completes the official transform (``ToTensor`` + ``Normalize``, bit-identical) on the device.
    """
    from harness.data import ImageDataset, build_pipeline  # lazy: keeps the method modules light

    if not task_data.train:
        raise DataError(f"dataset {task_data.dataset}: the train split is empty")
    pipeline = build_pipeline(backbone.preprocessing, train=True, crop_scale=config.train_crop_scale)
    dataset = ImageDataset(task_data.train, task_data.image_dir, pipeline.per_image)
    loader = DataLoader(
        dataset, batch_size=config.batch_size, sampler=RandomSampler(dataset, generator=generator),
        drop_last=len(dataset) >= config.batch_size, num_workers=config.num_workers,
        pin_memory=backbone.device.type == "cuda",
    )
    return loader, pipeline.normalize


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
    precision: str
    generator: torch.Generator
    identity: RunIdentity
    state_path: Path
    history: dict[str, list[float]]
    progress: ProgressCallback | None


def train_method(method: Method, backbone: Backbone, task_data: Any, config: MethodConfig, run_dir: Path,
                 seed: int, progress: ProgressCallback | None = None, run_info: dict[str, Any] | None = None
                 ) -> TrainResult:
    """Train ``method`` on ``task_data.train`` and save it into ``run_dir``; resume if a state is there.

    Args:
        method: a trainable method whose classes are ``task_data.classnames``.
        backbone: its frozen backbone.
        task_data: a ``harness.data.TaskData`` (``train``, ``image_dir``, ``classnames``, ``dataset``).
        config: the method's config; ``max_epoch`` is the number of epochs (see ``harness.methods.for_shots``).
        run_dir: the run folder (created); holds ``prompt_learner/`` and ``config.json``.
        seed: the run's seed (see the module docstring for what it seeds).
        progress: called after every optimizer step with a ``TrainProgress``.
        run_info: extra values recorded in ``config.json`` (dataset, shots, subsample...).

    Raises:
        TrainingDiverged: the loss became NaN or infinite (names the epoch and step; nothing is written).
        HarnessError: an untrainable method, or a run folder holding another training.
    """
    if not method.trainable:
        raise HarnessError(f"method {method.name!r} has nothing to train")
    started = time.monotonic()
    run_dir = Path(run_dir)
    weights = run_dir / "prompt_learner" / f"model.pth.tar-{config.max_epoch}"
    identity = RunIdentity(method.name, config.digest(), int(seed), list(method.classnames))
    state_path = run_dir / "prompt_learner" / RESUME_FILE
    notice = repair_training(weights.parent, weights, state_path)  # a damaged finished training is redone
    saved = load_resume_state(state_path, identity)
    if saved is not None and saved["epoch"] >= config.max_epoch and weights.is_file():
        method.load_learned_state(saved["learned"])
        return _result(run_dir, weights, config, saved["epoch"], saved["history"], started, already_done=True)
    session = _start(method, backbone, task_data, config, seed, identity, state_path, progress)
    start_epoch = _resume(session, saved)
    for epoch in range(start_epoch, config.max_epoch):
        _run_epoch(session, epoch)
    method.eval()
    save_weights(weights, method, epoch=config.max_epoch, optimizer_state=session.optimizer.state_dict())
    (weights.parent / "checkpoint").write_text(weights.name + "\n", encoding="utf-8")
    _write_config(run_dir, method, config, seed, run_info)
    record_checksums(weights.parent, [weights, state_path])
    result = _result(run_dir, weights, config, start_epoch, session.history, started)
    result.notice = notice
    return result


def _start(method: Method, backbone: Backbone, task_data: Any, config: MethodConfig, seed: int,
           identity: RunIdentity, state_path: Path, progress: ProgressCallback | None) -> _Session:
    if list(task_data.classnames) != list(method.classnames):
        raise HarnessError("the method's classes differ from the task's: call set_classes(task_data.classnames, ...)")
    precision = training_precision(config, backbone)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    method.init_parameters()
    generator = torch.Generator().manual_seed(seed)
    loader, normalize = build_train_loader(task_data, backbone, config, generator)
    optimizer = torch.optim.SGD(
        method.trainable_parameters(), lr=learning_rate(0, config.lr, config.max_epoch, config.warmup_epoch,
                                                        config.warmup_cons_lr),
        momentum=config.momentum, weight_decay=config.weight_decay, dampening=0.0, nesterov=False,
    )
    # Loss scaling only where autocast runs in float16 (amp on CUDA); amp on CPU autocasts to bfloat16.
    scaler = torch.amp.GradScaler("cuda") if precision == "amp" and backbone.device.type == "cuda" else None
    return _Session(method, backbone, config, loader, normalize, optimizer, scaler, precision, generator, identity,
                    state_path, {"loss": [], "acc": [], "lr": []}, progress)


def _resume(session: _Session, saved: dict[str, Any] | None) -> int:
    """Load a saved state into the session; the number of epochs already done (0 for a fresh start)."""
    if saved is None:
        return 0
    session.method.load_learned_state(saved["learned"])
    # The optimizer's state refers to the parameters by position; rebuilding keeps their order.
    session.optimizer = torch.optim.SGD(session.method.trainable_parameters(), lr=session.config.lr)
    session.optimizer.load_state_dict(saved["optimizer"])
    if session.scaler is not None and saved["scaler"] is not None:
        session.scaler.load_state_dict(saved["scaler"])
    restore_rng(saved["rng"], session.generator)
    session.history = {key: list(values) for key, values in saved["history"].items()}
    return int(saved["epoch"])


def _batches(session: _Session) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    device = session.backbone.device
    for images, labels, _ in session.loader:
        pixels = session.normalize(images.to(device, non_blocking=True))
        yield pixels, labels.to(device, non_blocking=True)


def _run_epoch(session: _Session, epoch: int) -> None:
    config, method = session.config, session.method
    lr = learning_rate(epoch, config.lr, config.max_epoch, config.warmup_epoch, config.warmup_cons_lr)
    for group in session.optimizer.param_groups:
        group["lr"] = lr
    method.train()
    steps = len(session.loader)
    if steps == 0:
        raise DataError("the train loader yields no batch")
    loss_sum = acc_sum = 0.0
    for step, (images, labels) in enumerate(_batches(session), start=1):
        loss, accuracy = _train_step(session, images, labels, epoch, step, steps)
        loss_sum, acc_sum = loss_sum + loss, acc_sum + accuracy
        if session.progress is not None:
            session.progress(TrainProgress(epoch + 1, config.max_epoch, step, steps, loss, loss_sum / step,
                                           acc_sum / step, lr))
    for key, value in (("loss", loss_sum / steps), ("acc", acc_sum / steps), ("lr", lr)):
        session.history[key].append(value)
    scaler_state = session.scaler.state_dict() if session.scaler is not None else None
    _save_state(session.state_path, epoch=epoch + 1, identity=session.identity, learned=method.learned_state(),
                optimizer=session.optimizer.state_dict(), scaler=scaler_state, rng=capture_rng(session.generator),
                history=session.history)


def _train_step(session: _Session, images: torch.Tensor, labels: torch.Tensor, epoch: int, step: int,
                steps: int) -> tuple[float, float]:
    """Forward, NaN/Inf check, backward and SGD step; the batch loss and accuracy (%)."""
    with torch.no_grad():  # the image encoder is frozen: no graph through it, as in the official model
        features = session.backbone.encode_images(images)
    logits = session.method(features)  # the backbone autocasts inside its encoders for amp
    loss = F.cross_entropy(logits, labels)
    if not bool(torch.isfinite(loss)):
        raise TrainingDiverged(
            f"loss is {loss.item()} at epoch {epoch + 1}/{session.config.max_epoch}, step {step}/{steps}; "
            "training stopped and no weights or results were written for this run. Rerunning gives the same "
            "loss: lower the learning rate (--set lr=...) or train in fp32 (--precision fp32), then rerun"
        )
    session.optimizer.zero_grad(set_to_none=True)
    if session.scaler is not None:
        session.scaler.scale(loss).backward()
        session.scaler.step(session.optimizer)
        session.scaler.update()
    else:
        loss.backward()
        session.optimizer.step()
    accuracy = (logits.argmax(dim=-1) == labels).float().mean().item() * 100.0
    return loss.item(), accuracy


def _write_config(run_dir: Path, method: Method, config: MethodConfig, seed: int,
                  run_info: dict[str, Any] | None) -> None:
    payload = {"method": method.name, "seed": seed, "config": dataclasses.asdict(config),
               "config_hash": config.digest(), "backbone": method.backbone.name,
               "backbone_sha256": method.backbone.weights_sha256, "classnames": list(method.classnames)}
    payload.update(run_info or {})
    (run_dir / "config.json").write_text(json.dumps(payload, indent=2, default=list) + "\n", encoding="utf-8")


def _result(run_dir: Path, weights: Path, config: MethodConfig, start_epoch: int, history: dict[str, list[float]],
            started: float, already_done: bool = False) -> TrainResult:
    return TrainResult(run_dir, weights, config.max_epoch, start_epoch, list(history["loss"]), list(history["acc"]),
                       list(history["lr"]), time.monotonic() - started, already_done)
