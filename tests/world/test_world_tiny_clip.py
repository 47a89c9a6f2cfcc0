"""The tiny CLIP: the shipped asset loads through the backbone code; pretraining writes it and replays runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.paths import ASSETS_DIR
from harness.world.pretrain import main as pretrain
from harness.world.tiny_clip import MODEL_CONFIG
from harness.world.vocab import check_tokenization

ASSET = ASSETS_DIR / "embedded_clip"


def test_shipped_asset_is_complete_and_small() -> None:
    names = {p.name for p in ASSET.iterdir()}
    expected = {"open_clip_config.json", "model.safetensors", "tokenizer_bpe.txt.gz", "preprocess.json", "meta.json"}
    assert expected <= names
    assert sum(p.stat().st_size for p in ASSET.iterdir()) <= 20 * 2**20
    assert json.loads((ASSET / "open_clip_config.json").read_text()) == MODEL_CONFIG
    meta = json.loads((ASSET / "meta.json").read_text())
    assert meta["seed"] == 0 and meta["steps"] == len(meta["lr_per_step"]) > 0
    assert meta["images_seen"] == meta["steps"] * meta["batch_size"]


def test_embedded_is_the_default_model_and_loads() -> None:
    from harness.models import load_backbone

    backbone = load_backbone()
    assert backbone.preprocessing.image_size == 32
    assert backbone.context_length == 24 and backbone.embed_dim == 128
    assert (backbone.sot_token_id, backbone.eot_token_id) == (8190, 8191)  # the two highest ids
    assert check_tokenization(backbone.tokenizer.encode) == []
    features = backbone.encode_prompts(["a photo of a red star.", "a negative of a red star."])
    assert features.shape == (2, 128)


@pytest.mark.slow
def test_pretraining_writes_a_loadable_asset_and_replays_exactly(tmp_path: Path) -> None:
    from harness.models import load_backbone

    common = ["--batch-size", "8", "--threads", "1", "--warmup", "1", "--save-every", "1", "--seed", "3"]
    pretrain(["--out", str(tmp_path / "a"), "--steps", "2", *common])
    meta = json.loads((tmp_path / "a" / "asset" / "meta.json").read_text())
    assert meta["steps"] == 2 and meta["finished"] and meta["images_seen"] == 16
    backbone = load_backbone(str(tmp_path / "a" / "asset"))
    assert backbone.embed_dim == 128
    pretrain(["--out", str(tmp_path / "b"), "--replay", str(tmp_path / "a" / "asset" / "meta.json"), *common])
    first = (tmp_path / "a" / "asset" / "model.safetensors").read_bytes()
    assert (tmp_path / "b" / "asset" / "model.safetensors").read_bytes() == first
