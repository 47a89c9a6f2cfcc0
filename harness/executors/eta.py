"""The remaining time of a sweep, from the planned work and the measured speed (pure functions, no clock).

The work of a run is its training steps (epochs x batches per epoch) and the images of each of its
evaluations. The display measures seconds per training step, seconds per evaluated image and the fixed
time per run (loading, data preparation) as runs progress; the estimate is the work left times those
rates. Extrapolating the first run's duration over all runs (the first is often the largest) gave
estimates several times the truth; weighting each run by its own work does not.

When only one rate has been measured (the first run is still training), the other is derived from it with
``TRAIN_STEP_COST``: a training step over ``batch_size`` images (forward and backward through the prompt
learner and text encoder) costs about that many times the evaluation of one image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# A training step costs about this many times (batch_size x the evaluation of one image): forward + backward.
TRAIN_STEP_COST = 2.0


@dataclass(frozen=True)
class RunWork:
    """The planned work of one run.

    Attributes:
        train_steps: optimizer steps of its training (0 when it does not train or its training is finished).
        batch_size: images per training step.
        eval_images: images of each evaluation, in the order the run evaluates them.
    """

    train_steps: int = 0
    batch_size: int = 1
    eval_images: tuple[int, ...] = ()


@dataclass(frozen=True)
class Rates:
    """Measured speed: seconds per training step, per evaluated image, and fixed seconds per run."""

    step_s: float | None = None
    image_s: float | None = None
    run_overhead_s: float = 0.0


@dataclass(frozen=True)
class Remaining:
    """Work still to do: training steps, evaluated images, runs not finished, and their mean batch size."""

    train_steps: int
    eval_images: int
    runs: int
    batch_size: float = 1.0


def training_steps(train_images: int, batch_size: int, epochs: int) -> int:
    """Steps of a training: batches per epoch (``drop_last`` when the set holds a full batch) x epochs."""
    if train_images <= 0 or epochs <= 0:
        return 0
    batches = train_images // batch_size if train_images >= batch_size else 1
    return batches * epochs


def remaining_work(todo: Sequence[RunWork], steps_done: int = 0, evals_done: int = 0) -> Remaining:
    """The work of the unfinished runs ``todo``.

    The first run of ``todo`` is the current one, ``steps_done`` training steps and ``evals_done``
    finished evaluations into it.
    """
    steps = images = 0
    for position, work in enumerate(todo):
        done_steps, done_evals = (steps_done, evals_done) if position == 0 else (0, 0)
        steps += max(work.train_steps - done_steps, 0)
        images += sum(work.eval_images[done_evals:])
    batches = [w.batch_size for w in todo if w.train_steps] or [1]
    return Remaining(steps, images, len(todo), sum(batches) / len(batches))


def fill_rates(rates: Rates, batch_size: float) -> Rates | None:
    """``rates`` with a missing step or image rate derived from the other (``None`` if neither is known)."""
    step_s, image_s = rates.step_s, rates.image_s
    if step_s is None and image_s is None:
        return None
    if step_s is None:
        step_s = image_s * batch_size * TRAIN_STEP_COST
    if image_s is None:
        image_s = step_s / (batch_size * TRAIN_STEP_COST)
    return Rates(step_s, image_s, rates.run_overhead_s)


def estimate_seconds(remaining: Remaining, rates: Rates, overhead_spent_s: float = 0.0) -> float | None:
    """Seconds left for ``remaining`` at ``rates`` (``None`` before anything was measured).

    ``overhead_spent_s``: time the current run already spent outside training and evaluation (loading),
    taken off its fixed cost.
    """
    filled = fill_rates(rates, remaining.batch_size)
    if filled is None:
        return None
    overhead = remaining.runs * filled.run_overhead_s
    if remaining.runs:
        overhead -= min(overhead_spent_s, filled.run_overhead_s)
    return remaining.train_steps * filled.step_s + remaining.eval_images * filled.image_s + overhead


def work_cost(work: RunWork) -> float:
    """A run's work in evaluated-image equivalents (for progress measured only by finished runs)."""
    return work.train_steps * work.batch_size * TRAIN_STEP_COST + sum(work.eval_images) + 1.0


def estimate_from_finished(done: Sequence[RunWork], todo: Sequence[RunWork], elapsed_s: float) -> float | None:
    """Seconds left when only finished runs are seen (parallel workers): elapsed x cost left / cost done."""
    cost_done = sum(work_cost(w) for w in done)
    if cost_done <= 0 or elapsed_s <= 0:
        return None
    return elapsed_s * sum(work_cost(w) for w in todo) / cost_done


def format_duration(seconds: float) -> str:
    """``1h05m``, ``3m07s`` or ``42s``."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
