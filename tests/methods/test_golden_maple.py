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


# -- the method beyond the goldens ---------------------------------------------------------------------------
def golden_backbone():
    from harness.engine.pipeline import cached_backbone

    return cached_backbone(str(GOLDEN_CLIP), None, "cpu", "fp32")


def build(**keys):
    from harness.methods import build_method, config_for

    config = config_for("maple", **keys)
    config.validate("test")
    return build_method("maple", golden_backbone(), config, ["banded", "blotchy", "braided"], "a photo of a {}.")


def test_save_reload_gives_the_same_logits(data_root: Path, tmp_path: Path) -> None:
    """Train one epoch from a fresh init, evaluate, reload the saved weights, evaluate again: same logits."""
    code = main(["train", "--method", "maple", "--dataset", "dtd", "--data-root", str(data_root), "--subsample", "base",
                 "--shots", "4", "--seed", "2", "--out", str(tmp_path / "run"), "--no-test", *BACKBONE,
                 "--set", "max_epoch=1", "--set", "prompt_depth=2", "--set", "batch_size=4"])
    assert code == 0
    first = evaluate(tmp_path / "run", data_root, "all", tmp_path)
    again = evaluate(tmp_path / "run" / "prompt_learner" / "model.pth.tar-1", data_root, "all", tmp_path)
    assert [row["logits"] for row in first] == [row["logits"] for row in again]


def test_initialisation_follows_the_official_order() -> None:
    """Seeded init: the deep couplings start identical (copies of one Linear) and the draws are reproducible."""
    method = build(prompt_depth=4)
    torch.manual_seed(5)
    method.init_parameters()
    learner = method.prompt_learner
    layers = learner.compound_prompt_projections
    assert len(layers) == 3 and len(learner.compound_prompts_text) == 3
    for layer in layers[1:]:
        assert torch.equal(layer.weight, layers[0].weight) and torch.equal(layer.bias, layers[0].bias)
    # ctx comes from the words "a photo" (deterministic), then proj, deep prompts, couplings from the RNG.
    torch.manual_seed(5)
    expected_proj = torch.nn.Linear(64, 64)
    expected_text = torch.empty(2, 64).normal_(std=0.02)
    for _ in range(2):
        torch.empty(2, 64).normal_(std=0.02)
    expected_coupling = torch.nn.Linear(64, 64)
    assert torch.equal(learner.proj.weight, expected_proj.weight)
    assert torch.equal(learner.compound_prompts_text[0], expected_text)
    assert torch.equal(layers[2].weight, expected_coupling.weight)
    words = method.backbone.embed_tokens(method.backbone.tokenize(["a photo of a"]))[0, 1:3]
    assert torch.equal(learner.ctx.detach(), words)


def test_shared_prefix_gives_the_whole_prompt_logits(data_root: Path) -> None:
    """The speed path (start + context encoded once) gives the same logits as whole 77-token prompts."""
    from harness.methods.checkpoints import load_weights

    fast, _ = load_weights(TRAINED, golden_backbone())
    slow, _ = load_weights(TRAINED, golden_backbone(), {"truncate_prompts": False})
    pixels = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for method in (fast, slow):
        method.set_classes(["banded", "blotchy", "braided", "bubbly"], "a photo of a {}.")
        method.prepare_eval()
    assert fast.prompt_learner.share_prefix and not slow.prompt_learner.share_prefix
    with torch.no_grad():
        assert torch.allclose(fast(pixels), slow(pixels), atol=1e-5)


def test_depth_beyond_the_backbone_is_an_error_naming_the_key() -> None:
    with pytest.raises(HarnessError, match=r"prompt_depth=5 > 4 layers"):
        build(prompt_depth=5)


def test_words_with_more_than_four_tokens_are_refused() -> None:
    with pytest.raises(ConfigError, match="n_ctx <= 4"):
        build(n_ctx=6, prompt_depth=2)
    assert build(n_ctx=6, ctx_init="", prompt_depth=2).prompt_learner.prefix_text == "X X X X X X"


def test_wrong_method_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    from harness.methods.checkpoints import load_weights

    coop = tmp_path / "prompt_learner" / "model.pth.tar-5"
    coop.parent.mkdir(parents=True)
    torch.save({"state_dict": {"ctx": torch.zeros(2, 64)}, "epoch": 5}, coop)
    with pytest.raises(CheckpointError, match="not an official checkpoint of method 'maple'"):
        load_weights(coop, golden_backbone(), method="maple")
    with pytest.raises(CheckpointError, match="not an official checkpoint of method 'coop'"):
        load_weights(TRAINED, golden_backbone(), method="coop")


def official_state(file: Path = TRAINED) -> dict[str, torch.Tensor]:
    return dict(torch.load(file, weights_only=True)["state_dict"])


def test_wrong_depth_is_a_clear_error(tmp_path: Path) -> None:
    """Official depth-3 weights into a depth-2 model (``--init`` with another prompt_depth)."""
    method = build(prompt_depth=2)
    with pytest.raises(HarnessError, match=r"prompt_depth=3; this model has prompt_depth=2"):
        method.load_learned_state(official_state())


def test_wrong_width_is_a_clear_error(tmp_path: Path) -> None:
    state = official_state()
    state["prompt_learner.proj.weight"] = torch.zeros(32, 64)
    file = tmp_path / "MultiModalPromptLearner" / "model.pth.tar-5"
    file.parent.mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 5}, file)
    from harness.methods.checkpoints import load_weights

    with pytest.raises(CheckpointError, match=r"proj.weight has shape \(32, 64\), expected \(64, 64\)"):
        load_weights(file, golden_backbone())


def test_class_count_does_not_bind_the_weights(data_root: Path, tmp_path: Path) -> None:
    """The file's class buffers (3 base classes) are ignored, as by the official load_model: 6 classes work."""
    assert official_state()["prompt_learner.token_prefix"].shape[0] == 3
    rows = evaluate(TRAINED, data_root, "all", tmp_path)
    assert len(rows[0]["logits"]) == 6


def test_unknown_entries_in_an_official_file_are_refused() -> None:
    state = official_state()
    state["prompt_learner.meta_net.linear1.weight"] = torch.zeros(2, 2)
    with pytest.raises(HarnessError, match="unexpected keys"):
        build(prompt_depth=3).load_learned_state(state)
    state = official_state()
    state["something_else"] = torch.zeros(1)
    with pytest.raises(HarnessError, match="neither prompt_learner"):
        build(prompt_depth=3).load_learned_state(state)


def test_published_numbers_are_found_under_the_registry_name() -> None:
    from harness.results import reference

    assert reference.method_display("maple") == "MaPLe"
    assert reference.lookup("base2new", "maple", "DTD", "base") == pytest.approx(80.36)
    assert reference.lookup("base2new", "maple", "Average", "hm") == pytest.approx(78.55)
    assert reference.lookup("domain_generalization", "maple", "ImageNet-Sketch", "accuracy") == pytest.approx(49.15)


def test_another_ctx_init_in_an_official_file_is_detected() -> None:
    """An official file does not name its CTX_INIT, but its token_suffix shows the frozen words ("of a")."""
    state = official_state()
    build(prompt_depth=3).load_learned_state(state)  # "a photo of a": the suffix starts with "of a"
    with pytest.raises(HarnessError, match="another CTX_INIT"):
        build(prompt_depth=3, ctx_init="a good photo of").load_learned_state(state)
    state["prompt_learner.token_suffix"] = state["prompt_learner.token_suffix"][:, 2:]  # as if "X X" + class
    with pytest.raises(HarnessError, match="another CTX_INIT"):
        build(prompt_depth=3).load_learned_state(state)
