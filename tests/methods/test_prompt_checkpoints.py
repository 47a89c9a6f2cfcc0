"""Official ``prompt_learner/model.pth.tar-N`` files: import, evaluation through ``harness eval --weights``,
and refusal of files whose unpickling would run code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from clip_files import make_openai_clip, save_openai_state_dict
from data_fixtures import build_dtd_fixture

from harness.cli import main
from harness.data import prepare_task_data
from harness.engine import evaluate
from harness.errors import CheckpointError
from harness.methods import build_method, config_for
from harness.methods.checkpoints import load_weights
from harness.models import load_backbone


class DasslConstantWarmup(torch.optim.lr_scheduler.LRScheduler):
    """Dassl's ConstantWarmupScheduler, only to produce its ``state_dict()`` (which pickles the successor)."""

    def __init__(self, optimizer, successor, warmup_epoch: int, cons_lr: float) -> None:
        self.successor, self.warmup_epoch, self.cons_lr = successor, warmup_epoch, cons_lr
        super().__init__(optimizer)

    def get_lr(self):
        return [self.cons_lr for _ in self.base_lrs]


def write_official_checkpoint(run_dir: Path, state: dict[str, torch.Tensor], epoch: int = 10) -> Path:
    """The file Dassl's ``save_checkpoint`` writes: fp16 tensors, optimizer state, pickled scheduler objects."""
    state = {key: value.half() for key, value in state.items()}
    params = [torch.nn.Parameter(value.clone()) for key, value in state.items() if not key.startswith("token_")]
    optimizer = torch.optim.SGD(params, lr=0.002, momentum=0.9, weight_decay=5e-4)
    for param in params:
        param.grad = torch.ones_like(param)
    optimizer.step()  # momentum buffers exist, so the pickled SGD holds a non-empty defaultdict
    successor = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epoch)
    scheduler = DasslConstantWarmup(optimizer, successor, 1, 1e-5)
    scheduler_state = {key: value for key, value in scheduler.__dict__.items() if key != "optimizer"}
    assert isinstance(scheduler_state["successor"], torch.optim.lr_scheduler.CosineAnnealingLR)
    payload = {"state_dict": state, "epoch": epoch, "optimizer": optimizer.state_dict(),
               "scheduler": scheduler_state, "val_result": None}
    folder = run_dir / "prompt_learner"
    folder.mkdir(parents=True)
    torch.save(payload, folder / f"model.pth.tar-{epoch}")
    (folder / "checkpoint").write_text(f"model.pth.tar-{epoch}\n")
    return folder / f"model.pth.tar-{epoch}"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    clip_path = save_openai_state_dict(make_openai_clip(), root / "clip.pt")
    data_root = build_dtd_fixture(root / "data", n_classes=4, per_split=(2, 1, 3), image_size=36)
    backbone = load_backbone(str(clip_path), device="cpu", precision="fp32")
    task = prepare_task_data("dtd", data_root, subsample="all")
    return {"root": root, "clip": clip_path, "data": data_root, "backbone": backbone, "task": task}


