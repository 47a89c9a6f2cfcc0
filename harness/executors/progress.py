"""The progress display of ``harness run``: runs done/total, the current run's stage, progress inside epochs, ETA.

On a terminal, training shows one bar redrawn in place (epoch, steps, loss, images/s, ETA); elsewhere (logs,
CI) the same facts are printed as plain lines, at most one per ``line_interval_s`` plus one per finished
epoch (rate-limited by ``interval_s``). Stage changes and finished runs are always printed on their own line.

The ETA is ``harness.executors.eta`` over the planned work of the runs not finished yet
(``harness.executors.work``) at the speeds measured so far: seconds per training step (between step
reports), seconds per evaluated image (each evaluation stage's duration over its planned images) and the
rest of each finished run's time as a fixed cost per run. With parallel workers, whose steps the parent
does not see, the elapsed time is scaled by the work left over the work finished.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from harness.engine.runner import RunOutcome
from harness.executors.eta import (
    Rates,
    RunWork,
    estimate_from_finished,
    estimate_seconds,
    fill_rates,
    format_duration,
    remaining_work,
)
from harness.protocols.spec import RunSpec

BAR_WIDTH = 24


class ProgressDisplay:
    """Progress on stderr; implements ``harness.engine.runner.RunProgress`` (plus ``step``) for in-process runs.

    Executors call ``start`` once and ``finished`` per outcome; the runner calls ``stage``, ``epoch`` and
    ``step`` while a run executes in this process.
    """

    def __init__(self, stream: TextIO | None = None, interval_s: float = 2.0, prefix: str = "", *,
                 line_interval_s: float = 30.0, bar_interval_s: float = 0.2, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.interval_s, self.line_interval_s, self.bar_interval_s = interval_s, line_interval_s, bar_interval_s
        self.prefix = prefix
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.clock = clock
        self.total = self.completed = 0
        self.work: dict[str, RunWork] = {}
        self.unfinished: list[str] = []
        self.finished_work: list[RunWork] = []
        self.sweep_start = clock()
        self.train_s = self.eval_s = 0.0
        self.train_steps = self.eval_images = 0
        self.overheads: list[float] = []
        self._current: str | None = None
        self._bar_shown = False
        self._last_line = self._last_bar = self._last_epoch_line = -float("inf")
        self._reset_run(None)

    def _reset_run(self, run_key: str | None) -> None:
        now = self.clock()
        self._current, self._run_start = run_key, now
        self._steps_done = self._evals_done = self._run_steps = 0
        self._run_train_s = self._run_eval_s = 0.0
        self._phase, self._phase_start, self._phase_images = "other", now, 0
        self._last_step_at = now

    def start(self, total: int, already_done: int, pending: Sequence[RunSpec] = (), out_dir: Path | None = None,
              work: dict[str, RunWork] | None = None) -> None:
        """A sweep of ``total`` runs begins, ``already_done`` of them finished.

        Args:
            total: runs planned.
            already_done: those of them finished before (skipped).
            pending: the runs to execute, whose planned work the ETA is computed from.
            out_dir: the output folder (finished trainings there count as no work).
            work: the planned work by run key, instead of planning it from ``pending``'s cards and presets.
        """
        from harness.executors.work import plan_work

        self.total, self.completed = total, already_done
        self.sweep_start = self.clock()
        if work is not None:
            self.work, self.unfinished = dict(work), list(work)
        elif pending:
            self.work = plan_work(pending, out_dir if out_dir is not None else Path("."))
            self.unfinished = [spec.run_key for spec in pending]
        self.say(f"{total} runs planned, {already_done} already done, {total - already_done} to run")

    def _close_phase(self, now: float) -> None:
        if self._phase == "eval":
            spent = now - self._phase_start
            self.eval_s += spent
            self._run_eval_s += spent
            self.eval_images += self._phase_images
            self._evals_done += 1
        self._phase = "other"

    def stage(self, spec: RunSpec, message: str) -> None:
        """A run entered a new stage (the runner's messages: ``training on ...``, ``evaluating ...``)."""
        now = self.clock()
        if spec.run_key != self._current:
            self._reset_run(spec.run_key)
        self._close_phase(now)
        if message.startswith("evaluating"):
            planned = self.work.get(spec.run_key, RunWork()).eval_images
            self._phase_images = planned[self._evals_done] if self._evals_done < len(planned) else 0
            self._phase = "eval"
        elif message.startswith("training on"):
            self._phase = "train"
        self._phase_start = self._last_step_at = now
        self.say(f"[{self.completed + 1}/{self.total}] {spec.run_key}: {message}{self._eta()}")

    def step(self, spec: RunSpec, update: Any) -> None:
        """A training step finished (``update`` is a ``harness.engine.train.TrainProgress``)."""
        now = self.clock()
        if spec.run_key != self._current:
            self._reset_run(spec.run_key)
        spent = now - self._last_step_at
        self._last_step_at = now
        self.train_s += spent
        self._run_train_s += spent
        self.train_steps += 1
        self._run_steps += 1
        self._steps_done = (update.epoch - 1) * update.steps + update.step  # counts resumed epochs as done
        work = self.work.get(spec.run_key)
        if work is not None:  # the loader's real step count replaces the card-based plan
            self.work[spec.run_key] = RunWork(update.max_epoch * update.steps, work.batch_size, work.eval_images)
        if self.tty and now - self._last_bar >= self.bar_interval_s:
            self._last_bar = now
            self._draw_bar(spec, update)
        elif not self.tty and now - self._last_line >= self.line_interval_s and not update.epoch_done:
            self._last_line = now
            self.say(f"[{self.completed + 1}/{self.total}] {spec.run_key}: {self._step_text(update)}{self._eta()}")

    def epoch(self, spec: RunSpec, epoch: int, max_epoch: int) -> None:
        """Training of the current run finished epoch ``epoch`` of ``max_epoch`` (a plain line when not a tty)."""
        now = self.clock()
        if self.tty or (epoch < max_epoch and now - self._last_epoch_line < self.interval_s):
            return
        self._last_epoch_line = self._last_line = now
        self.say(f"[{self.completed + 1}/{self.total}] {spec.run_key}: epoch {epoch}/{max_epoch}{self._eta()}")

    def finished(self, outcome: RunOutcome) -> None:
        """A run ended (done or failed)."""
        now = self.clock()
        if outcome.run_key == self._current:
            self._close_phase(now)
            if outcome.status == "done":
                self.overheads.append(max(outcome.duration_s - self._run_train_s - self._run_eval_s, 0.0))
            self._reset_run(None)
        if outcome.run_key in self.unfinished:
            self.unfinished.remove(outcome.run_key)
            self.finished_work.append(self.work.get(outcome.run_key, RunWork()))
        self.completed += 1
        detail = outcome.error.splitlines()[-1] if outcome.error else f"{outcome.n_records} records"
        self.say(f"[{self.completed}/{self.total}] {outcome.run_key}: {outcome.status} in "
                 f"{format_duration(outcome.duration_s)} ({detail}){self._eta()}")

    def remaining_seconds(self) -> float | None:
        """The estimated seconds left for the unfinished runs (``None`` before anything was measured)."""
        todo_keys = sorted(self.unfinished, key=lambda key: key != self._current)  # the current run first
        todo = [self.work.get(key, RunWork()) for key in todo_keys]
        if not todo:
            return 0.0 if self.work else None
        in_current = todo_keys[0] == self._current
        remaining = remaining_work(todo, self._steps_done if in_current else 0, self._evals_done if in_current else 0)
        rates = Rates(self.train_s / self.train_steps if self.train_steps else None,
                      self.eval_s / self.eval_images if self.eval_images else None,
                      sum(self.overheads) / len(self.overheads) if self.overheads else 0.0)
        spent = self.clock() - self._run_start - self._run_train_s - self._run_eval_s if in_current else 0.0
        if in_current and self._phase == "eval":  # an evaluation's time is added when it ends
            spent -= self.clock() - self._phase_start
        elif in_current and self._phase == "train":  # training time is added per step
            spent -= self.clock() - self._last_step_at
        estimate = estimate_seconds(remaining, rates, max(spent, 0.0))
        filled = fill_rates(rates, remaining.batch_size)
        if estimate is not None and filled is not None and in_current and self._phase == "eval":
            # Part of the open evaluation is done: take off its elapsed time, at most its planned cost.
            estimate -= min(self.clock() - self._phase_start, self._phase_images * filled.image_s)
        if estimate is None:  # parallel workers: only finished runs are seen here
            estimate = estimate_from_finished(self.finished_work, todo, self.clock() - self.sweep_start)
        return estimate

    def _eta(self) -> str:
        seconds = self.remaining_seconds()
        return "" if seconds is None or not self.unfinished else f" | ETA {format_duration(seconds)}"

    def _step_detail(self, update: Any) -> str:
        batch = self.work.get(self._current or "", RunWork()).batch_size
        speed = batch * self._run_steps / self._run_train_s if self._run_train_s > 0 else 0.0
        return f"step {update.step}/{update.steps} loss {update.loss_avg:.4f} {speed:.1f} img/s"

    def _step_text(self, update: Any) -> str:
        return f"epoch {update.epoch}/{update.max_epoch} {self._step_detail(update)}"

    def _draw_bar(self, spec: RunSpec, update: Any) -> None:
        filled = int(BAR_WIDTH * update.step / max(update.steps, 1))
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        text = (f"[{self.completed + 1}/{self.total}] {spec.run_key}: epoch {update.epoch}/{update.max_epoch} "
                f"[{bar}] {self._step_detail(update)}{self._eta()}")
        self.stream.write(f"\r\x1b[K{self.prefix}{text}")
        self.stream.flush()
        self._bar_shown = True

    def say(self, line: str) -> None:
        """Print one progress line (with the display's prefix), first clearing a bar drawn in place."""
        if self._bar_shown:
            self.stream.write("\r\x1b[K")
            self._bar_shown = False
        print(self.prefix + line, file=self.stream, flush=True)
