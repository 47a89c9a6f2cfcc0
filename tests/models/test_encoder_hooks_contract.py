"""Encoder hooks: no-hook paths unchanged, non-causal text towers, gradients, errors, an OpenAI-format file."""

from __future__ import annotations

import open_clip
import pytest
import torch
from hook_reference import image_features, text_features
from hook_towers import SHAPES, make_backbone, make_images, make_tokens, random_lora, random_prompts
from open_clip.transformer import CustomResidualAttentionBlock

from harness.errors import HarnessError
from harness.models import load_backbone
from harness.models.backbone import Backbone, Preprocessing
from harness.models.hooks import LoRA, TowerHooks
from harness.paths import REPO_DIR

GOLDEN_CLIP = REPO_DIR / "tests" / "golden" / "golden_clip.pt"


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_no_hooks_and_empty_hooks_give_todays_features_exactly(shape: str) -> None:
    backbone = make_backbone(shape, dtype=torch.float32)
    images, tokens = make_images(backbone), make_tokens(5)
    eot = backbone.eot_positions(tokens)
    embeddings = backbone.embed_tokens(tokens)
    with torch.no_grad():
        today_images = torch.nn.functional.normalize(backbone.model.encode_image(images).float(), dim=-1)
        today_text = backbone.encode_text_embeddings(embeddings, eot)
        today_tokens = backbone.encode_text(tokens)  # the truncated speed path
        for hooks in (None, TowerHooks(), TowerHooks(deep_prompts={}, lora={})):
            assert torch.equal(backbone.encode_images(images, hooks=hooks), today_images)
            assert torch.equal(backbone.encode_text_embeddings(embeddings, eot, hooks=hooks), today_text)
            assert torch.equal(backbone.encode_text(tokens, hooks=hooks), today_tokens)


def test_non_causal_text_tower_takes_text_hooks_at_full_length() -> None:
    backbone = make_backbone("b16")
    backbone.model.attn_mask = None  # a bidirectional text tower
    assert not backbone.text_is_causal
    tokens = make_tokens(4)
    eot = backbone.eot_positions(tokens)
    embeddings = backbone.embed_tokens(tokens)
    hooks = TowerHooks(deep_prompts=random_prompts([1, 2], 2, backbone.text_width),
                       lora=random_lora([1], "qv", backbone.text_width))
    got = backbone.encode_text_embeddings(embeddings, eot, hooks=hooks)
    torch.testing.assert_close(got, text_features(backbone.model, embeddings, eot, hooks), rtol=0, atol=1e-10)
    torch.testing.assert_close(backbone.encode_text(tokens, hooks=hooks).double(), got, rtol=0, atol=1e-6)
    with pytest.raises(HarnessError, match="causal"):
        backbone.encode_text_embeddings(embeddings[:, :8], eot, hooks=hooks)


def test_gradients_reach_the_hook_tensors_and_not_the_frozen_weights() -> None:
    backbone = make_backbone("b32")
    text_prompts = random_prompts([1], 2, backbone.text_width)
    image_prompts = random_prompts([0, 1], 2, 64, batch=3)
    text_lora = random_lora([0], ("k", "out"), backbone.text_width)
    image_lora = random_lora([1], "q", 64)
    text_hooks, image_hooks = TowerHooks(text_prompts, text_lora), TowerHooks(image_prompts, image_lora)
    tokens = make_tokens(4)
    text = backbone.encode_text(tokens, hooks=text_hooks)
    image = backbone.encode_images(make_images(backbone), hooks=image_hooks)
    (image @ torch.nn.functional.normalize(text, dim=-1).T).square().sum().backward()
    tensors = [*text_prompts.values(), *image_prompts.values()]
    tensors += [t for update in (*text_lora.values(), *image_lora.values()) for t in (update.down, update.up)]
    for tensor in tensors:
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in backbone.model.parameters())


