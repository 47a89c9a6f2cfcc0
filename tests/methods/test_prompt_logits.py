"""CoOp and CoCoOp logits against an independent, straightforward computation of the official prompts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.methods import build_method, config_for

CLASSNAMES = ["dog", "sea_lion", "golden retriever", "cat", "hot air balloon"]


def official_text_features(backbone, prompts: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """CoOp's TextEncoder on full-length prompts: + positional, transformer, ln_final, row at argmax(ids), proj."""
    model = backbone.model
    x = prompts + model.positional_embedding
    x = model.transformer(x, attn_mask=model.attn_mask)
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ model.text_projection
    return F.normalize(x, dim=-1)


def official_prompts(backbone, ctx: torch.Tensor, n_ctx: int, position: str):
    """The official PromptLearner: tokenized "X .. X name.", prefix/suffix slices, per-class concatenation."""
    names = [name.replace("_", " ") for name in CLASSNAMES]
    tokenizer = backbone.tokenizer
    name_lens = [len(tokenizer.encode(name)) for name in names]
    prefix_text = " ".join(["X"] * n_ctx)
    tokens = tokenizer([f"{prefix_text} {name}." for name in names])
    embedding = backbone.model.token_embedding(tokens)
    prefix, suffix = embedding[:, :1], embedding[:, 1 + n_ctx :]
    if ctx.dim() == 2:
        ctx = ctx.unsqueeze(0).expand(len(names), -1, -1)
    rows = []
    for i, name_len in enumerate(name_lens):
        half = n_ctx // 2
        name, rest = suffix[i : i + 1, :name_len], suffix[i : i + 1, name_len:]
        ctx_i = ctx[i : i + 1]
        if position == "end":
            rows.append(torch.cat([prefix[i : i + 1], ctx_i, suffix[i : i + 1]], dim=1))
        elif position == "middle":
            rows.append(torch.cat([prefix[i : i + 1], ctx_i[:, :half], name, ctx_i[:, half:], rest], dim=1))
        else:
            rows.append(torch.cat([prefix[i : i + 1], name, ctx_i, rest], dim=1))
    return torch.cat(rows), tokens


def random_images(backbone, n: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return F.normalize(torch.randn(n, backbone.embed_dim, generator=generator), dim=-1)


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("csc", [False, True])
def test_coop_logits_match_official_computation(tiny_backbone, position: str, csc: bool) -> None:
    config = config_for("coop", n_ctx=5, csc=csc, class_token_position=position)
    torch.manual_seed(0)
    method = build_method("coop", tiny_backbone, config, CLASSNAMES, "a photo of a {}.")
    with torch.no_grad():  # a context far from its init, so that a misplaced token would show
        method.prompt_learner.ctx.normal_(std=1.0)
    images = random_images(tiny_backbone)
    with torch.no_grad():
        prompts, tokens = official_prompts(tiny_backbone, method.prompt_learner.ctx, 5, position)
        text = official_text_features(tiny_backbone, prompts, tokens)
        expected = tiny_backbone.model.logit_scale.exp() * images @ text.t()
        got_train = method.train()(images)
        method.prepare_eval()
        got_eval = method(images)
    assert got_train.shape == (3, len(CLASSNAMES))
    torch.testing.assert_close(got_train, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_eval, expected, rtol=1e-5, atol=1e-5)


def test_cocoop_logits_match_official_per_image_loop(tiny_backbone) -> None:
    config = config_for("cocoop", n_ctx=4, ctx_init="a photo of a")
    torch.manual_seed(0)
    method = build_method("cocoop", tiny_backbone, config, CLASSNAMES, "a photo of a {}.")
    learner = method.prompt_learner
    with torch.no_grad():
        for parameter in learner.meta_net.parameters():
            parameter.normal_(std=0.5)
    images = random_images(tiny_backbone, 4)
    with torch.no_grad():
        bias = learner.meta_net.linear2(torch.relu(learner.meta_net.linear1(images)))
        rows = []
        for image, shift in zip(images, bias):
            prompts, tokens = official_prompts(tiny_backbone, learner.ctx + shift, 4, "end")
            text = official_text_features(tiny_backbone, prompts, tokens)
            rows.append(tiny_backbone.model.logit_scale.exp() * image @ text.t())
        expected = torch.stack(rows)
        got = method(images)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_ctx_init_takes_the_word_embeddings(tiny_backbone) -> None:
    config = config_for("coop", n_ctx=16, ctx_init="a_photo_of_a")
    method = build_method("coop", tiny_backbone, config, CLASSNAMES, "a photo of a {}.")
    tokens = tiny_backbone.tokenizer(["a photo of a"])
    expected = tiny_backbone.model.token_embedding(tokens)[0, 1:5]
    assert method.prompt_learner.n_ctx == 4
    torch.testing.assert_close(method.prompt_learner.ctx.detach(), expected)
