"""The progress display of ``harness run``: runs done/total, current run, epoch and ETA (clock faked)."""

from __future__ import annotations

import io

import pytest

from harness.engine.runner import RunOutcome
from harness.executors import base
from harness.executors.base import ProgressDisplay
from harness.protocols import DatasetRoles, MethodChoice, RunContext
from harness.protocols.plans import plan_base2new


def test_progress_lines_count_runs_and_estimate_the_remaining_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(base.time, "monotonic", lambda: clock[0])
    specs = plan_base2new(DatasetRoles("a", ("b",)), [1, 2], MethodChoice("coop", "coop", True), None, RunContext())
    stream = io.StringIO()
    display = ProgressDisplay(stream, interval_s=0.0)
    display.start(total=4, already_done=1)
    display.stage(specs[1], "loading backbone")
    clock[0] += 30.0
    display.epoch(specs[1], 5, 10)  # half of the current run in 30 s: 30 s left, then 2 runs of 60 s
    clock[0] += 30.0
    display.finished(RunOutcome(specs[1].run_key, "done", "x", 4, duration_s=60.0))
    display.stage(specs[2], "loading backbone")
    display.finished(RunOutcome(specs[2].run_key, "failed", "y", error="Traceback...\nValueError: boom"))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "4 runs planned, 1 already done, 3 to run"
    assert lines[1] == "[2/4] coop-embedded-a-base-16shots-seed2: loading backbone"
    assert lines[2] == "[2/4] coop-embedded-a-base-16shots-seed2: epoch 5/10 | ETA 2m30s"
    assert lines[3] == "[2/4] coop-embedded-a-base-16shots-seed2: done in 1m00s (4 records) | ETA 2m00s"
    assert lines[4] == "[3/4] coop-embedded-b-base-16shots-seed1: loading backbone | ETA 2m00s"
    assert lines[5] == "[3/4] coop-embedded-b-base-16shots-seed1: failed in 0s (ValueError: boom) | ETA 1m00s"
