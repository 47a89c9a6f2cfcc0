"""The planned work of each run (training steps, images per evaluation), from dataset cards and presets.

Counts come from the cards' class counts and split sizes, not from reading the datasets (listing
ImageNet alone takes minutes): exact for the embedded world and the official split files, and an
estimate that only feeds the ETA. A training shared by several runs (cross-dataset and domain
generalization evaluate one source model) is counted once, and one already finished on disk not at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.executors.eta import RunWork, training_steps
from harness.protocols.spec import EvalSpec, RunSpec

if TYPE_CHECKING:  # the cards module is imported lazily, when the work is planned
    from harness.data.cards import DatasetCard

VAL_SHOTS_CAP = 4  # the official few-shot val takes min(K, 4) per class


def _classes(card: DatasetCard, subsample: str) -> int:
    total = int(card.num_classes)
    if subsample == "all":
        return total
    base = card.base_new_classes[0] if card.base_new_classes else math.ceil(total / 2)
    return base if subsample == "base" else total - base


def _per_class(card: DatasetCard, split: str) -> float:
    return card.split_sizes.get(split, 0) / max(int(card.num_classes), 1)


def _train_images(spec: RunSpec) -> int:
    from harness.data.cards import load_card

    card = load_card(str(spec.train_dataset))
    per_class = _per_class(card, "test" if card.test_only else "train")
    if spec.shots is not None and spec.shots >= 1:
        per_class = min(per_class, spec.shots)
    return int(round(_classes(card, spec.train_subsample) * per_class))


def _eval_images(evaluation: EvalSpec) -> int:
    from harness.data.cards import load_card

    card = load_card(evaluation.dataset)
    if card.test_only:
        return int(card.split_sizes.get("test", 0))
    split = evaluation.split
    per_class = _per_class(card, "test" if split == "val" and card.val_is_test else split)
    if split == "val" and evaluation.shots is not None and evaluation.shots >= 1:
        per_class = min(per_class, min(evaluation.shots, VAL_SHOTS_CAP))
    return int(round(_classes(card, evaluation.subsample) * per_class))


def plan_run_work(spec: RunSpec, out_dir: Path, counted_trainings: set[str]) -> RunWork:
    """The work of one run; ``counted_trainings`` (training folders already counted) is updated."""
    from harness.engine.integrity import CHECKSUMS_FILE
    from harness.engine.runner import resolve_run_config, training_dir

    evals = tuple(_eval_images(evaluation) for evaluation in spec.evals)
    if not spec.trainable:
        return RunWork(eval_images=evals)
    config = resolve_run_config(spec)
    folder = training_dir(spec, out_dir, config.digest())
    if str(folder) in counted_trainings or (folder / "prompt_learner" / CHECKSUMS_FILE).is_file():
        return RunWork(batch_size=config.batch_size, eval_images=evals)
    counted_trainings.add(str(folder))
    steps = training_steps(_train_images(spec), config.batch_size, config.max_epoch)
    return RunWork(train_steps=steps, batch_size=config.batch_size, eval_images=evals)


def plan_work(specs: Sequence[RunSpec], out_dir: Path) -> dict[str, RunWork]:
    """The work of each run by run key; a run whose work cannot be derived counts as none (no ETA error)."""
    counted: set[str] = set()
    work = {}
    for spec in specs:
        try:
            work[spec.run_key] = plan_run_work(spec, Path(out_dir), counted)
        except Exception:  # noqa: BLE001 - the ETA is advisory: a card or preset problem surfaces in the run
            work[spec.run_key] = RunWork()
    return work
