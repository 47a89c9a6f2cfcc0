"""The ``ray`` executor: each planned run is a Ray task on a cluster (one GPU where CUDA is used, else one CPU).

The driver (``harness run --executor ray [--address ADDR]``) submits the unfinished runs as tasks, prints a
line as each finishes, and returns the same outcomes as the ``local`` executor; the table is then read from
``--out`` as for a local run. ``--out`` must be a folder every node sees at the same path (a shared
filesystem), because the tasks write records and checkpoints there: a sweep interrupted on the cluster
resumes locally or elsewhere, and vice versa, through the runner's ``DONE`` markers.

A task holds the run's lease (``harness.executors.locking``) while it works, so two workers never execute
the same run at once, and a lease left by a killed worker is taken over by the retry. Every attempt is
logged in the run folder's ``attempts.jsonl`` with the sweep's id, which bounds the attempts of a sweep to
``--retries`` + 1 whether they end by an exception (retried inside the task) or by the worker dying
(retried by Ray through ``max_retries``). A run that still fails becomes a ``failed`` outcome with its
error; the other runs go on.

Ray is an optional dependency, imported only when this executor is built.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.engine.runner import RunOutcome, is_done, run_dir
from harness.errors import HarnessError
from harness.executors.base import ProgressDisplay, execute_with_retries, skipped_outcome, split_pending
from harness.executors.locking import LEASE_NAME, RunLease
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


class RayExecutor:
    """Run each unfinished run as a Ray task; ``address`` is the cluster (``None``: Ray's default, see below).

    Without ``--address``, ``ray.init()`` connects to ``$RAY_ADDRESS`` or a cluster started on this machine
    with ``ray start``, else starts a local Ray instance for the sweep (shut down at its end). Inside a
    process where Ray is already initialised, that connection is used as it is.
    """

    def __init__(self, jobs: int = 1, retries: int = 0, address: str | None = None) -> None:
        if jobs != 1:
            raise HarnessError("--jobs is for the local executor; with --executor ray every run is a task and "
                               "the cluster's free GPUs (or CPUs) decide how many run at once")
        self.ray = import_ray()
        self.retries = retries
        self.address = address

    def execute(self, specs: Sequence[RunSpec], out_dir: Path, *, force: bool = False,
                display: ProgressDisplay | None = None) -> list[RunOutcome]:
        """Run the unfinished specs on the cluster; return one outcome per spec, in the order of ``specs``."""
        display = display or ProgressDisplay()
        # Tasks run in other working directories (on other hosts): give them an absolute path.
        out = Path(out_dir).resolve()
        pending, outcomes = split_pending(specs, out, force)
        display.start(len(specs), len(specs) - len(pending), pending, out)
        if pending:
            started_here = self._connect()
            try:
                outcomes.update(self._run_all(pending, out, force, display))
            finally:
                if started_here:
                    self.ray.shutdown()
        return [outcomes[spec.run_key] for spec in specs]

    def _connect(self) -> bool:
        """Connect to (or start) Ray; return whether this call did so (and must shut it down)."""
        if self.ray.is_initialized():
            return False
        try:
            self.ray.init(address=self.address, log_to_driver=True)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "the default address"
            raise HarnessError(f"cannot connect to the Ray cluster at {where}: {exc}") from exc
        return True

    def _start_sweep(self, pending: Sequence[RunSpec], out: Path) -> str:
        """Write the sweep file (the tasks' proof that ``--out`` is shared) and return the sweep's id."""
        sweep_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
        path = sweep_file(out, sweep_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        info = {"sweep": sweep_id, "host": socket.gethostname(), "pid": os.getpid(), "retries": self.retries,
                "address": self.address, "runs": [spec.run_key for spec in pending]}
        path.write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        return sweep_id

    def _run_all(self, pending: Sequence[RunSpec], out: Path, force: bool,
                 display: ProgressDisplay) -> dict[str, RunOutcome]:
        ray = self.ray
        sweep_id = self._start_sweep(pending, out)
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if gpus == 0 and any(spec.device.startswith("cuda") for spec in pending):
            display.say("the Ray cluster has no GPU yet: runs on CUDA wait until a GPU node joins")
        remote = ray.remote(run_task)
        refs = {}
        for spec in pending:
            options = {**task_resources(spec, gpus), "max_retries": self.retries, "retry_exceptions": False,
                       "name": f"harness {spec.run_key}"}
            refs[remote.options(**options).remote(spec, str(out), force, self.retries, sweep_id)] = spec
        outcomes: dict[str, RunOutcome] = {}
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                for ref in ready:
                    spec = refs.pop(ref)
                    outcome = self._result(ref, spec, out, sweep_id)
                    outcomes[spec.run_key] = outcome
                    display.finished(outcome)
        except KeyboardInterrupt:
            # Stop the remaining tasks; their leases go stale and a later sweep resumes their runs.
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
        return outcomes

    def _result(self, ref: Any, spec: RunSpec, out: Path, sweep_id: str) -> RunOutcome:
        """The outcome a task returned, or a ``failed`` one naming what Ray reported (worker died, OOM, ...)."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            folder = run_dir(spec, out)
            spent = sum(1 for e in read_attempts(folder, sweep_id) if e["event"] == "start")
            error = describe_ray_error(exc)
            if spent:
                error = f"{error} (after {spent} attempt{'s' if spent > 1 else ''})"
            _clear_stale_lease(folder)
            return RunOutcome(spec.run_key, "failed", str(folder.relative_to(out)), error=error)


def _clear_stale_lease(folder: Path, wait_s: float = 10.0) -> None:
    """Remove the lease a dead worker left, once provably stale (the next sweep would take it over anyway).

    Ray can report a worker's death a moment before the operating system has reaped its process, while the
    lease still names a live pid: the check is repeated for up to ``wait_s`` seconds.
    """
    lease = RunLease(folder, task="driver cleanup")
    deadline = time.monotonic() + wait_s
    try:
        while (folder / LEASE_NAME).exists():
            if lease.try_acquire():
                lease.release()
                return
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)
    except HarnessError:
        pass  # an unreadable lease file is reported by the next sweep that meets it
