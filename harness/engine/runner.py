"""Execute one planned run, idempotently: train (or resume), evaluate, write records, mark it done.

Layout under the output folder ``<out>``:

- ``<out>/<protocol>/<run key>/spec.json``: the ``RunSpec``.
- ``<out>/<protocol>/<run key>/records.jsonl``: the run's records (``harness.results.records``).
- ``<out>/<protocol>/<run key>/DONE``: written last; a run with ``DONE`` is finished and skipped.
- ``<out>/train/<training key>/``: the training folder ``train_method`` checkpoints into and resumes from.
  It is keyed by what determines the model (method config hash, backbone, dataset, shots, seed, subsample),
  so cross-dataset and domain generalization evaluate the same source model, as the official scripts do
  (``xd_train.sh`` once, ``xd_test.sh`` per target).

Records are written to a temporary file and moved into place just before ``DONE``: a run interrupted at any
point leaves either no ``records.jsonl`` or one without ``DONE``, which the next attempt discards, so a
record is never counted twice or half-written. A lock file per run (``fcntl.flock``, released by the OS
when a process dies) keeps two processes from running the same run at once.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.engine.pipeline import (
    RecordContext,
    build_for_task,
    cached_backbone,
    evaluate_to_records,
    load_task,
)
from harness.engine.staleness import check_finished_runs, run_config, stale_reason
from harness.errors import HarnessError
from harness.fs_errors import save_with_space_check
from harness.protocols.spec import EvalSpec, RunSpec
from harness.run_layout import (
    DONE_NAME,
    RECORDS_NAME,
    SPEC_NAME,
    count_records,
    is_done,
    locked,
    register_plan,
    run_dir,
    training_dir,
    write_atomic,
)

__all__ = ["RunOutcome", "RunProgress", "cached_backbone", "check_finished_runs", "count_records",
           "execute_run", "is_done", "register_plan", "resolve_run_config", "run_dir", "stale_reason",
           "RECORDS_NAME", "DONE_NAME", "SPEC_NAME"]
resolve_run_config = run_config


class RunProgress(Protocol):
    """What the runner reports while it works (the executor's progress display implements it)."""

    def stage(self, spec: RunSpec, message: str) -> None:
        """A new stage of ``spec`` (loading, training, evaluating a dataset)."""

    def epoch(self, spec: RunSpec, epoch: int, max_epoch: int) -> None:
        """Training of ``spec`` finished epoch ``epoch`` of ``max_epoch``."""


@dataclass(frozen=True)
class RunOutcome:
    """The result of executing one run.

    Attributes:
        run_key: the run's key.
        status: ``done`` (executed now), ``skipped`` (already finished) or ``failed``.
        run_dir: the run folder, relative to the output folder.
        n_records: records in ``records.jsonl`` (0 if failed).
        error: the error message of a failed run.
        duration_s: wall time spent on it now.
    """

    run_key: str
    status: str
    run_dir: str
    n_records: int = 0
    error: str = ""
    duration_s: float = 0.0


def execute_run(spec: RunSpec, out_dir: Path, progress: RunProgress | None = None, *,
                force: bool = False) -> RunOutcome:
    """Run ``spec`` unless it is finished: train or resume, evaluate, write records, then ``DONE``.

    Args:
        spec: the planned run.
        out_dir: the output folder (see the module docstring for the layout).
        progress: receives stages and epochs; ``None`` reports nothing.
        force: redo a finished run (its records and its training folder are deleted first).

    Raises:
        HarnessError: for bad data, configuration or weights (the message says which).
    """
    start = time.monotonic()
    if spec.includes:  # third-party methods: a worker process imports them before anything else
        from harness.plugins import load_includes

        load_includes(spec.includes)
    folder = run_dir(spec, out_dir)
    relative = str(folder.relative_to(out_dir))
    with locked(folder):
        if (folder / DONE_NAME).is_file() and not force:
            return RunOutcome(spec.run_key, "skipped", relative, count_records(folder / RECORDS_NAME))
        _reset(folder)
        write_atomic(folder / SPEC_NAME, spec.to_json())
        records = _train_and_evaluate(spec, Path(out_dir), progress or _Silent(), force)
        _publish(folder, records)
    return RunOutcome(spec.run_key, "done", relative, len(records), duration_s=time.monotonic() - start)


def _reset(folder: Path) -> None:
    """Discard what an earlier, unfinished or forced attempt left: DONE, records and temporary files."""
    for path in folder.iterdir():
        if path.name in (DONE_NAME, RECORDS_NAME, SPEC_NAME) or path.name.endswith(".tmp"):
            path.unlink()


def _publish(folder: Path, records: list[dict[str, Any]]) -> None:
    """Move the records into place, then write ``DONE`` (both atomic renames, in that order)."""
    from harness.results.records import append_records

    def write(tmp: Path) -> None:
        tmp.unlink(missing_ok=True)
        append_records(tmp, records)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())

    save_with_space_check(write, folder / f".{RECORDS_NAME}.{os.getpid()}.tmp", folder / RECORDS_NAME)
    write_atomic(folder / DONE_NAME, f"{len(records)} records\n")


