"""Training CoOp/CoCoOp: saved weights, resume after an interruption, NaN stop, mixed precision on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from data_fixtures import build_dtd_fixture

from harness.config import MethodConfig
from harness.data import prepare_task_data
from harness.engine.train import TrainingDiverged, train_method
from harness.methods import build_method, config_for
from harness.methods.checkpoints import load_weights
from harness.models.backbone import Backbone


@pytest.fixture()
def task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    root = build_dtd_fixture(tmp_path / "data", n_classes=4, per_split=(3, 1, 2), image_size=36)
    return prepare_task_data("dtd", root, shots=3, seed=1, subsample="base")


def coop_config(**changes) -> MethodConfig:
    values = {"method": "coop", "n_ctx": 4, "batch_size": 2, "max_epoch": 2, "lr": 0.05}
    values.update(changes)
    return config_for(values.pop("method"), **values)


def build(backbone, task, config):
    return build_method(config.method, backbone, config, task.classnames, task.template)


def test_train_saves_weights_config_and_lr_sequence(tiny_backbone, task, tmp_path: Path) -> None:
    config = coop_config()
    method = build(tiny_backbone, task, config)
    updates = []
    result = train_method(method, tiny_backbone, task, config, tmp_path / "run", seed=1, progress=updates.append)
    assert result.weights == tmp_path / "run" / "prompt_learner" / "model.pth.tar-2"
    assert result.lrs == [1e-5, 0.05]
    # 2 classes x 3 shots = 6 images, batch 2, drop_last: 3 steps per epoch
    assert [(u.epoch, u.step, u.steps) for u in updates][:3] == [(1, 1, 3), (1, 2, 3), (1, 3, 3)]
    assert len(updates) == 6 and updates[-1].epoch_done
    assert (tmp_path / "run" / "prompt_learner" / "checkpoint").read_text().strip() == "model.pth.tar-2"
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["config"]["n_ctx"] == 4 and stored["seed"] == 1
    content = torch.load(result.weights, weights_only=True)
    assert set(content["state_dict"]) == {"ctx"}
    loaded, loaded_config = load_weights(result.weights, tiny_backbone)
    assert loaded_config == config
    torch.testing.assert_close(loaded.prompt_learner.ctx, method.prompt_learner.ctx, rtol=0, atol=0)


def test_same_seed_same_result_and_seed_matters(tiny_backbone, task, tmp_path: Path) -> None:
    config = coop_config(max_epoch=1)
    contexts = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        method = build(tiny_backbone, task, config)
        train_method(method, tiny_backbone, task, config, tmp_path / name, seed=seed)
        contexts.append(method.prompt_learner.ctx.detach().clone())
    assert torch.equal(contexts[0], contexts[1])
    assert not torch.equal(contexts[0], contexts[2])


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("method_name", ["coop", "cocoop"])
def test_interrupted_training_resumes_to_the_same_result(tiny_backbone, task, tmp_path: Path, method_name) -> None:
    config = coop_config(method=method_name, max_epoch=3, batch_size=2 if method_name == "coop" else 3)
    reference = build(tiny_backbone, task, config)
    train_method(reference, tiny_backbone, task, config, tmp_path / "full", seed=3)

    def stop_in_third_epoch(update) -> None:
        if update.epoch == 3:
            raise Interrupt

    interrupted = build(tiny_backbone, task, config)
    with pytest.raises(Interrupt):
        train_method(interrupted, tiny_backbone, task, config, tmp_path / "cut", seed=3, progress=stop_in_third_epoch)
    assert not (tmp_path / "cut" / "prompt_learner" / "model.pth.tar-3").exists()
    resumed = build(tiny_backbone, task, config)
    result = train_method(resumed, tiny_backbone, task, config, tmp_path / "cut", seed=3)
    assert result.resumed_from_epoch == 2
    for key, value in reference.learned_state().items():
        assert torch.equal(resumed.learned_state()[key], value), key
    again = train_method(build(tiny_backbone, task, config), tiny_backbone, task, config, tmp_path / "cut", seed=3)
    assert again.already_done


def test_resume_refuses_a_folder_of_another_training(tiny_backbone, task, tmp_path: Path) -> None:
    config = coop_config(max_epoch=1)
    train_method(build(tiny_backbone, task, config), tiny_backbone, task, config, tmp_path / "run", seed=1)
    other = coop_config(max_epoch=1, lr=0.01)
    with pytest.raises(Exception, match="different config_digest"):
        train_method(build(tiny_backbone, task, other), tiny_backbone, task, other, tmp_path / "run", seed=1)


def test_nan_loss_stops_with_epoch_and_step_and_writes_nothing(tiny_backbone, task, tmp_path: Path) -> None:
    config = coop_config(max_epoch=2)
    method = build(tiny_backbone, task, config)
    calls = {"n": 0}
    original = method.forward

    def forward_nan_at_fifth_step(features):
        calls["n"] += 1
        logits = original(features)
        return logits * float("nan") if calls["n"] == 5 else logits

    method.forward = forward_nan_at_fifth_step
    with pytest.raises(TrainingDiverged, match=r"epoch 2/2, step 2/3"):
        train_method(method, tiny_backbone, task, config, tmp_path / "run", seed=1)
    assert not (tmp_path / "run" / "prompt_learner" / "model.pth.tar-2").exists()
    assert not (tmp_path / "run" / "config.json").exists()


def test_mixed_precision_on_cpu_keeps_fp32_prompts(tiny_backbone, task, tmp_path: Path) -> None:
    amp = Backbone(
        tiny_backbone.model, tiny_backbone.tokenizer, name="tiny-amp", weights_sha256="0" * 64,
        sot_token_id=tiny_backbone.sot_token_id, eot_token_id=tiny_backbone.eot_token_id,
        preprocessing=tiny_backbone.preprocessing, precision="amp",
    )
    config = coop_config(max_epoch=1)
    method = build(amp, task, config)
    reference = build(tiny_backbone, task, config)
    reference.load_learned_state(method.learned_state())
    images = torch.nn.functional.normalize(torch.randn(4, amp.embed_dim), dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(method(images), reference(images), rtol=0.05, atol=0.3)
    result = train_method(method, amp, task, config, tmp_path / "run", seed=1)
    assert method.prompt_learner.ctx.dtype == torch.float32
    assert all(torch.isfinite(torch.tensor(result.losses)))
    with pytest.raises(Exception, match="precision=fp32 but the backbone was loaded with precision amp"):
        train_method(method, amp, task, coop_config(max_epoch=1, precision="fp32"), tmp_path / "other", seed=1)


def test_train_method_equals_a_straightforward_official_loop(tiny_backbone, task, tmp_path: Path) -> None:
    """Dassl's loop written out: seed, ctx ~ N(0, 0.02), RandomSampler, SGD, warm-up + cosine stepped per epoch."""
    from test_lr_schedule import ConstantWarmup
    from torch.utils.data import DataLoader, RandomSampler

    from harness.data import ImageDataset, build_transform

    config = coop_config(max_epoch=3, batch_size=4, lr=0.05)  # 6 images: one batch of 4 per epoch (drop_last)
    trained = build(tiny_backbone, task, config)
    train_method(trained, tiny_backbone, task, config, tmp_path / "run", seed=7)

    reference = build(tiny_backbone, task, config)
    torch.manual_seed(7)
    ctx = torch.empty(4, tiny_backbone.text_width)
    torch.nn.init.normal_(ctx, std=0.02)
    reference.load_learned_state({"ctx": ctx})
    dataset = ImageDataset(task.train, task.image_dir, build_transform(tiny_backbone.preprocessing, train=True))
    sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(7))
    loader = DataLoader(dataset, batch_size=4, sampler=sampler, drop_last=True)
    optimizer = torch.optim.SGD([reference.prompt_learner.ctx], lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = ConstantWarmup(optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3), 1, 1e-5)
    reference.train()
    for _ in range(3):
        for batch, (images, labels, _) in enumerate(loader):
            with torch.no_grad():
                features = tiny_backbone.encode_images(images)
            loss = torch.nn.functional.cross_entropy(reference(features), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if batch + 1 == len(loader):
                scheduler.step()
    torch.testing.assert_close(trained.prompt_learner.ctx, reference.prompt_learner.ctx, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(reference.prompt_learner.ctx, ctx, atol=1e-4)  # training moved the context
