"""What a training reports: per-step progress, the result, and the divergence error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError


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