def test_hooks_a_tower_cannot_take_are_clear_errors() -> None:
    backbone = make_backbone("b16")  # text: 3 layers, width 64; image: 3 layers, width 96
    text, image = backbone.text_width, 96
    tokens, images = make_tokens(2), make_images(backbone, 2)
    cases = [
        ("text", TowerHooks(random_prompts([3], 2, text)), r"deep text prompts at layer 3: prompt depth 4 > 3 layers "
         r"of backbone 'random-b16'"),
        ("text", TowerHooks(random_prompts([0, 1], 2, text)), r"layer 0's text prompts belong in the prompt embed"),
        ("text", TowerHooks(random_prompts([1], 2, image)), r"shape \(2, 96\), expected \(2, 64\)"),
        ("text", TowerHooks({1: torch.zeros(2, text), 2: torch.zeros(3, text)}), r"every layer has the same number"),
        ("text", TowerHooks({1: torch.zeros(text)}), r"shape \(64,\), expected \(0, 64\)"),
        ("text", TowerHooks(random_prompts([1], 2, text, batch=5)), r"prompts for 5 sequences, but the batch has 2"),
        ("image", TowerHooks(random_prompts([1, 2], 2, image)), r"layer 0 \(the shallow prompts .*\) is needed"),
        ("image", TowerHooks(random_prompts([0, 3], 2, image)), r"prompt depth 4 > 3 layers .* image tower"),
        ("image", TowerHooks(random_prompts([0], 2, text)), r"image tower of backbone 'random-b16' is 96 wide"),
        ("image", TowerHooks(lora=random_lora([0], "q", text)), r"LoRA on 'q' of layer 0 .*must be \(r, 96\)"),
        ("image", TowerHooks(lora=random_lora([0], ["qkv"], image)), r"projection must be one of"),
        ("text", TowerHooks(lora=random_lora([3], "v", text)), r"LoRA on 'v' of layer 3: the text tower .* 3 layers"),
        ("text", TowerHooks(lora={(0, "q"): LoRA(torch.zeros(2, text), torch.zeros(text, 2), dropout=1.0)}),
         r"dropout 1.0"),
    ]
    for tower, hooks, message in cases:
        with pytest.raises(HarnessError, match=message):
            if tower == "text":
                backbone.encode_text(tokens, hooks=hooks)
            else:
                backbone.encode_images(images, hooks=hooks)


def test_lora_on_a_non_standard_block_and_prompts_on_a_resnet_are_refused() -> None:
    backbone = make_backbone("b32")
    backbone.model.transformer.resblocks[1] = CustomResidualAttentionBlock(32, 2).double()
    hooks = TowerHooks(lora=random_lora([1], "q", 32))
    with pytest.raises(HarnessError, match=r"LoRA on 'q' of layer 1 \(text tower of backbone 'random-b32'\): the "
                       r"block is a CustomResidualAttentionBlock, not open_clip's standard"):
        backbone.encode_text(make_tokens(2), hooks=hooks)
    # Prompts in the text tower still work with that block: it runs as open_clip's own module.
    backbone.encode_text(make_tokens(2), hooks=TowerHooks(random_prompts([1], 2, 32)))
    model = open_clip.model.CLIP(embed_dim=32, vision_cfg={"image_size": 32, "layers": [1, 1, 1, 1], "width": 16},
                                 text_cfg={"width": 32, "heads": 2, "layers": 2, "context_length": 12})
    resnet = Backbone(model, lambda texts: torch.zeros(0), name="tiny-rn", weights_sha256="", sot_token_id=0,
                      eot_token_id=1, preprocessing=Preprocessing(32, (0.5,) * 3, (0.25,) * 3))
    for hooks, kind in ((TowerHooks(random_prompts([0], 2, 16)), "deep prompts"),
                        (TowerHooks(lora=random_lora([0], "q", 16)), "LoRA")):
        with pytest.raises(HarnessError, match=rf"{kind} in the image tower of backbone 'tiny-rn': the image "
                           r"tower is a ModifiedResNet, not a ViT"):
            resnet.encode_images(torch.zeros(1, 3, 32, 32), hooks=hooks)


def test_an_openai_format_file_takes_the_hooks() -> None:
    backbone = load_backbone(str(GOLDEN_CLIP), device="cpu", precision="fp32")  # 4 blocks per tower
    assert backbone.text_layers == 4 and len(backbone.model.visual.transformer.resblocks) == 4
    torch.manual_seed(0)
    text_hooks = TowerHooks(random_prompts(range(1, 4), 2, 64, dtype=torch.float32),
                            random_lora(range(4), "qkv", 64, dtype=torch.float32))
    image_hooks = TowerHooks(random_prompts(range(4), 2, 64, dtype=torch.float32),
                             random_lora(range(4), "qkv", 64, dtype=torch.float32))
    tokens = backbone.tokenize(["a photo of a dog.", "a photo of a large red fish."])
    eot = backbone.eot_positions(tokens)
    embeddings = backbone.embed_tokens(tokens)
    text = backbone.encode_text_embeddings(embeddings, eot, hooks=text_hooks)
    torch.testing.assert_close(text, text_features(backbone.model, embeddings, eot, text_hooks), rtol=1e-4, atol=1e-4)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    image = backbone.encode_images(images, hooks=image_hooks)
    torch.testing.assert_close(image, image_features(backbone.model, images, image_hooks), rtol=1e-4, atol=1e-5)
    image.sum().backward()
    assert image_hooks.deep_prompts[3].grad is not None and image_hooks.lora[(0, "q")].up.grad.abs().sum() > 0
    with pytest.raises(HarnessError, match=r"prompt depth 5 > 4 layers of backbone 'golden_clip.pt'"):
        backbone.encode_images(images, hooks=TowerHooks(random_prompts(range(5), 2, 64)))
