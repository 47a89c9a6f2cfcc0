"""Encoder hooks on the shared-prefix text path (deep prompts inside the prefix) and in low precision."""

from __future__ import annotations

import copy

import pytest
import torch
from hook_reference import image_features, text_features
from hook_towers import make_backbone, make_images, make_tokens, random_lora, random_prompts

from harness.errors import HarnessError
from harness.models.backbone import Backbone
from harness.models.hooks import LoRA, TowerHooks


def _parts(backbone: Backbone, n_prefixes: int, prefix_length: int):
    """Prefixes ``(B, P, D)`` (start token + random context), class suffixes ``(N, S, D)`` and their eot."""
    tokens = make_tokens(5)
    eot = backbone.eot_positions(tokens)
    embedded = backbone.embed_tokens(tokens[:, : int(eot.max()) + 1])
    context = torch.randn(n_prefixes, prefix_length - 1, embedded.shape[-1], dtype=embedded.dtype,
                          generator=torch.Generator().manual_seed(4))
    prefix = torch.cat([embedded[:1, :1].expand(n_prefixes, -1, -1), context], dim=1)
    return prefix, embedded[:, prefix_length:], eot


@pytest.mark.parametrize("per_prefix", [False, True])
def test_deep_text_prompts_inside_a_shared_prefix_give_the_whole_prompt_features(per_prefix: bool) -> None:
    backbone = make_backbone("l14")
    assert backbone.shares_prompt_prefix
    prefix, suffix, eot = _parts(backbone, n_prefixes=3, prefix_length=4)
    prompts = random_prompts([1, 3], 3, backbone.text_width, batch=3 if per_prefix else None)
    shared = backbone.encode_text_shared_prefix(prefix, suffix, eot, hooks=TowerHooks(prompts))
    whole_prompts = torch.cat([prefix.unsqueeze(1).expand(-1, 5, -1, -1),
                               suffix.unsqueeze(0).expand(3, -1, -1, -1)], dim=2).flatten(0, 1)
    per_row = {k: v.repeat_interleave(5, dim=0) if per_prefix else v for k, v in prompts.items()}
    whole = backbone.encode_text_embeddings(whole_prompts, eot.repeat(3), hooks=TowerHooks(per_row))
    torch.testing.assert_close(shared, whole.view(3, 5, -1), rtol=0, atol=1e-10)
    want = text_features(backbone.model, whole_prompts, eot.repeat(3), TowerHooks(per_row))
    torch.testing.assert_close(shared, want.view(3, 5, -1), rtol=0, atol=1e-10)
    shared.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in prompts.values())


def test_shared_prefix_refuses_prompts_beyond_the_prefix_and_lora() -> None:
    backbone = make_backbone("b32")
    prefix, suffix, eot = _parts(backbone, n_prefixes=1, prefix_length=3)
    with pytest.raises(HarnessError, match=r"3 deep text prompts \(positions 1..3\) do not fit in the shared prefix "
                       r"of 3 tokens"):
        backbone.encode_text_shared_prefix(prefix, suffix, eot, hooks=TowerHooks(random_prompts([1], 3, 32)))
    with pytest.raises(HarnessError, match=r"LoRA hooks need whole prompts"):
        backbone.encode_text_shared_prefix(prefix, suffix, eot, hooks=TowerHooks(lora=random_lora([0], "q", 32)))


def _as_float64(hooks: TowerHooks) -> TowerHooks:
    lora = {key: LoRA(u.down.double(), u.up.double(), u.scaling) for key, u in hooks.lora.items()}
    return TowerHooks({key: p.double() for key, p in hooks.deep_prompts.items()}, lora)


@pytest.mark.parametrize(("dtype", "precision", "tolerance"), [
    (torch.float32, "fp32", 1e-5), (torch.float16, "fp16", 1e-2), (torch.bfloat16, "bf16", 1e-1),
    (torch.float32, "amp", 1e-1),
])
def test_low_precision_towers_take_float32_hooks(dtype: torch.dtype, precision: str, tolerance: float) -> None:
    """Prompts and LoRA factors stay float32 (the method's); they are cast to the tower's dtype where used."""
    reference = make_backbone("b16")
    backbone = Backbone(copy.deepcopy(reference.model).to(dtype), reference.tokenizer, name="low", weights_sha256="",
                        sot_token_id=98, eot_token_id=99, preprocessing=reference.preprocessing, dtype=dtype,
                        precision=precision)
    torch.manual_seed(0)
    text_hooks = TowerHooks(random_prompts([1, 2], 2, 64, dtype=torch.float32),
                            random_lora([0, 1], "qkv", 64, dtype=torch.float32))
    image_hooks = TowerHooks(random_prompts([0, 1], 2, 96, dtype=torch.float32),
                             random_lora([0, 2], ("q", "out"), 96, dtype=torch.float32))
    tokens, images = make_tokens(3), make_images(reference)
    text = backbone.encode_text(tokens, hooks=text_hooks)
    image = backbone.encode_images(images, hooks=image_hooks)
    want_text = text_features(reference.model, reference.embed_tokens(tokens), backbone.eot_positions(tokens),
                              _as_float64(text_hooks))
    scale = float(want_text.detach().abs().max())
    torch.testing.assert_close(text.double(), want_text, rtol=0, atol=tolerance * scale)
    torch.testing.assert_close(image.double(), image_features(reference.model, images, _as_float64(image_hooks)),
                               rtol=0, atol=tolerance)
    (text.sum() + image.sum()).backward()
    assert text_hooks.deep_prompts[1].grad.dtype == torch.float32
    assert image_hooks.lora[(0, "q")].up.grad.abs().sum() > 0
