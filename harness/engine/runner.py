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

import fcntl
import inspect
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.errors import HarnessError
from harness.protocols.spec import EvalSpec, RunSpec, model_slug

DONE_NAME = "DONE"
RECORDS_NAME = "records.jsonl"
SPEC_NAME = "spec.json"
TRAIN_FOLDER = "train"


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


def run_dir(spec: RunSpec, out_dir: Path) -> Path:
    """The folder of a run: ``<out>/<protocol>/<run key>``."""
    return Path(out_dir) / spec.protocol / spec.run_key


def is_done(spec: RunSpec, out_dir: Path) -> bool:
    """Whether the run has finished (its ``DONE`` marker exists)."""
    return (run_dir(spec, out_dir) / DONE_NAME).is_file()


def stale_reason(spec: RunSpec, out_dir: Path) -> str:
    """Why a finished run's records no longer match what ``spec`` would compute now ("" when they match).

    The run key names the method, model, dataset, shots, seed and ``--set`` overrides, not the preset's
    content nor the weights. A finished run is compared with the configuration its preset gives now
    (``config_hash``) and with the weights the model name loads now (``backbone_sha256``), so that editing a
    preset or replacing the weights cannot leave old results counted as current.
    """
    from harness.results.records import read_records

    records = read_records(run_dir(spec, out_dir) / RECORDS_NAME)
    if not records:
        return ""
    config_hash = resolve_run_config(spec).digest()
    stored = sorted({str(r.get("config_hash")) for r in records})
    if stored != [config_hash]:
        return (f"its records have config hash {', '.join(stored)}, methods/{spec.preset}.yaml with this "
                f"command's --set now gives {config_hash}")
    backbone = cached_backbone(spec.model, spec.pretrained, spec.device, spec.precision)
    stored = sorted({str(r.get("backbone_sha256")) for r in records})
    if stored != [backbone.weights_sha256]:
        return (f"its records were made with weights sha256 {', '.join(s[:12] for s in stored)}, "
                f"{spec.model!r} now loads {backbone.weights_sha256[:12]}")
    return ""


def check_finished_runs(specs: list[RunSpec], out_dir: Path) -> None:
    """Raise ``HarnessError`` if a finished run of the plan is stale (see ``stale_reason``); nothing is deleted."""
    stale = []
    for spec in specs:
        if is_done(spec, out_dir):
            reason = stale_reason(spec, out_dir)
            if reason:
                stale.append(f"  {spec.protocol}/{spec.run_key}: {reason}")
    if stale:
        shown = "\n".join(stale[:5]) + (f"\n  ... and {len(stale) - 5} more" if len(stale) > 5 else "")
        raise HarnessError(
            f"{len(stale)} finished run(s) under {out_dir} were made with another configuration or other weights "
            f"than this command uses:\n{shown}\nTheir results are kept. Rerun with --force to redo them, or "
            "choose another --out."
        )


def register_plan(specs: list[RunSpec], out_dir: Path) -> None:
    """Write ``spec.json`` for every planned run that has no folder yet, before any run starts.

    Tables read the plan from these files, so a sweep interrupted before reaching a run still shows that
    run as missing (an incomplete row) instead of averaging over the runs that happened to finish.
    """
    for spec in specs:
        folder = run_dir(spec, out_dir)
        if not (folder / SPEC_NAME).is_file():
            folder.mkdir(parents=True, exist_ok=True)
            write_atomic(folder / SPEC_NAME, spec.to_json())


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename (never half-written)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder/.lock`` (released when the block ends or the process dies)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def count_records(path: Path) -> int:
    """The number of non-empty lines of a records file (0 if it does not exist)."""
    if not path.is_file():
        return 0
    with open(path, encoding="utf-8") as handle:
        return sum(1 for line in handle if line.strip())


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

    tmp = folder / f".{RECORDS_NAME}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    append_records(tmp, records)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, folder / RECORDS_NAME)
    write_atomic(folder / DONE_NAME, f"{len(records)} records\n")


class _Silent:
    def stage(self, spec: RunSpec, message: str) -> None:
        pass

    def epoch(self, spec: RunSpec, epoch: int, max_epoch: int) -> None:
        pass


_BACKBONES: dict[tuple[str, str | None, str, str], Any] = {}


def cached_backbone(model: str, pretrained: str | None, device: str, precision: str) -> Any:
    """The backbone for these settings, loaded once per process (loading dominates short runs)."""
    from harness.models import load_backbone

    key = (model, pretrained, device, precision)
    if key not in _BACKBONES:
        _BACKBONES[key] = load_backbone(model, pretrained, device=device, precision=precision)
    return _BACKBONES[key]


def resolve_run_config(spec: RunSpec) -> Any:
    """The run's MethodConfig: its preset, then ``precision`` if given, then the ``--set`` overrides.

    The number of epochs then follows the preset's schedule for the shot count and dataset
    (``harness.methods.for_shots``), unless ``--set max_epoch=N`` asked for N explicitly.
    """
    from harness.methods import for_shots, resolve_config

    layers = []
    if spec.precision != "auto":
        layers.append(({"precision": spec.precision}, "--precision"))
    if spec.overrides:
        layers.append((dict(spec.overrides), "--set"))
    config = resolve_config(spec.preset, *layers)
    if "max_epoch" in dict(spec.overrides) or not spec.trainable:
        return config
    return for_shots(config, spec.shots, spec.train_dataset)


