"""Shared test fixtures: a tiny random CLIP backbone (OpenAI text-tower layout) usable without downloads."""

from __future__ import annotations

import open_clip
import pytest
import torch

from harness.models.backbone import Backbone, Preprocessing

TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def make_tiny_backbone(seed: int = 0) -> Backbone:
    """A randomly initialised tiny CLIP with the OpenAI tokenizer, wrapped as a ``Backbone``."""
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**TINY_CLIP_CONFIG)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=77)
    return Backbone(
        model,
        tokenizer,
        name="tiny-random",
        weights_sha256="0" * 64,
        sot_token_id=tokenizer.sot_token_id,
        eot_token_id=tokenizer.eot_token_id,
        preprocessing=Preprocessing(32, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    )


@pytest.fixture(scope="session")
def tiny_backbone() -> Backbone:
    """A session-wide tiny random backbone (frozen; do not modify it in tests)."""
    return make_tiny_backbone()


@pytest.fixture(scope="session")
def embedded_world():
    """The embedded world in the harness cache (``$HARNESS_CACHE``/embedded), made once if missing or stale."""
    from harness.paths import cache_dir
    from harness.world import ensure_world

    root = cache_dir() / "embedded"
    ensure_world(root)
    return root
