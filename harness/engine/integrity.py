"""Checksums of a finished training's files, checked whenever the training or its run is reused or skipped.

A finished training writes ``prompt_learner/checksums.json`` (sha256 of the final weights
``model.pth.tar-<E>`` and of the resume state ``last.pt``) after both are in place. Before reusing a
finished training, ``repair_training`` compares them: a damaged weights file is deleted and rebuilt from
the resume state (which holds the same learned tensors and optimizer state, so the rebuilt file is the
same); a damaged resume state makes the training start over (training is deterministic from its seed).
``reopen_damaged_run`` does the same check for a finished ``harness run`` run and, when its training is
damaged, removes the run's ``DONE`` marker so that the sweep runs it again.

A training finished before checksums were recorded has no ``checksums.json``: nothing can be verified,
and it is reused as before.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

CHECKSUMS_FILE = "checksums.json"
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def record_checksums(folder: Path, files: list[Path]) -> None:
    """Write ``folder/checksums.json`` with the sha256 of each file (by name), atomically."""
    from harness.engine.runner import write_atomic  # lazy: the runner imports the training

    entries = {path.name: file_sha256(path) for path in files}
    write_atomic(folder / CHECKSUMS_FILE, json.dumps(entries, indent=1, sort_keys=True) + "\n")


def damaged_files(folder: Path) -> dict[str, str]:
    """Recorded files of ``folder`` that are missing or differ from their checksum: name -> what is wrong."""
    try:
        recorded = json.loads((folder / CHECKSUMS_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {CHECKSUMS_FILE: "unreadable"}
    if not isinstance(recorded, dict):
        return {CHECKSUMS_FILE: "not a mapping of file names to sha256"}
    damaged = {}
    for name, expected in recorded.items():
        path = folder / name
        if not path.is_file():
            damaged[name] = "missing"
        elif file_sha256(path) != expected:
            damaged[name] = f"sha256 {file_sha256(path)[:12]} differs from the recorded {str(expected)[:12]}"
    return damaged


def repair_training(prompt_dir: Path, weights: Path, state_path: Path) -> str:
    """Check a finished training's files; delete damaged ones so the training rebuilds them.

    Returns:
        A message saying what was damaged and what happens now ("" when everything matches).
    """
    damaged = damaged_files(prompt_dir)
    if not damaged:
        return ""
    detail = "; ".join(f"{prompt_dir / name}: {why}" for name, why in sorted(damaged.items()))
    (prompt_dir / CHECKSUMS_FILE).unlink(missing_ok=True)
    if state_path.name in damaged or CHECKSUMS_FILE in damaged:
        state_path.unlink(missing_ok=True)
        weights.unlink(missing_ok=True)
        return f"damaged training files ({detail}): training again from the start"
    weights.unlink(missing_ok=True)
    return f"damaged training files ({detail}): rebuilding the weights from the resume state"


def check_weights_file(path: Path) -> None:
    """Refuse a weights file (or run folder) that a finished training recorded and that has since changed.

    Raises:
        CheckpointError: naming the file, what is wrong and the command that rebuilds it.
    """
    from harness.errors import CheckpointError
    from harness.methods.checkpoints import resolve_weights_path

    file = resolve_weights_path(Path(path))
    why = damaged_files(file.parent).get(file.name)
    if why:
        raise CheckpointError(f"{file}: damaged ({why}); rerun the training command that wrote it (harness train "
                              "with the same options, or harness run for a sweep) to rebuild it")


def reopen_damaged_run(spec: Any, out_dir: Path) -> bool:
    """For a finished run that trains: if its training's files are damaged, remove ``DONE`` and say so.

    Returns:
        True when the run is unfinished again (the caller runs it), False when it stays finished.
    """
    from harness.engine.runner import DONE_NAME, resolve_run_config, run_dir, training_dir

    if not spec.trainable:
        return False
    prompt_dir = training_dir(spec, out_dir, resolve_run_config(spec).digest()) / "prompt_learner"
    damaged = damaged_files(prompt_dir)
    if not damaged:
        return False
    names = ", ".join(f"{name} ({why})" for name, why in sorted(damaged.items()))
    print(f"{spec.run_key}: its training in {prompt_dir} has damaged files: {names}; the run is unfinished "
          "again and is rerun now", file=sys.stderr)
    (run_dir(spec, out_dir) / DONE_NAME).unlink(missing_ok=True)
    return True
