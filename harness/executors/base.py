"""The executor interface, retries, and the progress display shared by every executor.

An executor runs a list of ``RunSpec`` into an output folder and returns one ``RunOutcome`` per spec, in the
order given. It is a class registered in ``EXECUTORS``, constructed as ``cls(jobs=..., retries=...,
address=...)`` (see ``build_executor``), with one method::

    execute(specs, out_dir, *, force=False, display=None) -> list[RunOutcome]

Contract: finished runs (``DONE``) are skipped unless ``force``; each pending run goes through
``execute_with_retries`` (``harness.engine.runner.execute_run`` plus retries), wherever it executes; the
result of a run never depends on the executor or the number of parallel jobs. A new executor (e.g. ``ray``)
only decides where ``execute_with_retries`` is called and reports each outcome to ``display.finished``.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from harness.engine.integrity import reopen_damaged_run
from harness.engine.runner import RECORDS_NAME, RunOutcome, count_records, execute_run, is_done, run_dir
from harness.errors import HarnessError
from harness.fs_errors import describe_os_error, user_fixable
from harness.protocols.spec import RunSpec


class Executor(Protocol):
    """What ``harness run`` calls (see the module docstring)."""

    def execute(self, specs: Sequence[RunSpec], out_dir: Path, *, force: bool = False,
                display: ProgressDisplay | None = None) -> list[RunOutcome]:
        """Run the specs that are not finished; return one outcome per spec, in order."""


def build_executor(name: str, *, jobs: int = 1, retries: int = 0, address: str | None = None) -> Executor:
    """Construct the executor registered as ``name``.

    Raises:
        HarnessError: for an unknown executor (with the registered names) or a bad ``jobs``/``retries``.
    """
    from harness.registries import EXECUTORS, load_builtins

    load_builtins()
    if jobs < 1:
        raise HarnessError(f"--jobs must be at least 1, got {jobs}")
    if retries < 0:
        raise HarnessError(f"--retries must be at least 0, got {retries}")
    return EXECUTORS.get(name)(jobs=jobs, retries=retries, address=address)


def skipped_outcome(spec: RunSpec, out_dir: Path) -> RunOutcome:
    """The outcome of a finished run that is not executed again."""
    folder = run_dir(spec, out_dir)
    return RunOutcome(spec.run_key, "skipped", str(folder.relative_to(out_dir)),
                      count_records(folder / RECORDS_NAME))


def split_pending(specs: Sequence[RunSpec], out_dir: Path, force: bool) -> tuple[list[RunSpec], dict[str, RunOutcome]]:
    """The specs still to run, and the outcomes of those already finished (by run key)."""
    keys = [spec.run_key for spec in specs]
    if len(set(keys)) != len(keys):
        raise HarnessError("the plan holds the same run key twice")
    pending = [spec for spec in specs if force or not is_done(spec, out_dir) or reopen_damaged_run(spec, out_dir)]
    finished = {spec.run_key: skipped_outcome(spec, out_dir) for spec in specs if spec not in pending}
    return pending, finished


def execute_with_retries(spec: RunSpec, out_dir: Path, *, force: bool, retries: int,
                         progress: Any = None) -> RunOutcome:
    """``execute_run`` with up to ``retries`` further attempts; a run that still fails becomes a ``failed`` outcome.

    A retry resumes from the run's training checkpoints. ``HarnessError`` (bad input) is not retried.
    """
    start = time.monotonic()
    for attempt in range(retries + 1):
        try:
            return execute_run(spec, out_dir, progress, force=force and attempt == 0)
        except HarnessError as exc:
            error = f"error: {exc}"
            break
        except OSError as exc:
            if user_fixable(exc):  # permissions, read-only, disk full: another attempt fails the same way
                error = f"error: {describe_os_error(exc)}"
                break
            error = traceback.format_exc(limit=4).strip()  # e.g. a transient I/O error: worth another attempt
            if attempt < retries:
                print(f"{spec.run_key}: attempt {attempt + 1} failed, retrying", file=sys.stderr)
        except Exception:  # noqa: BLE001 - any crash of one run must not stop the sweep
            error = traceback.format_exc(limit=4).strip()
            if attempt < retries:
                print(f"{spec.run_key}: attempt {attempt + 1} failed, retrying", file=sys.stderr)
    folder = run_dir(spec, out_dir)
    return RunOutcome(spec.run_key, "failed", str(folder.relative_to(out_dir)), error=error,
                      duration_s=time.monotonic() - start)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressDisplay:
    """Concise progress on stderr: runs done/total, the current run and stage, epoch, ETA.

    Implements ``harness.engine.runner.RunProgress`` for in-process runs; executors call ``start`` once and
    ``finished`` per outcome. Epoch lines are rate-limited to one per ``interval_s`` (and the last epoch).
    """

    def __init__(self, stream: TextIO | None = None, interval_s: float = 2.0, prefix: str = "") -> None:
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.prefix = prefix
        self.total = self.completed = 0
        self.durations: list[float] = []
        self._run_start = time.monotonic()
        self._last_epoch_line = 0.0

    def start(self, total: int, already_done: int) -> None:
        """A sweep of ``total`` runs begins, ``already_done`` of which are finished and skipped."""
        self.total, self.completed = total, already_done
        self.say(f"{total} runs planned, {already_done} already done, {total - already_done} to run")

    def stage(self, spec: RunSpec, message: str) -> None:
        """A run entered a new stage."""
        if message == "loading backbone":
            self._run_start = time.monotonic()
        self.say(f"[{self.completed + 1}/{self.total}] {spec.run_key}: {message}{self._eta(None)}")

    def epoch(self, spec: RunSpec, epoch: int, max_epoch: int) -> None:
        """Training of the current run finished epoch ``epoch`` of ``max_epoch``."""
        now = time.monotonic()
        if epoch < max_epoch and now - self._last_epoch_line < self.interval_s:
            return
        self._last_epoch_line = now
        fraction = epoch / max(max_epoch, 1)
        self.say(f"[{self.completed + 1}/{self.total}] {spec.run_key}: epoch {epoch}/{max_epoch}"
                    f"{self._eta(fraction)}")

    def finished(self, outcome: RunOutcome) -> None:
        """A run ended (done or failed)."""
        self.completed += 1
        if outcome.status == "done":
            self.durations.append(outcome.duration_s)
        detail = outcome.error.splitlines()[-1] if outcome.error else f"{outcome.n_records} records"
        self.say(f"[{self.completed}/{self.total}] {outcome.run_key}: {outcome.status} in "
                    f"{_duration(outcome.duration_s)} ({detail}){self._eta(None, finished=True)}")

    def _eta(self, fraction: float | None, finished: bool = False) -> str:
        remaining = self.total - self.completed - (0 if finished else 1)
        elapsed = time.monotonic() - self._run_start
        per_run = sum(self.durations) / len(self.durations) if self.durations else None
        if not finished and fraction:
            per_run = per_run or elapsed / fraction
            current = max(elapsed / fraction - elapsed, 0.0)
        elif not finished and per_run is not None:
            current = max(per_run - elapsed, 0.0)  # the current run, judged by the finished ones
        else:
            current = 0.0
        if per_run is None:
            return ""
        return f" | ETA {_duration(current + remaining * per_run)}"

    def say(self, line: str) -> None:
        """Print one progress line (with the display's prefix) to its stream."""
        print(self.prefix + line, file=self.stream, flush=True)
