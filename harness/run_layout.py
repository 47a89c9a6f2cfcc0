"""The run-folder layout: where a run's files live and how they are written (below the engine and results).

``<out>/<protocol>/<run key>/`` holds ``spec.json`` (the plan, written before any run starts),
``records.jsonl`` (moved into place when the run's evaluations are done) and ``DONE`` (written last).
``<out>/train/<training key>/`` holds a training that several runs may share (its key names everything that
determines the trained model: method, model, dataset, subsample, shots, seed and the config digest). The
engine writes these files; ``harness.results`` reads them; neither imports the other for it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.fs_errors import save_with_space_check
from harness.protocols.spec import RunSpec, model_slug

DONE_NAME = "DONE"
RECORDS_NAME = "records.jsonl"
SPEC_NAME = "spec.json"
TRAIN_FOLDER = "train"


def run_dir(spec: RunSpec, out_dir: Path) -> Path:
    """The folder of a run: ``<out>/<protocol>/<run key>``."""
    return Path(out_dir) / spec.protocol / spec.run_key


def is_done(spec: RunSpec, out_dir: Path) -> bool:
    """Whether the run has finished (its ``DONE`` marker exists)."""
    return (run_dir(spec, out_dir) / DONE_NAME).is_file()


def training_dir(spec: RunSpec, out_dir: Path, config_digest: str) -> Path:
    """The training folder: keyed by everything that determines the trained model (see the module docstring)."""
    key = "-".join([spec.method, model_slug(spec.model, spec.pretrained), str(spec.train_dataset),
                    spec.train_subsample, f"{spec.shots}shots", f"seed{spec.seed}", config_digest])
    if spec.draw:  # a few-shot draw beyond the official one trains its own model (key unchanged for draw 0)
        key += f"-draw{spec.draw}"
    return Path(out_dir) / TRAIN_FOLDER / key


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
    """Write ``text`` to ``path`` through a temporary file and an atomic rename (never half-written).

    A full disk is one clear error naming the path, and the temporary file is removed (``save_with_space_check``).
    """
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    save_with_space_check(write, path.with_name(f".{path.name}.{os.getpid()}.tmp"), path)


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
