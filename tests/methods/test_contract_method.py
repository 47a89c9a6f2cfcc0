"""The method contract, proven by a method written only against it (``tests/methods/deep_method.py``).

The method is loaded as a third party would (``--include``): deep prompts in both towers, a loss term beyond
cross-entropy, an epoch-end hook, its own config keys. It runs on all four protocols of a small embedded
subset through the CLI, and its pieces are checked directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.plugins import load_includes

METHOD_FILE = Path(__file__).with_name("deep_method.py")
NAME = "deep_vl_test"


@pytest.fixture(scope="module")
def registered():
    load_includes([METHOD_FILE])
    from harness.registries import METHODS

    return METHODS.get(NAME)


def test_ls_prints_the_method_keys_with_meanings(registered, capsys) -> None:
    assert main(["ls", "methods", NAME, "--include", str(METHOD_FILE)]) == 0
    out = capsys.readouterr().out
    assert "depth (int, default 2): layers that get prompts in each tower" in out
    assert "num_workers (int, default 0) [speed]" in out
    assert "image input: pixels" in out


def test_an_unknown_key_names_the_method_keys(registered, tmp_path: Path, capsys) -> None:
    code = main(["train", "--include", str(METHOD_FILE), "--method", NAME, "--dataset", "world_textures",
                 "--set", "dept=3", "--out", str(tmp_path / "t")])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown key 'dept' for method 'deep_vl_test'" in err and "depth" in err


def test_loss_term_epoch_hook_and_reload(registered, embedded_world, tmp_path: Path) -> None:
    from harness.engine.evaluate import evaluate
    from harness.engine.pipeline import build_for_task, cached_backbone, load_task, resolve_method_config
    from harness.engine.train import train_method

    config = resolve_method_config(NAME, overrides={"max_epoch": 2, "batch_size": 64, "lr": 0.01})
    task = load_task("world_shapes", None, shots=2, seed=1, subsample="base")
    backbone = cached_backbone("embedded", None, "cpu", "auto")
    method, _ = build_for_task(config, backbone, task)
    result = train_method(method, backbone, task, config, tmp_path / "run", seed=1)
    state = torch.load(tmp_path / "run" / "prompt_learner" / "last.pt", weights_only=True)
    assert len(state["history"]["term_pull"]) == 2 and state["history"]["term_pull"][0] > 0
    assert method.epochs_averaged == 2  # on_epoch_end ran once per epoch
    assert not torch.equal(method.average, method.text_prompts)  # the average is not the last prompts
    first = evaluate(method, backbone, task, cache=False)

    from harness.methods.checkpoints import load_weights

    reloaded, _ = load_weights(result.weights, backbone)
    reloaded.set_classes(task.classnames, task.template, task.dataset)
    second = evaluate(reloaded, backbone, task, cache=False)
    assert torch.allclose(first.logits, second.logits, atol=1e-5)
    assert first.accuracy == second.accuracy


@pytest.mark.slow
@pytest.mark.parametrize(("protocol", "extra"), [
    ("base2new", ["--datasets", "world_shapes"]),
    ("cross_dataset", ["--datasets", "world_shapes"]),
    ("domain_generalization", ["--datasets", "world_objects_sketch"]),
    ("few_shot", ["--datasets", "world_shapes", "--shots", "2"]),
])
def test_runs_every_protocol_through_the_cli(registered, embedded_world, tmp_path: Path, capsys, protocol: str,
                                             extra: list[str]) -> None:
    out = tmp_path / "runs"
    args = ["run", "--include", str(METHOD_FILE), "--method", NAME, "--protocol", protocol, "--seeds", "1",
            "--out", str(out), "--set", "max_epoch=1", "--set", "batch_size=64", *extra]
    assert main(args) == 0, capsys.readouterr().err
    table = capsys.readouterr().out
    assert NAME in table
    records = [json.loads(line) for path in out.glob(f"{protocol}/*/records.jsonl") for line in path.open()]
    assert records and {r["method"] for r in records} == {NAME}
    assert all(0.0 <= r["value"] <= 100.0 for r in records)
    spec = json.loads(next(out.glob(f"{protocol}/*/spec.json")).read_text())
    assert spec["includes"] == [str(METHOD_FILE.resolve())]
