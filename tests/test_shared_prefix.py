"""Prompts with a common prefix: the prefix encoded once gives the features and gradients of whole prompts."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import make_tiny_backbone

from harness.errors import HarnessError
from harness.methods import build_method, config_for
from harness.models.shared_prefix import prefix_sharing_unsupported

NAMES = ["tench", "American alligator", "Dandie Dinmont Terrier", "espresso machine", "a"]


def _prompt_parts(backbone, n_prefixes: int, prefix_len: int):
    """Random prefixes ``(B, P, D)`` (start token + random context) and the class suffixes ``(N, S, D)``."""
    tokens = backbone.tokenize([" ".join(["X"] * (prefix_len - 1)) + f" {name}." for name in NAMES])
    eot = backbone.eot_positions(tokens)
    embedded = backbone.embed_tokens(tokens[:, : int(eot.max()) + 1])
    generator = torch.Generator().manual_seed(1)
    context = 0.02 * torch.randn(n_prefixes, prefix_len - 1, embedded.shape[-1], generator=generator)
    prefix = torch.cat([embedded[:1, :1].expand(n_prefixes, -1, -1), context], dim=1).requires_grad_(True)
    return prefix, embedded[:, prefix_len:], eot


def _whole(backbone, prefix, suffix, eot):
    """The same prompts concatenated and encoded whole: ``(B, N, E)``."""
    n_prefixes, n_suffixes = prefix.shape[0], suffix.shape[0]
    prompts = torch.cat([prefix.unsqueeze(1).expand(-1, n_suffixes, -1, -1),
                         suffix.unsqueeze(0).expand(n_prefixes, -1, -1, -1)], dim=2).flatten(0, 1)
    return backbone.encode_text_embeddings(prompts, eot.repeat(n_prefixes)).view(n_prefixes, n_suffixes, -1)


@pytest.mark.parametrize("n_prefixes", [1, 3])
def test_shared_prefix_gives_the_features_and_gradients_of_whole_prompts(n_prefixes: int) -> None:
    """In float64, so that only the order of the sums differs and the agreement is tight."""
    backbone = make_tiny_backbone(seed=5)
    backbone.model.to(torch.float64)
    backbone.dtype = torch.float64
    assert backbone.shares_prompt_prefix
    prefix, suffix, eot = _prompt_parts(backbone, n_prefixes, prefix_len=5)
    prefix = prefix.detach().to(torch.float64).requires_grad_(True)
    weights = torch.randn(n_prefixes, len(NAMES), backbone.embed_dim, dtype=torch.float64,
                          generator=torch.Generator().manual_seed(2))
    results = []
    for encode in (backbone.encode_text_shared_prefix, lambda p, s, e: _whole(backbone, p, s, e)):
        prefix.grad = None
        features = encode(prefix, suffix, eot)
        (features * weights).sum().backward()
        results.append((features.detach(), prefix.grad.clone()))
    (shared, shared_grad), (whole, whole_grad) = results
    assert shared.shape == (n_prefixes, len(NAMES), backbone.embed_dim)
    torch.testing.assert_close(shared, whole, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(shared_grad, whole_grad, rtol=1e-9, atol=1e-9 * float(whole_grad.abs().max()))


def test_shared_prefix_in_float32_agrees_to_float_rounding(tiny_backbone) -> None:
    prefix, suffix, eot = _prompt_parts(tiny_backbone, 2, prefix_len=5)
    with torch.no_grad():
        torch.testing.assert_close(tiny_backbone.encode_text_shared_prefix(prefix, suffix, eot),
                                   _whole(tiny_backbone, prefix, suffix, eot), rtol=1e-5, atol=1e-6)


def test_each_prefix_reaches_only_its_own_prompts(tiny_backbone) -> None:
    prefix, suffix, eot = _prompt_parts(tiny_backbone, 2, prefix_len=5)
    with torch.no_grad():
        both = tiny_backbone.encode_text_shared_prefix(prefix, suffix, eot)
        changed = prefix.clone()
        changed[1, 1:] += 1.0
        again = tiny_backbone.encode_text_shared_prefix(changed, suffix, eot)
    torch.testing.assert_close(again[0], both[0], rtol=0, atol=0)
    assert not torch.allclose(again[1], both[1])


def test_prompt_learner_shares_the_prefix_only_where_it_is_exact(tiny_backbone) -> None:
    def learner(**overrides):
        config = config_for(overrides.pop("method", "coop"), n_ctx=4, **overrides)
        return build_method(config.method, tiny_backbone, config, NAMES, "{}").prompt_learner

    assert learner().share_prefix and learner(method="cocoop").share_prefix
    assert not learner(csc=True).share_prefix  # a context per class: no common prefix beyond the start token
    assert not learner(class_token_position="middle").share_prefix
    assert not learner(class_token_position="front").share_prefix
    assert not learner(truncate_prompts=False).share_prefix  # the official full-length computation


def test_coop_text_features_with_and_without_the_shared_prefix_are_equal(tiny_backbone) -> None:
    config = config_for("coop", n_ctx=6)
    torch.manual_seed(0)
    method = build_method("coop", tiny_backbone, config, NAMES, "{}")
    with torch.no_grad():
        shared = method.text_features()
        method.prompt_learner.share_prefix = False
        whole = method.text_features()
    torch.testing.assert_close(shared, whole, rtol=1e-5, atol=1e-6)


def test_a_non_standard_text_block_is_encoded_whole() -> None:
    backbone = make_tiny_backbone(seed=4)
    block = backbone.model.transformer.resblocks[1]
    block.__class__ = type("PatchedBlock", (type(block),), {})  # same maths, but not the block restated here
    reason = prefix_sharing_unsupported(backbone.model)
    assert reason == "text block 1 is a PatchedBlock, not open_clip's ResidualAttentionBlock"
    assert backbone.text_is_causal and not backbone.shares_prompt_prefix
    prefix, suffix, eot = _prompt_parts(backbone, 1, prefix_len=5)
    with pytest.raises(HarnessError, match="cannot encode a shared prompt prefix once: text block 1 is a Patched"):
        backbone.encode_text_shared_prefix(prefix, suffix, eot)
    config = config_for("cocoop", n_ctx=4)
    method = build_method("cocoop", backbone, config, NAMES, "{}")
    assert not method.prompt_learner.share_prefix  # truncated, whole prompts: still the official numbers
    full = build_method("cocoop", backbone, dataclasses.replace(config, truncate_prompts=False), NAMES, "{}")
    full.load_learned_state(method.learned_state())
    x = torch.nn.functional.normalize(torch.randn(3, backbone.embed_dim), dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(method(x), full(x), rtol=1e-5, atol=1e-5)


def test_end_of_text_positions_outside_the_suffix_are_refused(tiny_backbone) -> None:
    prefix, suffix, eot = _prompt_parts(tiny_backbone, 1, prefix_len=5)
    with pytest.raises(HarnessError, match=r"end-of-text positions \[4, .* must fall in the suffix, positions 5\.\."):
        tiny_backbone.encode_text_shared_prefix(prefix, suffix, torch.cat([eot[:1] * 0 + 4, eot[1:]]))
    with pytest.raises(HarnessError, match="one per suffix"):
        tiny_backbone.encode_text_shared_prefix(prefix, suffix, eot[:2])
