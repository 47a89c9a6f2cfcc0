"""Deep prompts and LoRA inside both CLIP towers (``harness.models.hooks``) against a step-by-step restatement.

Float64 towers of three shapes (ViT-B/32-, B/16- and L/14-like, scaled down: widths, head counts, depths and
token counts differ) with random weights; ``tests/hook_reference.py`` is the independent forward.
"""

from __future__ import annotations

import open_clip
import pytest
import torch
from hook_reference import image_features, text_features

from harness.models.backbone import Backbone, Preprocessing
from harness.models.hooks import LoRA, TowerHooks

EOT = 99
SHAPES = {
    "b32": ({"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
            {"width": 32, "heads": 2, "layers": 2}),
    "b16": ({"image_size": 32, "layers": 3, "width": 96, "patch_size": 4, "head_width": 32},
            {"width": 64, "heads": 2, "layers": 3}),
    "l14": ({"image_size": 42, "layers": 4, "width": 128, "patch_size": 7, "head_width": 32},
            {"width": 96, "heads": 3, "layers": 4}),
}


def make_backbone(shape: str, seed: int = 0, dtype: torch.dtype = torch.float64) -> Backbone:
    vision, text = SHAPES[shape]
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(embed_dim=32, vision_cfg=vision,
                                 text_cfg={**text, "context_length": 12, "vocab_size": 100}).to(dtype)
    with torch.no_grad():  # non-trivial biases and norms, so that a misplaced term shows
        for name, tensor in model.named_parameters():
            if name.endswith("bias") or ".ln" in name or name.startswith("ln"):
                tensor.add_(0.1 * torch.randn_like(tensor))
    return Backbone(model, lambda texts: torch.zeros(len(texts), 12, dtype=torch.long), name=f"random-{shape}",
                    weights_sha256="0" * 64, sot_token_id=98, eot_token_id=EOT,
                    preprocessing=Preprocessing(vision["image_size"], (0.5,) * 3, (0.25,) * 3), dtype=dtype)


def make_tokens(count: int, length: int = 12, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 98, (count, length), generator=generator)
    tokens[:, 0] = 98
    for row in range(count):
        end = 5 + row % (length - 5)
        tokens[row, end], tokens[row, end + 1 :] = EOT, 0
    return tokens


def make_images(backbone: Backbone, count: int = 3) -> torch.Tensor:
    size = backbone.preprocessing.image_size
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(2), dtype=backbone.dtype)


def random_prompts(layers, count: int, width: int, batch: int | None = None, dtype=torch.float64) -> dict:
    shape = (count, width) if batch is None else (batch, count, width)
    return {layer: torch.randn(shape, dtype=dtype).requires_grad_() for layer in layers}


def random_lora(layers, names, width: int, rank: int = 2, dropout: float = 0.0, dtype=torch.float64) -> dict:
    return {(layer, name): LoRA(torch.randn(rank, width, dtype=dtype).requires_grad_(),
                                (0.3 * torch.randn(width, rank, dtype=dtype)).requires_grad_(),
                                scaling=rank ** -0.5, dropout=dropout)
            for layer in layers for name in names}


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
