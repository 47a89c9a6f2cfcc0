"""File-system errors a user can cause: one line naming the path and what to do (issue 15, items 5 and 6)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch
from clip_files import make_openai_clip, save_openai_state_dict, write_backbone_folder
from data_fixtures import build_dtd_fixture

import harness.fs_errors as fs_errors
from harness.cli import main
from harness.fs_errors import DiskFullError, describe_os_error
from harness.methods.checkpoints import atomic_save


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("fserrors")
    return build_dtd_fixture(root / "data", n_classes=4, image_size=32), write_backbone_folder(root / "backbone")


def run_args(inputs: tuple[Path, Path], out: Path) -> list[str]:
    data_root, backbone = inputs
    return ["run", "--method", "zeroshot", "--protocol", "base2new", "--datasets", "dtd", "--data-root",
            str(data_root), "--model", str(backbone), "--out", str(out)]


def one_error_line(err: str) -> str:
    assert "Traceback" not in err and "OSError" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_out_that_is_a_file_is_one_clear_line(inputs: tuple[Path, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    out.write_text("not a folder")
    assert main(run_args(inputs, out)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(out) in line and "not a directory" in line and "is a file" in line


def test_read_only_out_is_one_clear_line(inputs: tuple[Path, Path], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "readonly"
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if out in (self, *self.parents):  # the tests run as root, which chmod cannot stop: fake the refusal
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    assert main(run_args(inputs, out)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "read-only file system" in line and str(out) in line and "another --out" in line


def test_permission_denied_names_the_path() -> None:
    line = describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/data/runs"))
    assert line == ("permission denied: /data/runs: no permission: choose a folder you can write to "
                    "(e.g. another --out) or fix its permissions")
    assert describe_os_error(OSError(errno.EIO, "I/O error")) is None  # no path: not the user's doing


@pytest.mark.parametrize("failure", ["enospc", "torch"])
def test_disk_full_while_saving_is_said_and_leaves_no_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         failure: str) -> None:
    def full_save(payload: object, path: Path) -> None:
        Path(path).write_bytes(b"PK\x03\x04 half")
        if failure == "enospc":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4800 vs 4742")

    monkeypatch.setattr(torch, "save", full_save)
    monkeypatch.setattr(fs_errors, "free_bytes", lambda path: 0)
    with pytest.raises(DiskFullError, match=r"no space left on device: .*model\.pth\.tar-1: free some space"):
        atomic_save({"x": 1}, tmp_path / "model.pth.tar-1")
    assert list(tmp_path.iterdir()) == []


def test_torch_write_error_with_free_space_is_not_called_disk_full(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_save(payload: object, path: Path) -> None:
        Path(path).write_bytes(b"x")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1 vs 2")

    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr(fs_errors, "free_bytes", lambda path: 10 * fs_errors.LOW_SPACE_BYTES)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        atomic_save({"x": 1}, tmp_path / "w.pt")
    assert list(tmp_path.iterdir()) == []


def test_train_on_a_full_disk_then_rerun_after_freeing_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    clip = save_openai_state_dict(make_openai_clip(), tmp_path / "clip.pt")
    data = build_dtd_fixture(tmp_path / "data", n_classes=3, per_split=(2, 1, 1), image_size=36)

    def train(out: Path) -> list[str]:
        return ["train", "--preset", "coop_base2new", "--dataset", "dtd", "--data-root", str(data), "--model",
                str(clip), "--device", "cpu", "--shots", "2", "--seed", "1", "--out", str(out), "--no-test",
                "--set", "max_epoch=2", "--set", "batch_size=2"]

    real_save = torch.save

    def save_until_final(payload: object, path: Path) -> None:
        if Path(path).name.startswith("model.pth.tar"):  # the final weights hit the full disk
            Path(path).write_bytes(b"PK\x03\x04 half")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4800 vs 4742")
        real_save(payload, path)

    run = tmp_path / "run"
    monkeypatch.setattr(torch, "save", save_until_final)
    monkeypatch.setattr(fs_errors, "free_bytes", lambda path: 0)
    assert main(train(run)) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith("error: no space left on device: ") and "model.pth.tar-2" in line
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    monkeypatch.undo()  # space freed
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    assert main(train(run)) == 0
    assert main(train(tmp_path / "uninterrupted")) == 0
    weights = [torch.load(folder / "prompt_learner" / "model.pth.tar-2", weights_only=True)["state_dict"]
               for folder in (run, tmp_path / "uninterrupted")]
    assert torch.equal(weights[0]["ctx"], weights[1]["ctx"])
