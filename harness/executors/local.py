"""The ``local`` executor: runs in this process (``--jobs 1``) or in joblib worker processes (``--jobs N``).

Each run is executed by the same ``execute_with_retries`` either way and seeds its own training, so the
records do not depend on ``--jobs`` (apart from the timing fields ``time`` and ``duration_s``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.engine.runner import RunOutcome
from harness.executors.base import ProgressDisplay, execute_with_retries, split_pending
from harness.protocols.spec import RunSpec
from harness.registries import EXECUTORS


def _run_in_worker(spec: RunSpec, out_dir: Path, force: bool, retries: int) -> RunOutcome:
    """A worker process's job: one run, reporting its own stages (the parent counts finished runs)."""
    return execute_with_retries(spec, out_dir, force=force, retries=retries, progress=_WorkerProgress())


class _WorkerProgress:
    """In a worker, report stages and every quarter of the epochs, prefixed, without the parent's counters."""

    def __init__(self, line_interval_s: float = 30.0) -> None:
        self.display = ProgressDisplay(prefix="  worker: ")
        self.line_interval_s = line_interval_s
        self._last_line = time.monotonic()

    def step(self, spec: RunSpec, update: Any) -> None:
        """Inside long epochs, a plain line at most every ``line_interval_s`` (workers share the parent's stderr)."""
        now = time.monotonic()
        if now - self._last_line >= self.line_interval_s:
            self._last_line = now
            self.display.say(f"{spec.run_key}: epoch {update.epoch}/{update.max_epoch} step {update.step}/"
                             f"{update.steps} loss {update.loss_avg:.4f}")

    def stage(self, spec: RunSpec, message: str) -> None:
        self.display.say(f"{spec.run_key}: {message}")

    def epoch(self, spec: RunSpec, epoch: int, max_epoch: int) -> None:
        if epoch == max_epoch or epoch % max(1, max_epoch // 4) == 0:
            self.display.say(f"{spec.run_key}: epoch {epoch}/{max_epoch}")


@EXECUTORS.register("local")
class LocalExecutor:
    """Run in-process (``jobs=1``) or in ``jobs`` joblib (loky) worker processes; ``address`` is not used."""

    def __init__(self, jobs: int = 1, retries: int = 0, address: str | None = None) -> None:
        self.jobs = jobs
        self.retries = retries

    def execute(self, specs: Sequence[RunSpec], out_dir: Path, *, force: bool = False,
                display: ProgressDisplay | None = None) -> list[RunOutcome]:
        """Run the unfinished specs; return one outcome per spec, in the order of ``specs``."""
        display = display or ProgressDisplay()
        out_dir = Path(out_dir)
        pending, outcomes = split_pending(specs, out_dir, force)
        display.start(len(specs), len(specs) - len(pending), pending, out_dir)
        if self.jobs == 1 or len(pending) <= 1:
            for spec in pending:
                outcome = execute_with_retries(spec, out_dir, force=force, retries=self.retries, progress=display)
                outcomes[spec.run_key] = outcome
                display.finished(outcome)
        else:
            from joblib import Parallel, delayed

            parallel = Parallel(n_jobs=min(self.jobs, len(pending)), backend="loky", return_as="generator_unordered")
            jobs = (delayed(_run_in_worker)(spec, out_dir, force, self.retries) for spec in pending)
            for outcome in parallel(jobs):
                outcomes[outcome.run_key] = outcome
                display.finished(outcome)
        return [outcomes[spec.run_key] for spec in specs]
