"""Every registered method, smoke-tested the same way on a small embedded dataset (timm's pattern).

Train one epoch (or fit) on world_shapes' base classes, evaluate, save, reload from the saved file, evaluate
again: the same logits. Then point the model at the new classes and evaluate (base-to-new needs it). A method
is covered as soon as it is registered.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from harness.registries import METHODS, load_builtins

load_builtins()
BUILTIN_METHODS = METHODS.names()


def smoke_config(name: str):
    from harness.engine.pipeline import resolve_method_config
    from harness.protocols.build import choose_method

    preset = choose_method(name, "base2new", embedded=True).preset
    return resolve_method_config(preset, overrides={"max_epoch": 1}, shots=2, dataset="world_shapes")


@pytest.mark.parametrize("name", BUILTIN_METHODS)
def test_train_evaluate_save_reload(name: str, embedded_world, tmp_path: Path) -> None:
    from harness.engine.evaluate import evaluate
    from harness.engine.pipeline import build_for_task, cached_backbone, load_task
    from harness.engine.train import train_method
    from harness.methods.checkpoints import load_weights

    config = smoke_config(name)
    backbone = cached_backbone("embedded", None, "cpu", "auto")
    base = load_task("world_shapes", None, shots=2, seed=1, subsample="base")
    new = load_task("world_shapes", None, shots=2, seed=1, subsample="new")
    method, config = build_for_task(config, backbone, base)
    if not method.uses_training_data():
        result = evaluate(method, backbone, base)
        assert result.logits.shape == (len(base.test), len(base.classnames))
        return
    trained = train_method(method, backbone, base, config, tmp_path / "run", seed=1)
    first = evaluate(method, backbone, base, cache=False)
    reloaded, reloaded_config = load_weights(trained.weights, backbone)
    assert reloaded_config.digest() == config.digest()
    reloaded.set_classes(base.classnames, base.template, base.dataset)
    second = evaluate(reloaded, backbone, base, cache=False)
    torch.testing.assert_close(first.logits, second.logits, rtol=1e-5, atol=1e-5)
    reloaded.set_classes(new.classnames, new.template, new.dataset)
    on_new = evaluate(reloaded, backbone, new, cache=False)
    assert on_new.logits.shape == (len(new.test), len(new.classnames))
    assert bool(torch.isfinite(on_new.logits).all())
