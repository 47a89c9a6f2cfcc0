"""The fast paths give the official numbers: truncated prompts, cached eval text features, batched CoCoOp."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from harness.methods import build_method, config_for
from harness.methods.cocoop import images_per_chunk, prompt_activation_bytes

CLASSNAMES = ["dog", "sea lion", "a rather long class name with many words", "cat"]


def images(backbone, n: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, backbone.embed_dim, generator=torch.Generator().manual_seed(2)), dim=-1)


@pytest.mark.parametrize("position", ["end", "middle", "front"])
def test_truncated_and_full_length_text_features_are_equal(tiny_backbone, position: str) -> None:
    config = config_for("coop", n_ctx=6, class_token_position=position)
    short = build_method("coop", tiny_backbone, config, CLASSNAMES, "{}")
    full_config = dataclasses.replace(config, truncate_prompts=False)
    full = build_method("coop", tiny_backbone, full_config, CLASSNAMES, "{}")
    full.load_learned_state(short.learned_state())
    assert short.prompt_learner.seq_len < full.prompt_learner.seq_len == tiny_backbone.context_length
    with torch.no_grad():
        torch.testing.assert_close(short.text_features(), full.text_features(), rtol=1e-5, atol=1e-5)


def test_eval_text_features_are_cached_and_training_recomputes(tiny_backbone) -> None:
    method = build_method("coop", tiny_backbone, config_for("coop", n_ctx=4), CLASSNAMES, "{}")
    x = images(tiny_backbone, 3)
    method.prepare_eval()
    assert method._text_cache is not None
    before = method(x)
    with torch.no_grad():
        method.prompt_learner.ctx.add_(1.0)
    torch.testing.assert_close(method(x), before)  # eval mode reuses the features of prepare_eval
    method.train()
    assert method._text_cache is None
    after = method(x)
    assert after.requires_grad and not torch.allclose(after, before)


@pytest.mark.parametrize("max_prompts", [0, 4, 8, 1000])
def test_batched_cocoop_equals_the_per_image_loop(tiny_backbone, max_prompts: int) -> None:
    config = config_for("cocoop", n_ctx=4, ctx_init="a photo of a", max_prompts_per_chunk=max_prompts)
    torch.manual_seed(0)
    method = build_method("cocoop", tiny_backbone, config, CLASSNAMES, "{}")
    x = images(tiny_backbone, 5)
    with torch.no_grad():
        torch.testing.assert_close(method(x), method.forward_per_image(x), rtol=1e-5, atol=1e-5)


def test_batched_cocoop_gradients_equal_the_per_image_loop(tiny_backbone) -> None:
    config = config_for("cocoop", n_ctx=4, max_prompts_per_chunk=8)
    torch.manual_seed(0)
    method = build_method("cocoop", tiny_backbone, config, CLASSNAMES, "{}").train()
    x, labels = images(tiny_backbone, 3), torch.tensor([0, 2, 3])
    grads = []
    for forward in (method.forward, method.forward_per_image):
        method.zero_grad()
        F.cross_entropy(forward(x), labels).backward()
        grads.append([p.grad.clone() for p in method.trainable_parameters()])
    for batched, looped in zip(*grads):
        torch.testing.assert_close(batched, looped, rtol=1e-4, atol=1e-6)


def test_images_per_chunk() -> None:
    assert images_per_chunk(10, 1 << 20, 25, 1024) == 2  # an explicit prompt count wins over the budget
    assert images_per_chunk(1000, 1 << 20, 5, 1024) == 1  # never less than one image, as the official loop
    assert images_per_chunk(100, 1 << 20, 0, 1024) == 10  # 1 GiB / (100 prompts x 1 MiB)
    assert images_per_chunk(100, 1 << 20, 0, 50) == 1


def test_prompt_activation_bytes_follow_the_text_tower(tiny_backbone) -> None:
    eval_bytes = prompt_activation_bytes(tiny_backbone, 10, grad=False)
    width, heads = tiny_backbone.text_width, tiny_backbone.text_heads
    assert eval_bytes == 2 * 10 * (12 * width + 2 * heads * 10) * 4
    assert prompt_activation_bytes(tiny_backbone, 10, grad=True) == eval_bytes // 2 * tiny_backbone.text_layers
    assert prompt_activation_bytes(tiny_backbone, 20, grad=False) > 2 * eval_bytes  # attention grows with length


def test_cocoop_chunk_follows_the_memory_budget(tiny_backbone, monkeypatch) -> None:
    import harness.methods.cocoop as cocoop

    calls = []
    config = config_for("cocoop", n_ctx=4, ctx_init="a photo of a", chunk_memory_mb=1)
    torch.manual_seed(0)
    method = build_method("cocoop", tiny_backbone, config, CLASSNAMES, "{}")
    encode = method.prompt_learner.encode_contexts
    monkeypatch.setattr(method.prompt_learner, "encode_contexts", lambda ctx: calls.append(ctx.shape[0]) or encode(ctx))
    x = images(tiny_backbone, 12)
    per_prompt = cocoop.prompt_activation_bytes(tiny_backbone, method.prompt_learner.seq_len, grad=False)
    expected = max(1, (1 << 20) // (len(CLASSNAMES) * per_prompt))
    with torch.no_grad():
        method(x)
    assert 1 <= expected < 12
    assert max(calls) == expected  # images per text-encoder call
    assert sum(calls) == 12
