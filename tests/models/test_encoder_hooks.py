"""Deep prompts and LoRA inside both CLIP towers (``harness.models.hooks``) against a step-by-step restatement.

Float64 towers of three shapes (ViT-B/32-, B/16- and L/14-like, scaled down: widths, head counts, depths and
token counts differ) with random weights; ``tests/hook_reference.py`` is the independent forward.
"""

from __future__ import annotations

import pytest
import torch
from hook_reference import image_features, text_features
from hook_towers import SHAPES, make_backbone, make_images, make_tokens, random_lora, random_prompts

from harness.models.hooks import LoRA, TowerHooks


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("per_sequence", [False, True])
@pytest.mark.parametrize("truncate", [False, True])
def test_deep_text_prompts_match_the_reference(shape: str, per_sequence: bool, truncate: bool) -> None:
    backbone = make_backbone(shape)
    depth, width = backbone.text_layers, backbone.text_width
    tokens = make_tokens(5)
    eot = backbone.eot_positions(tokens)
    if truncate:  # causal mask: sequences cut after the last end-of-text token
        tokens = tokens[:, : int(eot.max()) + 1]
    hooks = TowerHooks(deep_prompts=random_prompts(range(1, depth), 3, width, 5 if per_sequence else None))
    embeddings = backbone.embed_tokens(tokens)
    got = backbone.encode_text_embeddings(embeddings, eot, hooks=hooks)
    torch.testing.assert_close(got, text_features(backbone.model, embeddings, eot, hooks), rtol=0, atol=1e-10)
    plain = backbone.encode_text_embeddings(embeddings, eot)
    assert (got - plain).abs().max() > 1e-3  # the prompts changed the features


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("per_sequence", [False, True])
def test_deep_image_prompts_match_the_reference(shape: str, per_sequence: bool) -> None:
    backbone = make_backbone(shape)
    visual = backbone.model.visual
    depth, width = len(visual.transformer.resblocks), visual.class_embedding.shape[0]
    images = make_images(backbone)
    # The last block has no new prompts: it carries the previous block's outputs (MaPLe's blocks J..).
    layers = range(depth - 1) if depth > 2 else range(depth)
    hooks = TowerHooks(deep_prompts=random_prompts(layers, 2, width, 3 if per_sequence else None))
    got = backbone.encode_images(images, hooks=hooks)
    torch.testing.assert_close(got, image_features(backbone.model, images, hooks).float(), rtol=0, atol=1e-6)
    assert (got - backbone.encode_images(images)).abs().max() > 1e-3


def test_image_features_in_float64_match_the_reference_to_1e_10() -> None:
    """``encode_images`` returns float32; the tower itself is checked in float64 through the hooked function."""
    from harness.models.hooked_towers import encode_image_hooked

    for shape in SHAPES:
        backbone = make_backbone(shape)
        visual = backbone.model.visual
        width, depth = visual.class_embedding.shape[0], len(visual.transformer.resblocks)
        images = make_images(backbone)
        for hooks in (TowerHooks(deep_prompts=random_prompts([0], 4, width)),
                      TowerHooks(deep_prompts=random_prompts(range(depth), 4, width, 3),
                                 lora=random_lora(range(depth), "qkv", width))):
            got = torch.nn.functional.normalize(encode_image_hooked(visual, images, hooks), dim=-1)
            torch.testing.assert_close(got, image_features(backbone.model, images, hooks), rtol=0, atol=1e-10)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("names", ["qkv", ("q", "k", "v", "out"), ("out",)])
def test_lora_matches_the_reference_in_both_towers(shape: str, names) -> None:
    backbone = make_backbone(shape)
    visual = backbone.model.visual
    text_hooks = TowerHooks(lora=random_lora(range(backbone.text_layers), names, backbone.text_width))
    tokens = make_tokens(4)
    eot = backbone.eot_positions(tokens)
    got = backbone.encode_text(tokens, truncate=False, hooks=text_hooks).double()
    want = text_features(backbone.model, backbone.embed_tokens(tokens), eot, text_hooks)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)  # encode_text returns float32
    depth = len(visual.transformer.resblocks)
    image_hooks = TowerHooks(lora=random_lora(range(0, depth, 2), names, visual.class_embedding.shape[0]))
    images = make_images(backbone)
    torch.testing.assert_close(backbone.encode_images(images, hooks=image_hooks),
                               image_features(backbone.model, images, image_hooks).float(), rtol=0, atol=1e-6)


def test_lora_text_features_in_float64_match_to_1e_10() -> None:
    backbone = make_backbone("b16")
    hooks = TowerHooks(deep_prompts=random_prompts([1, 2], 2, backbone.text_width),
                       lora=random_lora([0, 2], ("q", "v", "out"), backbone.text_width, rank=3))
    tokens = make_tokens(6)
    eot = backbone.eot_positions(tokens)
    embeddings = backbone.embed_tokens(tokens)
    got = backbone.encode_text_embeddings(embeddings, eot, hooks=hooks)
    torch.testing.assert_close(got, text_features(backbone.model, embeddings, eot, hooks), rtol=0, atol=1e-10)


def test_lora_dropout_draws_the_reference_masks() -> None:
    backbone = make_backbone("b32")
    hooks = TowerHooks(lora=random_lora([0, 1], ("q", "k", "v", "out"), backbone.text_width, dropout=0.25))
    tokens = make_tokens(3)
    eot = backbone.eot_positions(tokens)
    embeddings = backbone.embed_tokens(tokens)
    torch.manual_seed(7)
    got = backbone.encode_text_embeddings(embeddings, eot, hooks=hooks)
    torch.manual_seed(7)
    want = text_features(backbone.model, embeddings, eot, hooks)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    no_dropout = TowerHooks(lora={key: LoRA(u.down, u.up, u.scaling) for key, u in hooks.lora.items()})
    assert (got - backbone.encode_text_embeddings(embeddings, eot, hooks=no_dropout)).abs().max() > 1e-6
