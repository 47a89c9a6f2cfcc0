"""After failed runs, 'rerun the same command' only when a rerun can fix them (issue 15, item 9)."""

from __future__ import annotations

from pathlib import Path

import pytest
from clip_files import write_backbone_folder
from data_fixtures import build_dtd_fixture

import harness.executors.base as executor_base
from harness.cli import main
from harness.engine.runner import RunOutcome
from harness.engine.train import TrainingDiverged
from harness.errors import CheckpointError
from harness.executors.failures import failure_summary


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("failures")
    return build_dtd_fixture(root / "data", n_classes=4, image_size=32), write_backbone_folder(root / "backbone")


def run_with_failure(inputs: tuple[Path, Path], out: Path, monkeypatch: pytest.MonkeyPatch,
                     failure: BaseException) -> int:
    def failing_run(*args: object, **kwargs: object) -> RunOutcome:
        raise failure

    monkeypatch.setattr(executor_base, "execute_run", failing_run)
    data_root, backbone = inputs
    return main(["run", "--method", "zeroshot", "--protocol", "base2new", "--datasets", "dtd", "--data-root",
                 str(data_root), "--model", str(backbone), "--out", str(out)])


@pytest.mark.parametrize("failure", [
    TrainingDiverged("loss is nan at epoch 1/2, step 1/3; lower the learning rate (--set lr=...)"),
    CheckpointError("runs/x/last.pt: unreadable resume state (EOF); delete it to start over"),
])
def test_deterministic_failure_says_what_to_change(inputs: tuple[Path, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                                   failure: BaseException) -> None:
    assert run_with_failure(inputs, tmp_path / "runs", monkeypatch, failure) == 1
    err = capsys.readouterr().err
    assert str(failure) in err
    assert "rerun the same command to retry" not in err
    assert "1 of 1 runs failed; 1 would fail again as they are" in err and "change what each error" in err


def test_crash_says_rerun(inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    assert run_with_failure(inputs, tmp_path / "runs", monkeypatch, RuntimeError("CUDA out of memory")) == 1
    assert "error: 1 of 1 runs failed; rerun the same command to retry them" in capsys.readouterr().err


def test_summary_of_mixed_failures() -> None:
    crash = RunOutcome("a", "failed", "a", error="Traceback ...\nRuntimeError: worker died")
    nan = RunOutcome("b", "failed", "b", error="error: loss is nan at epoch 1/2, step 1/3")
    assert failure_summary([], 3) == ""
    assert failure_summary([crash], 3) == "error: 1 of 3 runs failed; rerun the same command to retry them"
    mixed = failure_summary([crash, nan], 3)
    assert mixed.startswith("error: 2 of 3 runs failed; 1 would fail again as they are (b)")
    assert mixed.endswith("the other 1 may pass on a plain rerun")
