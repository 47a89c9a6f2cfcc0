"""A finished training's checksums: a damaged checkpoint is found and rebuilt on reuse (issue 15, item 7)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from clip_files import make_openai_clip, save_openai_state_dict, write_backbone_folder
from data_fixtures import build_dtd_fixture

from harness.cli import main
from harness.engine.integrity import CHECKSUMS_FILE, damaged_files


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def content(path: Path) -> dict[str, object]:
    """What a weights file holds (torch.save writes a random serialization id, so bytes differ between saves)."""
    saved = torch.load(path, weights_only=True)
    return {"ctx": saved["state_dict"]["ctx"].tolist(), "epoch": saved["epoch"],
            "momentum": [s["momentum_buffer"].tolist() for s in saved["optimizer"]["state"].values()]}


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_damaged_weights_are_rebuilt_and_a_damaged_state_retrains(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    clip = save_openai_state_dict(make_openai_clip(), tmp_path / "clip.pt")
    data = build_dtd_fixture(tmp_path / "data", n_classes=3, per_split=(2, 1, 1), image_size=36)
    run = tmp_path / "run"
    train = ["train", "--preset", "coop_base2new", "--dataset", "dtd", "--data-root", str(data), "--model",
             str(clip), "--device", "cpu", "--shots", "2", "--seed", "1", "--out", str(run), "--no-test",
             "--set", "max_epoch=2", "--set", "batch_size=2"]
    assert main(train) == 0
    prompt_dir = run / "prompt_learner"
    weights = prompt_dir / "model.pth.tar-2"
    recorded = json.loads((prompt_dir / CHECKSUMS_FILE).read_text())
    assert recorded == {"model.pth.tar-2": sha256(weights), "last.pt": sha256(prompt_dir / "last.pt")}
    original = content(weights)
    capsys.readouterr()

    truncate(weights)
    assert set(damaged_files(prompt_dir)) == {"model.pth.tar-2"}
    evaluate = ["eval", "--weights", str(run), "--dataset", "dtd", "--data-root", str(data), "--model", str(clip),
                "--device", "cpu", "--out", str(tmp_path / "eval")]
    assert main(evaluate) == 2
    assert "model.pth.tar-2: damaged (sha256" in capsys.readouterr().err
    assert main(train) == 0
    out = capsys.readouterr().out
    assert "damaged training files" in out and "rebuilding the weights from the resume state" in out
    assert "already trained" not in out
    assert content(weights) == original and damaged_files(prompt_dir) == {}

    truncate(prompt_dir / "last.pt")
    assert main(train) == 0
    assert "training again from the start" in capsys.readouterr().out
    assert content(weights) == original  # training is deterministic from its seed

    assert main(train) == 0
    assert "already trained" in capsys.readouterr().out


def test_finished_run_with_a_damaged_training_is_unfinished_again(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = build_dtd_fixture(tmp_path / "data", n_classes=4, per_split=(2, 1, 2), image_size=32)
    backbone = write_backbone_folder(tmp_path / "backbone")
    out = tmp_path / "runs"
    argv = ["run", "--method", "coop", "--protocol", "base2new", "--datasets", "dtd", "--data-root", str(data),
            "--model", str(backbone), "--seeds", "1", "--out", str(out), "--set", "max_epoch=1",
            "--set", "ctx_init="]
    assert main(argv) == 0
    (weights,) = (out / "train").glob("*/prompt_learner/model.pth.tar-1")
    original = content(weights)
    (run_folder,) = (out / "base2new").iterdir()
    records = (run_folder / "records.jsonl").read_text()
    capsys.readouterr()

    truncate(weights)
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "damaged files: model.pth.tar-1" in err and "unfinished again" in err
    assert "0 already done, 1 to run" in err and "rebuilding the weights" in err
    assert content(weights) == original
    rows = [json.loads(line) for line in (run_folder / "records.jsonl").read_text().splitlines()]
    before = [json.loads(line) for line in records.splitlines()]
    assert [r["value"] for r in rows] == [r["value"] for r in before]
    assert main(argv) == 0
    assert "1 already done, 0 to run" in capsys.readouterr().err
