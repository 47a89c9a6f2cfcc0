"""The method contract: every hook the engine calls on a method, declared here with its default.

A method is an ``nn.Module`` registered with ``@METHODS.register("name")``. It owns its configuration class,
its learnable parameters, its text side, its loss and what it changes inside the encoders; the engine owns
every loop (data, optimiser, schedule, checkpoints, evaluation, records) and calls only what is declared
here. ``docs/writing-a-method.md`` walks through a complete method.

What the engine calls, in order:

1. ``Method(backbone, config)``, then ``set_classes(classnames, template, dataset)`` for the training task.
2. Training (runs that use training data): seeds the torch RNG, calls ``init_parameters()``, optionally loads
   ``--init`` weights (``load_learned_state``), then ``fit(context)`` (training-free fitting, e.g. a cache
   or a probe), then, for ``trainable`` methods, per epoch ``train()`` and per batch ``training_loss(inputs,
   labels)`` -> ``backward(output)`` -> ``before_optimizer_step()`` -> optimiser step, and
   ``on_epoch_end(epoch, max_epoch)`` after each epoch. ``build_optimizer`` makes the optimiser.
3. Evaluation, per evaluated dataset: ``set_classes(...)``, ``prepare_eval()``, then ``forward(inputs)`` per
   batch, under ``no_grad``.

``inputs`` depends on ``image_input``: ``"features"`` (default) gives L2-normalised float32 image features of
the frozen image tower (the shared feature cache applies); ``"pixels"`` gives normalised image batches
``(B, 3, H, W)`` and the method runs the image tower itself (``backbone.encode_images(pixels, hooks=...)``),
so gradients can flow through the frozen tower into its own parameters; no feature cache then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from harness.config import MethodConfig
from harness.models.backbone import Backbone

if TYPE_CHECKING:
    from harness.engine.fit import FitContext

IMAGE_INPUTS = ("features", "pixels")


@dataclass
class TrainOutput:
    """What ``training_loss`` returns for one batch.

    Attributes:
        loss: the scalar to minimise.
        logits: the batch's logits (for the running training accuracy).
        terms: named loss terms as floats or tensors, recorded per epoch (e.g. ``{"ce": ..., "kg": ...}``).
        extra: anything ``backward`` needs later (e.g. a second loss ProGrad differentiates separately).
    """

    loss: torch.Tensor
    logits: torch.Tensor
    terms: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OfficialLayout:
    """An official checkpoint layout a method can import (``harness eval --weights``, ``train --init``).

    Attributes:
        name: a short name for messages (e.g. ``"CoOp prompt_learner"``).
        folders: the sub-folder names the official trainer saves under (e.g. ``("prompt_learner",)``).
        matches: ``state_dict -> bool``: whether a state dict has this layout (keys and shapes).
        infer: ``state_dict -> dict`` of config keys fixed by the tensors (e.g. ``n_ctx``).
        primary: the method to choose when a file matches several methods' layouts and no ``--method`` is
            given (e.g. a bare ``ctx`` is CoOp's, though KgCoOp and ProGrad save the same keys).
    """

    name: str
    folders: tuple[str, ...]
    matches: Any
    infer: Any
    primary: bool = False


class Method(nn.Module):
    """Base class of every method. Subclasses register with ``@METHODS.register("name")``.

    Class attributes a subclass sets:
        name: its registry name.
        config_class: its config dataclass (a ``MethodConfig`` subclass adding its keys).
        trainable: whether it has parameters trained by gradient epochs.
        image_input: ``"features"`` or ``"pixels"`` (see the module docstring).
        official_layouts: official checkpoint layouts it reads (``OfficialLayout``).
        protocol_presets: the published preset it runs each protocol with, when not the preset named like
            the method (e.g. CoOp's base-to-new baseline is ``coop_base2new``); ``_embedded`` variants follow.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[MethodConfig]] = MethodConfig
    trainable: ClassVar[bool] = False
    image_input: ClassVar[str] = "features"
    official_layouts: ClassVar[tuple[OfficialLayout, ...]] = ()
    protocol_presets: ClassVar[dict[str, str]] = {}

    def __init__(self, backbone: Backbone, config: MethodConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.config = config
        self.classnames: list[str] = []
        self.template = "a photo of a {}."
        self.dataset: str | None = None

    # -- classes ------------------------------------------------------------------------------------
    def set_classes(self, classnames: Sequence[str], template: str, dataset: str | None = None) -> None:
        """Build the text side for ``classnames`` (indexed by label), the dataset's template and registry name."""
        self.classnames = list(classnames)
        self.template = template
        self.dataset = dataset

    # -- training -----------------------------------------------------------------------------------
    @classmethod
    def uses_training_data(cls) -> bool:
        """Whether runs of this method sample few-shot training data (trains, or overrides ``fit``)."""
        return cls.trainable or cls.fit is not Method.fit

    def init_parameters(self) -> None:
        """Re-draw the learnable parameters from the torch RNG the engine has just seeded."""

    def fit(self, context: FitContext) -> None:
        """Fit from the training data without gradient epochs (caches, probes); runs before any epoch."""

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates (empty for training-free methods)."""
        return [p for p in self.parameters() if p.requires_grad]

    def build_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """The optimiser over ``trainable_parameters()``: SGD with the config's momentum and weight decay.

        The engine sets each parameter group's ``lr`` every epoch from the schedule.
        """
        config = self.config
        return torch.optim.SGD(self.trainable_parameters(), lr=lr, momentum=config.momentum,
                               weight_decay=config.weight_decay, dampening=0.0, nesterov=False)

    def training_loss(self, inputs: torch.Tensor, labels: torch.Tensor) -> TrainOutput:
        """The training objective of one batch: cross-entropy of ``forward(inputs)`` by default."""
        logits = self(inputs)
        loss = F.cross_entropy(logits, labels)
        return TrainOutput(loss, logits, {"ce": loss.detach()})

    def backward(self, output: TrainOutput, scale: Any = None) -> None:
        """Compute the gradients of ``output.loss`` (``scale``: the AMP loss scaler's ``scale``, if any)."""
        loss = output.loss if scale is None else scale(output.loss)
        loss.backward()

    def before_optimizer_step(self) -> None:
        """Called after ``backward`` and before the optimiser step (e.g. to rewrite gradients)."""

    def on_epoch_end(self, epoch: int, max_epoch: int) -> None:
        """Called after each training epoch (``epoch`` is 1-based), before the state is saved."""

    # -- evaluation ---------------------------------------------------------------------------------
    def prepare_eval(self) -> None:
        """Called once, under ``no_grad``, before evaluation: compute what does not depend on the image."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)`` for a batch of ``inputs`` (features or pixels, see ``image_input``)."""
        raise NotImplementedError

    # -- state --------------------------------------------------------------------------------------
    def learned_state(self) -> dict[str, torch.Tensor]:
        """The learned tensors to save (official key names where an official format exists); none by default."""
        return {}

    def load_learned_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load tensors saved by ``learned_state`` or an official checkpoint of this method.

        Raises:
            HarnessError: for a missing or unexpected key or a tensor of the wrong shape.
        """
        if state:
            from harness.errors import HarnessError

            raise HarnessError(f"method {self.name!r} has no learned state, got keys {sorted(state)}")
