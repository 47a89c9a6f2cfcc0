"""Prompt learning on other backbones: any end-of-text id, non-causal text towers, refused models, pure fp16."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from clip_files import make_openai_clip, save_openai_state_dict

from harness.errors import HarnessError
from harness.methods import build_method, config_for
from harness.models import load_backbone
from harness.models.backbone import Backbone

CLASSNAMES = ["dog", "sea lion", "cat"]


def rewrap(backbone: Backbone, model: torch.nn.Module, **changes) -> Backbone:
    values = {"name": "variant", "weights_sha256": "0" * 64, "sot_token_id": backbone.sot_token_id,
              "eot_token_id": backbone.eot_token_id, "preprocessing": backbone.preprocessing}
    tokenizer = changes.pop("tokenizer", backbone.tokenizer)
    values.update(changes)
    return Backbone(model, tokenizer, **values)


def features(backbone: Backbone, n: int = 3) -> torch.Tensor:
    return F.normalize(torch.randn(n, backbone.embed_dim, generator=torch.Generator().manual_seed(3)), dim=-1)


def test_end_of_text_found_by_its_id_not_by_argmax(tiny_backbone) -> None:
    """Swap the end-of-text id with the id of "x" (used by the "X X X X" prefix): argmax would now point there."""
    eot = tiny_backbone.eot_token_id
    x_id = int(tiny_backbone.tokenizer(["X"])[0, 1])

    def swap(ids: torch.Tensor) -> torch.Tensor:
        swapped = ids.clone()
        swapped[ids == eot], swapped[ids == x_id] = x_id, eot
        return swapped

    model = copy.deepcopy(tiny_backbone.model)
    with torch.no_grad():
        weight = model.token_embedding.weight
        weight[[eot, x_id]] = weight[[x_id, eot]].clone()
    variant = rewrap(tiny_backbone, model, tokenizer=lambda texts: swap(tiny_backbone.tokenizer(texts)),
                     eot_token_id=x_id)
    config = config_for("coop", n_ctx=4)
    original = build_method("coop", tiny_backbone, config, CLASSNAMES, "{}")
    moved = build_method("coop", variant, config, CLASSNAMES, "{}")
    moved.load_learned_state(original.learned_state())
    assert int(variant.tokenize(["X dog."]).argmax()) != int(variant.eot_positions(variant.tokenize(["X dog."]))[0])
    with torch.no_grad():
        torch.testing.assert_close(moved(features(variant)), original(features(tiny_backbone)), rtol=1e-5, atol=1e-5)


def test_non_causal_text_tower_uses_full_length_prompts(tiny_backbone) -> None:
    model = copy.deepcopy(tiny_backbone.model)
    model.attn_mask = None
    variant = rewrap(tiny_backbone, model)
    assert not variant.text_is_causal
    method = build_method("coop", variant, config_for("coop", n_ctx=4), CLASSNAMES, "{}")
    assert method.prompt_learner.seq_len == variant.context_length
    assert method(features(variant)).shape == (3, 3)


@pytest.mark.parametrize("change", ["pool_last", "no_token_embedding", "no_projection"])
def test_unusable_text_towers_are_refused(tiny_backbone, change: str) -> None:
    model = copy.deepcopy(tiny_backbone.model)
    if change == "pool_last":
        model.text_pool_type = "last"
    elif change == "no_token_embedding":
        del model.token_embedding
    else:
        model.text_projection = None
    variant = rewrap(tiny_backbone, model)
    for name in ("coop", "cocoop"):
        with pytest.raises(HarnessError, match="variant"):
            build_method(name, variant, config_for(name), CLASSNAMES, "{}")


def test_official_pure_fp16_mode_keeps_fp16_prompts(tmp_path) -> None:
    backbone = load_backbone(str(save_openai_state_dict(make_openai_clip(), tmp_path / "clip.pt")), device="cpu",
                             precision="fp16")
    method = build_method("cocoop", backbone, config_for("cocoop", n_ctx=4, precision="fp16"),
                          CLASSNAMES, "{}")
    learner = method.prompt_learner
    assert learner.ctx.dtype == torch.float16 and learner.meta_net.linear1.weight.dtype == torch.float16
    method.train()
    optimizer = torch.optim.SGD(method.trainable_parameters(), lr=0.002, momentum=0.9, weight_decay=5e-4)
    logits = method(features(backbone))
    assert logits.dtype == torch.float16
    F.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    optimizer.step()  # the official plain SGD step on fp16 parameters
    assert learner.ctx.dtype == torch.float16 and bool(torch.isfinite(learner.ctx).all())


def test_prompt_longer_than_the_context_is_refused(tiny_backbone) -> None:
    long_name = " ".join(["word"] * 70)
    with pytest.raises(HarnessError, match="needs at least 89 tokens with n_ctx=16"):
        build_method("coop", tiny_backbone, config_for("coop", n_ctx=16), ["dog", long_name], "{}")