def training_dir(spec: RunSpec, out_dir: Path, config_digest: str) -> Path:
    """The training folder: keyed by everything that determines the trained model (see the module docstring)."""
    key = "-".join([spec.method, model_slug(spec.model, spec.pretrained), str(spec.train_dataset),
                    spec.train_subsample, f"{spec.shots}shots", f"seed{spec.seed}", config_digest])
    if spec.draw:  # a few-shot draw beyond the official one trains its own model (key unchanged for draw 0)
        key += f"-draw{spec.draw}"
    return Path(out_dir) / TRAIN_FOLDER / key


def _train_and_evaluate(spec: RunSpec, out_dir: Path, progress: RunProgress, force: bool) -> list[dict[str, Any]]:
    """Train (resuming from the training folder) if the method trains, then run every evaluation."""
    from harness.data import prepare_task_data
    from harness.engine.train import train_method
    from harness.methods import build_method

    data_root = Path(spec.data_root) if spec.data_root else None
    progress.stage(spec, "loading backbone")
    backbone = cached_backbone(spec.model, spec.pretrained, spec.device, spec.precision)
    config = resolve_run_config(spec)
    method = None
    if spec.trainable:
        if spec.seed is None or spec.train_dataset is None:
            raise HarnessError(f"run {spec.run_key}: a trained run needs a seed and a training dataset")
        task = prepare_task_data(spec.train_dataset, data_root, shots=spec.shots, seed=spec.seed,
                                 subsample=spec.train_subsample, draw=spec.draw)
        method = build_method(config.method, backbone, config, task.classnames, task.template)
        folder = training_dir(spec, out_dir, config.digest())
        with locked(folder):
            if force:
                _clear(folder)
            progress.stage(spec, f"training on {spec.train_dataset} ({config.max_epoch} epochs)")
            result = train_method(method, backbone, task, config, folder, spec.seed,
                                  progress=_EpochRelay(spec, progress),
                                  run_info={"dataset": spec.train_dataset, "shots": spec.shots,
                                            "subsample": spec.train_subsample})
        if result.already_done:
            progress.stage(spec, "training already finished: reusing its weights")
        elif result.resumed_from_epoch:
            progress.stage(spec, f"trained (resumed from epoch {result.resumed_from_epoch})")
    records: list[dict[str, Any]] = []
    for evaluation in spec.evals:
        progress.stage(spec, f"evaluating {evaluation.dataset} ({evaluation.subsample})")
        records += _evaluate_one(spec, evaluation, backbone, config, method, data_root, run_dir(spec, out_dir))
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
        if step.epoch_done:
            self.progress.epoch(self.spec, step.epoch, step.max_epoch)


def _set_classes(method: Any, task: Any) -> None:
    """Point the method at the evaluated dataset's classes (zero-shot also takes the dataset, for ImageNet)."""
    if "dataset" in inspect.signature(method.set_classes).parameters:
        method.set_classes(task.classnames, task.template, dataset=task.dataset)
    else:
        method.set_classes(task.classnames, task.template)


def _evaluate_one(spec: RunSpec, evaluation: EvalSpec, backbone: Any, config: Any, method: Any,
                  data_root: Path | None, folder: Path) -> list[dict[str, Any]]:
    """One evaluation of the run's model (a fresh zero-shot classifier for training-free methods) -> records.

    The per-image predictions go to a file in the run ``folder`` (``harness.results.predictions``), named by
    the records, so that paired comparisons (``harness compare``) need no rerun.
    """
    from harness.data import prepare_task_data
    from harness.engine import evaluate
    from harness.methods import build_method
    from harness.results.predictions import evaluation_extra
    from harness.results.records import EvaluationInfo, make_records

    start = time.monotonic()
    task = prepare_task_data(evaluation.dataset, data_root, shots=evaluation.shots,
                             seed=spec.seed if evaluation.shots is not None else None,
                             subsample=evaluation.subsample)
    if method is None:
        method = build_method(config.method, backbone, config, task.classnames, task.template)
    _set_classes(method, task)
    result = evaluate(method, backbone, task, split=evaluation.split, batch_size=config.test_batch_size,
                      num_workers=config.num_workers)
    info = EvaluationInfo(
        method=spec.method, dataset=evaluation.dataset, split=evaluation.split, subsample=evaluation.subsample,
        backbone=backbone.name, backbone_sha256=backbone.weights_sha256, split_sha256=task.split_sha256,
        config_hash=config.digest(), shots=spec.shots, seed=spec.seed, protocol=spec.protocol,
        run_key=spec.run_key, train_dataset=spec.train_dataset,
    )
    metrics = {"accuracy": result.accuracy, "macro_f1": result.macro_f1}
    extra = evaluation_extra(folder, spec, evaluation, result)
    return make_records(info, metrics, n_images=result.n_images, duration_s=time.monotonic() - start, extra=extra)
