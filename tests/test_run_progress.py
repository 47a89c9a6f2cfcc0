"""The progress display of ``harness run`` and its ETA (issue 15, item 2); the clock is simulated, never real."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest

from harness.engine.runner import RunOutcome
from harness.engine.train import TrainProgress
from harness.executors.eta import (
    Rates,
    Remaining,
    RunWork,
    estimate_from_finished,
    estimate_seconds,
    fill_rates,
    format_duration,
    remaining_work,
    training_steps,
)
from harness.executors.progress import ProgressDisplay
from harness.protocols import DatasetRoles, MethodChoice, RunContext
from harness.protocols.plans import plan_base2new


def test_training_steps_follow_the_loader() -> None:
    assert training_steps(64, 32, 10) == 20  # 2 full batches per epoch
    assert training_steps(70, 32, 10) == 20  # drop_last with a full batch
    assert training_steps(20, 32, 5) == 5  # fewer images than a batch: one short batch
    assert training_steps(0, 32, 5) == 0 and training_steps(64, 32, 0) == 0


def test_remaining_work_subtracts_what_the_current_run_did() -> None:
    todo = [RunWork(100, 32, (500, 400)), RunWork(10, 4, (50,)), RunWork(0, 1, (70,))]
    assert remaining_work(todo, steps_done=40, evals_done=1) == Remaining(60 + 10, 400 + 50 + 70, 3, 18.0)
    assert remaining_work([]) == Remaining(0, 0, 0, 1.0)


def test_estimate_from_rates_and_derived_rates() -> None:
    remaining = Remaining(train_steps=100, eval_images=1000, runs=4, batch_size=32)
    assert estimate_seconds(remaining, Rates(0.5, 0.01, 2.0)) == pytest.approx(50 + 10 + 8)
    assert estimate_seconds(remaining, Rates()) is None
    assert fill_rates(Rates(step_s=0.64), 32) == Rates(0.64, 0.01, 0.0)  # a step = 32 images x 2
    assert fill_rates(Rates(image_s=0.01), 32) == Rates(0.64, 0.01, 0.0)
    done, todo = [RunWork(10, 4, (20,))], [RunWork(10, 4, (20,)), RunWork(10, 4, (20,))]
    assert estimate_from_finished(done, todo, 30.0) == pytest.approx(60.0)
    assert estimate_from_finished([], todo, 30.0) is None
    assert [format_duration(s) for s in (42, 187, 3900)] == ["42s", "3m07s", "1h05m"]


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def simulate(display: ProgressDisplay, clock: Clock, specs: list, works: list[RunWork], step_s: float,
             image_s: float, overhead_s: float, check) -> None:
    """Run the sweep through the display with fixed true costs, calling ``check()`` after every event."""
    for spec, work in zip(specs, works):
        start = clock.now
        display.stage(spec, "loading backbone")
        clock.now += overhead_s
        check()
        if work.train_steps:
            display.stage(spec, "training on a (4 epochs)")
            steps = work.train_steps // 4
            for epoch in range(1, 5):
                for step in range(1, steps + 1):
                    clock.now += step_s
                    display.step(spec, TrainProgress(epoch, 4, step, steps, 1.0, 1.0, 50.0, 0.002))
                    check()
                display.epoch(spec, epoch, 4)
        for images in work.eval_images:
            display.stage(spec, "evaluating a (base)")
            clock.now += images * image_s
            check()
        display.finished(RunOutcome(spec.run_key, "done", "x", 4, duration_s=clock.now - start))


def test_eta_is_within_a_factor_1_5_of_the_truth_after_the_first_minute_when_the_first_run_is_largest() -> None:
    context = RunContext()
    specs = plan_base2new(DatasetRoles("a", ("b", "c")), [1, 2, 3], MethodChoice("coop", "coop", True), None, context)
    specs = specs[:9] if len(specs) >= 9 else specs
    works = [RunWork(2000, 32, (3000, 3000))] + [RunWork(200, 32, (300, 300))] * (len(specs) - 1)
    step_s, image_s, overhead_s = 0.2, 0.002, 4.0
    total = sum(w.train_steps * step_s + sum(w.eval_images) * image_s + overhead_s for w in works)
    clock = Clock()
    start = clock.now
    display = ProgressDisplay(io.StringIO(), tty=False, clock=clock)
    display.start(len(specs), 0, work={s.run_key: w for s, w in zip(specs, works)})
    ratios = []

    def check() -> None:
        if clock.now - start >= 60.0:
            truth = start + total - clock.now
            estimate = display.remaining_seconds()
            if truth > 0:
                ratios.append(estimate / truth)

    simulate(display, clock, specs, works, step_s, image_s, overhead_s, check)
    assert clock.now - start == pytest.approx(total)
    assert len(ratios) > 100 and all(1 / 1.5 <= r <= 1.5 for r in ratios), (min(ratios), max(ratios))
    # Extrapolating the first run over the others (the old estimate) would be several times the truth:
    first_run = works[0].train_steps * step_s + sum(works[0].eval_images) * image_s + overhead_s
    assert first_run * (len(specs) - 1) / (total - first_run) > 3


def test_plain_lines_when_not_a_terminal() -> None:
    clock, stream = Clock(), io.StringIO()
    spec = plan_base2new(DatasetRoles("a", ()), [1], MethodChoice("coop", "coop", True), None, RunContext())[0]
    display = ProgressDisplay(stream, tty=False, clock=clock, line_interval_s=30.0, interval_s=0.0)
    display.start(1, 0, work={spec.run_key: RunWork(40, 8, (100,))})
    display.stage(spec, "training on a (2 epochs)")
    for epoch in (1, 2):
        for step in range(1, 21):
            clock.now += 2.0
            display.step(spec, TrainProgress(epoch, 2, step, 20, 0.5, 0.75, 50.0, 0.002))
        display.epoch(spec, epoch, 2)
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    step_lines = [line for line in lines if " step " in line]
    assert step_lines[0] == ("[1/1] coop-embedded-a-base-16shots-seed1: epoch 1/2 step 1/20 loss 0.7500 4.0 img/s"
                             " | ETA 1m30s")  # 39 steps left at 2 s + 100 images at the derived 2 / (8 x 2) s
    assert len(step_lines) == 3  # one per 30 s of 80 s, besides the epoch lines
    assert [line.split(": ")[1] for line in lines if ": epoch " in line and " step " not in line] == [
        "epoch 1/2 | ETA 52s", "epoch 2/2 | ETA 12s"]


def test_redrawn_bar_on_a_terminal() -> None:
    clock, stream = Clock(), io.StringIO()
    spec = plan_base2new(DatasetRoles("a", ()), [1], MethodChoice("coop", "coop", True), None, RunContext())[0]
    display = ProgressDisplay(stream, tty=True, clock=clock, bar_interval_s=0.0)
    display.start(1, 0, work={spec.run_key: RunWork(10, 4, ())})
    display.stage(spec, "training on a (1 epochs)")
    for step in range(1, 11):
        clock.now += 1.0
        display.step(spec, TrainProgress(1, 1, step, 10, 0.5, 0.5, 50.0, 0.002))
    display.epoch(spec, 1, 1)
    display.finished(RunOutcome(spec.run_key, "done", "x", 4, duration_s=10.0))
    text = stream.getvalue()
    frames = text.split("\r\x1b[K")
    assert len(frames) == 12  # before, ten redraws, then cleared for the final line
    assert frames[4] == ("coop-embedded-a-base-16shots-seed1: epoch 1/1 [#########---------------] step 4/10 "
                         "loss 0.5000 4.0 img/s | ETA 6s").join(["[1/1] ", ""])
    assert "epoch 1/1\n" not in text  # no separate epoch line on a terminal: the bar shows it
    assert frames[-1] == "[1/1] coop-embedded-a-base-16shots-seed1: done in 10s (4 records)\n"


def test_parallel_workers_print_plain_lines_inside_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.executors.local import _WorkerProgress

    spec = plan_base2new(DatasetRoles("a", ()), [1], MethodChoice("coop", "coop", True), None, RunContext())[0]
    worker = _WorkerProgress(line_interval_s=0.0)
    worker.step(spec, TrainProgress(1, 2, 3, 10, 0.5, 0.25, 50.0, 0.002))
    assert capsys.readouterr().err == "  worker: coop-embedded-a-base-16shots-seed1: epoch 1/2 step 3/10 loss 0.2500\n"
    quiet = _WorkerProgress(line_interval_s=3600.0)  # rate-limited: nothing within the interval
    quiet.step(spec, TrainProgress(1, 2, 4, 10, 0.5, 0.25, 50.0, 0.002))
    assert capsys.readouterr().err == ""


def test_harness_run_reports_steps_inside_epochs_and_an_eta(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import functools

    from clip_files import write_backbone_folder
    from data_fixtures import build_dtd_fixture

    import harness.executors.local as local
    from harness.cli import main

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(local, "ProgressDisplay", functools.partial(ProgressDisplay, line_interval_s=0.0))
    data = build_dtd_fixture(tmp_path / "data", n_classes=4, per_split=(4, 2, 2), image_size=32)
    backbone = write_backbone_folder(tmp_path / "backbone")
    assert main(["run", "--method", "coop", "--protocol", "base2new", "--datasets", "dtd", "--data-root", str(data),
                 "--model", str(backbone), "--seeds", "1", "--out", str(tmp_path / "runs"), "--set", "max_epoch=2",
                 "--set", "batch_size=2", "--set", "ctx_init="]) == 0
    lines = capsys.readouterr().err.splitlines()
    steps = [line for line in lines if " step " in line]
    assert [line.split(": ")[1].split(" loss ")[0] for line in steps] == [
        "epoch 1/2 step 1/4", "epoch 1/2 step 2/4", "epoch 1/2 step 3/4",
        "epoch 2/2 step 1/4", "epoch 2/2 step 2/4", "epoch 2/2 step 3/4"]  # the last step of an epoch: its line
    assert all(" img/s | ETA " in line for line in steps)
