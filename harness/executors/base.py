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
from typing import Any, Protocol

from harness.engine.integrity import reopen_damaged_run
from harness.engine.runner import RECORDS_NAME, RunOutcome, count_records, execute_run, is_done, run_dir
from harness.errors import HarnessError
from harness.executors.progress import ProgressDisplay
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
