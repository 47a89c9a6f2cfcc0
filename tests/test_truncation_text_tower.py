"""Truncated text encoding is exact on causal text towers and switched off on the others.

The CoOp/CoCoOp prompt paths are covered in ``tests/methods/test_prompt_speed_paths.py``; this covers the
backbone's own string path (zero-shot prompts) and the full-length fallback for a non-causal tower.
"""

from __future__ import annotations

import pytest
import torch
from conftest import make_tiny_backbone

from harness.errors import HarnessError
from harness.methods import build_method, config_for

NAMES = ["tench", "American alligator", "Dandie Dinmont Terrier", "espresso machine", "a"]


def test_truncated_and_full_length_zero_shot_prompts_give_the_same_features(tiny_backbone) -> None:
    prompts = [f"a photo of a {name}." for name in NAMES]
    tokens = tiny_backbone.tokenize(prompts)
    assert int(tiny_backbone.eot_positions(tokens).max()) + 1 < tiny_backbone.context_length
    with torch.no_grad():
        short = tiny_backbone.encode_prompts(prompts, truncate=True)
        full = tiny_backbone.encode_prompts(prompts, truncate=False)
    torch.testing.assert_close(short, full, rtol=1e-5, atol=1e-6)


def test_non_causal_text_tower_keeps_the_full_length() -> None:
    backbone = make_tiny_backbone(seed=3)
    backbone.model.attn_mask = None  # a bidirectional text tower: later tokens change the EOT feature
    assert not backbone.text_is_causal and not backbone.shares_prompt_prefix
    tokens = backbone.tokenize([f"a photo of a {name}." for name in NAMES])
    eot = backbone.eot_positions(tokens)
    with torch.no_grad():
        default = backbone.encode_text(tokens)  # truncate=True is ignored here
        full = backbone.encode_text_embeddings(backbone.embed_tokens(tokens), eot).float()
        torch.testing.assert_close(default, full, rtol=0, atol=0)
        length = int(eot.max()) + 1
        with pytest.raises(HarnessError, match="causal"):
            backbone.encode_text_embeddings(backbone.embed_tokens(tokens[:, :length]), eot)
    method = build_method("coop", backbone, config_for("coop", n_ctx=4), NAMES, "{}")
    assert method.prompt_learner.seq_len == backbone.context_length and not method.prompt_learner.share_prefix
