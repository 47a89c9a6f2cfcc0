"""What runs on a Ray worker: one planned run as a task, with its lease, attempt log and retries.

``run_task`` is the remote function's body (``RayExecutor`` wraps it with ``ray.remote``): it takes the run's
lease, logs each attempt in the run folder's ``attempts.jsonl`` under the sweep's id, and runs the run with
``execute_with_retries`` until the sweep's attempts (``--retries`` + 1, counted across worker deaths) are spent.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.engine.runner import RunOutcome, is_done, run_dir
from harness.errors import HarnessError
from harness.executors.base import execute_with_retries, skipped_outcome
from harness.executors.locking import RunLease
from harness.protocols.spec import RunSpec

INSTALL_HINT = "pip install 'harness[ray]'"
ATTEMPTS_NAME = "attempts.jsonl"
SWEEPS_FOLDER = ".sweeps"


def import_ray() -> ModuleType:
    """Import Ray, or explain how to install it.

    Raises:
        HarnessError: if Ray is not installed.
    """
    try:
        import ray
    except ImportError as exc:
        raise HarnessError(f"--executor ray needs Ray, which is not installed; install it with {INSTALL_HINT} "
                           f"(on every node of the cluster) ({exc})") from exc
    return ray


def task_resources(spec: RunSpec, cluster_gpus: float) -> dict[str, float]:
    """The Ray resources of one run: one GPU where it uses CUDA, else one CPU.

    ``--device auto`` uses CUDA when the cluster has GPUs (the task then sees only its own GPU, through
    ``CUDA_VISIBLE_DEVICES``, as ``cuda:0``); ``cpu`` (or ``mps``) never asks for one.
    """
    wants_gpu = spec.device.startswith("cuda") or (spec.device == "auto" and cluster_gpus > 0)
    return {"num_cpus": 1, "num_gpus": 1 if wants_gpu else 0}


def read_attempts(folder: Path, sweep_id: str | None = None) -> list[dict[str, Any]]:
    """The entries of a run folder's attempt log (of one sweep if ``sweep_id`` is given)."""
    path = Path(folder) / ATTEMPTS_NAME
    if not path.is_file():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise HarnessError(f"{path}:{number}: corrupt attempt log line ({exc})") from exc
    return [e for e in entries if sweep_id is None or e.get("sweep") == sweep_id]


def _log_attempt(folder: Path, sweep_id: str, attempt: int, event: str, task: str, error: str = "",
                 stages: Sequence[str] = ()) -> None:
    entry: dict[str, Any] = {"sweep": sweep_id, "attempt": attempt, "event": event, "host": socket.gethostname(),
                             "pid": os.getpid(), "task": task,
                             "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if error:
        entry["error"] = error
    if stages:
        entry["stages"] = list(stages)
    # One short line per write under the run's lease: no other writer can interleave.
    with open(folder / ATTEMPTS_NAME, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _task_label() -> str:
    """``ray task <id> on node <id>`` inside a Ray worker, else ``outside Ray``."""
    ray = sys.modules.get("ray")
    # Checked first: asking an uninitialised Ray for its runtime context starts a Ray instance.
    if ray is None or not ray.is_initialized():
        return "outside Ray"
    context = ray.get_runtime_context()
    return f"ray task {context.get_task_id()} on node {context.get_node_id()[:12]}"


class _WorkerProgress:
    """Stage lines and every quarter of the epochs, on the worker's stderr (Ray relays them to the driver).

    The stages are also kept for the attempt log: Ray relays worker output asynchronously, so lines printed
    just before a task ends may reach the driver after it has exited.
    """

    def __init__(self) -> None:
        self.stages: list[str] = []

    def stage(self, spec: RunSpec, message: str) -> None:
        self.stages.append(message)
        print(f"{spec.run_key}: {message}", file=sys.stderr, flush=True)

    def epoch(self, spec: RunSpec, epoch: int, max_epoch: int) -> None:
        if epoch == max_epoch or epoch % max(1, max_epoch // 4) == 0:
            print(f"{spec.run_key}: epoch {epoch}/{max_epoch}", file=sys.stderr, flush=True)


def sweep_file(out_dir: Path, sweep_id: str) -> Path:
    """The file the driver writes for a sweep, which every task checks to know ``--out`` is shared."""
    return Path(out_dir) / SWEEPS_FOLDER / f"{sweep_id}.json"


def run_task(spec: RunSpec, out_dir: str, force: bool, retries: int, sweep_id: str) -> RunOutcome:
    """The body of a run's Ray task: take the run's lease, then attempt the run until done or out of retries.

    Called again by Ray when the worker died; the attempt log then says how many attempts are spent.

    Raises:
        HarnessError: if ``out_dir`` is not the driver's folder on this node (not a shared filesystem).
    """
    out = Path(out_dir)
    if not sweep_file(out, sweep_id).is_file():
        raise HarnessError(f"the output folder {out} on node {socket.gethostname()} is not the driver's: "
                           f"{sweep_file(out, sweep_id)} is missing; put --out on a filesystem that every "
                           f"node mounts at the same path")
    folder = run_dir(spec, out)
    task = _task_label()

    def say(message: str) -> None:
        print(f"{spec.run_key}: {message}", file=sys.stderr, flush=True)

    with RunLease(folder, task=task, on_wait=say):
        spent = sum(1 for e in read_attempts(folder, sweep_id) if e["event"] == "start")
        # ``force`` redoes a finished run once per sweep, never again on a retry of that sweep.
        if is_done(spec, out) and not (force and spent == 0):
            return skipped_outcome(spec, out)
        return _attempt(spec, out, force, retries, sweep_id, spent, task, say)


def _attempt(spec: RunSpec, out: Path, force: bool, retries: int, sweep_id: str, spent: int, task: str,
             say: Callable[[str], None]) -> RunOutcome:
    """Attempts ``spent + 1`` ... ``retries + 1`` of a run (``HarnessError``, i.e. bad input, is not retried)."""
    folder = run_dir(spec, out)
    start = time.monotonic()
    if spent > retries:
        entries = [e for e in read_attempts(folder, sweep_id) if e["attempt"] == spent]
        last, ends = entries[0], [e for e in entries if e["event"] != "start"]
        how = f"failed: {ends[-1].get('error', '')}" if ends else "ended without a result: its worker died"
        error = (f"gave up after {spent} attempts; the last one ({last['task']}, pid {last['pid']} on "
                 f"{last['host']}) {how}")
        return RunOutcome(spec.run_key, "failed", str(folder.relative_to(out)), error=error)
    for attempt in range(spent, retries + 1):
        _log_attempt(folder, sweep_id, attempt + 1, "start", task)
        progress = _WorkerProgress()
        outcome = execute_with_retries(spec, out, force=force and attempt == 0, retries=0, progress=progress)
        last_line = outcome.error.strip().splitlines()[-1] if outcome.error else ""
        _log_attempt(folder, sweep_id, attempt + 1, outcome.status, task, last_line, progress.stages)
        if outcome.status != "failed" or outcome.error.startswith("error: "):
            break
        if attempt < retries:
            say(f"attempt {attempt + 1} of {retries + 1} failed ({last_line}); retrying")
    return replace(outcome, duration_s=time.monotonic() - start)


def describe_ray_error(exc: BaseException) -> str:
    """The message of a task that Ray could not complete (our own ``HarnessError`` shows as ``error: ...``)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, HarnessError):
        return f"error: {cause}"
    text = str(exc).strip() or repr(exc)
    return f"{type(exc).__name__}: {text}"