def official_state(backbone, kind: str, n_ctx: int = 4, n_cls: int = 7) -> dict[str, torch.Tensor]:
    width, generator = backbone.text_width, torch.Generator().manual_seed(5)
    shape = (n_cls, n_ctx, width) if kind == "csc" else (n_ctx, width)
    state = {"ctx": torch.randn(shape, generator=generator) * 0.5,
             "token_prefix": torch.zeros(n_cls, 1, width), "token_suffix": torch.zeros(n_cls, 77 - 1 - n_ctx, width)}
    if kind == "cocoop":
        vis = backbone.embed_dim
        state.update({"meta_net.linear1.weight": torch.randn(vis // 16, vis, generator=generator),
                      "meta_net.linear1.bias": torch.randn(vis // 16, generator=generator),
                      "meta_net.linear2.weight": torch.randn(width, vis // 16, generator=generator),
                      "meta_net.linear2.bias": torch.randn(width, generator=generator)})
    return state


@pytest.mark.parametrize(("kind", "position"), [("generic", "end"), ("generic", "middle"), ("csc", "front"),
                                                ("cocoop", "end")])
def test_official_checkpoint_is_evaluated_by_harness_eval(world, tmp_path: Path, capsys, kind, position) -> None:
    backbone, task = world["backbone"], world["task"]
    n_cls = len(task.classnames) if kind == "csc" else 7  # a generic context moves to another class set
    state = official_state(backbone, kind, n_ctx=4 if kind != "csc" else 3, n_cls=n_cls)
    path = write_official_checkpoint(tmp_path / "run", state)
    overrides = {} if position == "end" else {"class_token_position": position}

    method, config = load_weights(path, backbone, overrides)
    assert (config.method, config.n_ctx, config.csc) == ("cocoop" if kind == "cocoop" else "coop",
                                                          state["ctx"].shape[-2], kind == "csc")
    # The same prompts built directly, with the fp16-rounded tensors the file holds.
    expected_config = config_for(config.method, n_ctx=config.n_ctx, csc=config.csc,
                                 class_token_position=position)
    reference = build_method(config.method, backbone, expected_config, task.classnames, task.template)
    learned = {key: value.half().float() for key, value in state.items() if not key.startswith("token_")}
    reference.load_learned_state(learned)
    expected = evaluate(reference, backbone, task)

    predictions = tmp_path / "predictions.jsonl"
    args = ["eval", "--weights", str(tmp_path / "run"), "--dataset", "dtd", "--data-root", str(world["data"]),
            "--model", str(world["clip"]), "--device", "cpu", "--precision", "fp32", "--out", str(tmp_path / "out"),
            "--save-predictions", str(predictions)]
    args += [f"--set=class_token_position={position}"] if overrides else []
    assert main(args) == 0, capsys.readouterr().err
    assert f"* accuracy: {expected.accuracy:.2f}%" in capsys.readouterr().out
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    logits = torch.tensor([row["logits"] for row in rows])
    torch.testing.assert_close(logits, expected.logits, rtol=1e-5, atol=1e-5)


def test_csc_checkpoint_for_another_class_count_is_refused(world, tmp_path: Path) -> None:
    path = write_official_checkpoint(tmp_path / "run", official_state(world["backbone"], "csc", n_cls=9))
    method, _ = load_weights(path, world["backbone"])
    with pytest.raises(Exception, match="learned for 9 classes"):
        method.set_classes(world["task"].classnames, "{}")


def test_checkpoint_of_another_backbone_width_is_refused(world, tmp_path: Path) -> None:
    state = official_state(world["backbone"], "generic")
    state["ctx"] = torch.zeros(4, 512)
    path = write_official_checkpoint(tmp_path / "run", state)
    with pytest.raises(CheckpointError, match="context width 512 does not match the text width 64"):
        load_weights(path, world["backbone"])


class RunsCode:
    """Unpickling this object calls ``os.system`` (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_would_run_code_is_refused(world, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "code-ran"
    state = official_state(world["backbone"], "generic")
    payload = {"state_dict": state, "epoch": 10, "optimizer": None, "scheduler": {"successor": RunsCode(marker)},
               "val_result": None}
    path = tmp_path / "model.pth.tar-10"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"refused.*nothing in it was run.*system"):
        load_weights(path, world["backbone"])
    args = ["eval", "--weights", str(path), "--dataset", "dtd", "--data-root", str(world["data"]),
            "--model", str(world["clip"]), "--device", "cpu", "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "refused" in capsys.readouterr().err
    assert not marker.exists()


def test_not_a_prompt_checkpoint(world, tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save({"model": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a checkpoint of ours nor an official one"):
        load_weights(path, world["backbone"])
    with pytest.raises(CheckpointError, match="no such weights file"):
        load_weights(tmp_path / "missing.pth.tar-1", world["backbone"])
