"""``harness train`` then ``harness eval --weights`` on base then new classes, from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clip_files import make_openai_clip, save_openai_state_dict
from data_fixtures import build_dtd_fixture

from harness.cli import main


@pytest.fixture()
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    clip = save_openai_state_dict(make_openai_clip(), tmp_path / "clip.pt")
    data = build_dtd_fixture(tmp_path / "data", n_classes=5, per_split=(2, 1, 2), image_size=36)
    return {"clip": clip, "data": data, "tmp": tmp_path}


def common(files: dict[str, Path]) -> list[str]:
    return ["--dataset", "dtd", "--data-root", str(files["data"]), "--model", str(files["clip"]), "--device", "cpu"]


@pytest.mark.parametrize("preset", ["cocoop", "coop_base2new"])
def test_train_base_then_eval_new(files: dict[str, Path], capsys, preset: str) -> None:
    run_dir = files["tmp"] / "run"
    train = ["train", "--preset", preset, "--subsample", "base", "--shots", "2", "--seed", "1", "--out", str(run_dir),
             "--set", "max_epoch=2", "--set", "batch_size=2", *common(files)]
    assert main(train) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "epoch [1/2]" in out and "lr 1.0000e-05" in out and "epoch [2/2]" in out and "lr 2.0000e-03" in out
    assert "* accuracy:" in out
    weights = run_dir / "prompt_learner" / "model.pth.tar-2"
    assert weights.is_file()
    stored = json.loads((run_dir / "config.json").read_text())
    assert stored["subsample"] == "base" and stored["classnames"] == ["banded", "blotchy", "braided"]

    # Rerunning the same command finds the finished training and does not train again.
    assert main(train) == 0
    assert "already trained" in capsys.readouterr().out

    evaluate = ["eval", "--weights", str(run_dir), "--subsample", "new", "--shots", "2", "--seed", "1",
                "--out", str(files["tmp"] / "eval"), *common(files)]
    assert main(evaluate) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "(new, test): 4 images" in out  # 2 new classes x 2 test images


def test_train_rejects_unknown_key_and_wrong_type(files: dict[str, Path], capsys) -> None:
    base = ["train", "--preset", "cocoop", "--shots", "2", *common(files)]
    assert main([*base, "--set", "n_ctxx=4"]) == 2
    assert "unknown key 'n_ctxx' for method 'cocoop'; allowed keys:" in capsys.readouterr().err
    assert main([*base, "--set", "batch_size=big"]) == 2
    assert "batch_size must be an integer" in capsys.readouterr().err
    assert main([*base, "--set", "class_token_position=top"]) == 2
    assert "allowed: end, middle, front" in capsys.readouterr().err


@pytest.mark.slow
def test_train_then_eval_new_on_the_embedded_world(embedded_world, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    train = ["train", "--preset", "cocoop_embedded", "--dataset", "world_textures", "--subsample", "base",
             "--shots", "4", "--seed", "1", "--out", str(run_dir), "--set", "max_epoch=1", "--device", "cpu"]
    assert main(train) == 0, capsys.readouterr().err
    assert "* accuracy:" in capsys.readouterr().out
    evaluate = ["eval", "--weights", str(run_dir), "--dataset", "world_textures", "--subsample", "new",
                "--shots", "4", "--seed", "1", "--device", "cpu", "--out", str(tmp_path / "eval")]
    assert main(evaluate) == 0, capsys.readouterr().err
    assert "* accuracy:" in capsys.readouterr().out
