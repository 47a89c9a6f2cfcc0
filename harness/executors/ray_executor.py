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
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.engine.runner import RunOutcome, run_dir
from harness.errors import HarnessError
from harness.executors.base import ProgressDisplay, split_pending
from harness.executors.locking import LEASE_NAME, RunLease
from harness.executors.ray_tasks import (  # noqa: F401  (re-exported: the executor's public names)
    ATTEMPTS_NAME,
    INSTALL_HINT,
    SWEEPS_FOLDER,
    describe_ray_error,
    import_ray,
    read_attempts,
    run_task,
    sweep_file,
    task_resources,
)
from harness.protocols.spec import RunSpec


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