class _Silent:
    def stage(self, spec: RunSpec, message: str) -> None:
        pass

    def epoch(self, spec: RunSpec, epoch: int, max_epoch: int) -> None:
        pass


def _train_and_evaluate(spec: RunSpec, out_dir: Path, progress: RunProgress, force: bool) -> list[dict[str, Any]]:
    """Train (resuming from the training folder) if the method uses training data, then run every evaluation."""
    from harness.engine.train import train_method

    progress.stage(spec, "loading backbone")
    backbone = cached_backbone(spec.model, spec.pretrained, spec.device, spec.precision)
    config = run_config(spec)
    method = None
    if spec.trainable:
        if spec.seed is None or spec.train_dataset is None:
            raise HarnessError(f"run {spec.run_key}: a trained run needs a seed and a training dataset")
        task = load_task(spec.train_dataset, spec.data_root, shots=spec.shots, seed=spec.seed,
                         subsample=spec.train_subsample, draw=spec.draw)
        method, _ = build_for_task(config, backbone, task)
        folder = training_dir(spec, out_dir, config.digest())
        with locked(folder):
            if force:
                _clear(folder)
            progress.stage(spec, f"training on {spec.train_dataset} ({config.max_epoch} epochs)")
            result = train_method(method, backbone, task, config, folder, spec.seed,
                                  progress=_EpochRelay(spec, progress),
                                  run_info={"dataset": spec.train_dataset, "shots": spec.shots,
                                            "subsample": spec.train_subsample})
        if result.notice:
            progress.stage(spec, result.notice)
        if result.already_done:
            progress.stage(spec, "training already finished: reusing its weights")
        elif result.resumed_from_epoch:
            progress.stage(spec, f"trained (resumed from epoch {result.resumed_from_epoch})")
    records: list[dict[str, Any]] = []
    for evaluation in spec.evals:
        progress.stage(spec, f"evaluating {evaluation.dataset} ({evaluation.subsample})")
        records += _evaluate_one(spec, evaluation, backbone, config, method, run_dir(spec, out_dir))
    return records


def _clear(folder: Path) -> None:
    for path in folder.iterdir():
        if path.name == ".lock":
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


class _EpochRelay:
    """Adapts the training's per-step callback to ``RunProgress.epoch`` (one call per finished epoch)."""

    def __init__(self, spec: RunSpec, progress: RunProgress) -> None:
        self.spec = spec
        self.progress = progress

    def __call__(self, step: Any) -> None:
        on_step = getattr(self.progress, "step", None)  # optional: progress inside epochs (bar, img/s)
        if on_step is not None:
            on_step(self.spec, step)
        if step.epoch_done:
            self.progress.epoch(self.spec, step.epoch, step.max_epoch)


def _evaluate_one(spec: RunSpec, evaluation: EvalSpec, backbone: Any, config: Any, method: Any,
                  folder: Path) -> list[dict[str, Any]]:
    """One evaluation of the run's model (a fresh one for methods without training) -> records.

    The per-image predictions go to a file in the run ``folder`` (``harness.results.predictions``), named by
    the records, so that paired comparisons (``harness compare``) need no rerun.
    """
    from harness.results.predictions import evaluation_extra

    task = load_task(evaluation.dataset, spec.data_root, shots=evaluation.shots,
                     seed=spec.seed if evaluation.shots is not None else None, subsample=evaluation.subsample)
    if method is None:
        method, _ = build_for_task(config, backbone, task)
    else:
        method.set_classes(task.classnames, task.template, task.dataset)
    context = RecordContext(protocol=spec.protocol, method=spec.method, preset=spec.preset,
                            subsample=evaluation.subsample, run_key=spec.run_key, shots=spec.shots, seed=spec.seed,
                            train_dataset=spec.train_dataset)
    _, records = evaluate_to_records(method, backbone, task, config, evaluation.split, context,
                                     extra=lambda result: evaluation_extra(folder, spec, evaluation, result))
    return records
