"""The shared image-feature cache: warm reuse encodes no image, damaged entries are rebuilt, keys separate."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import make_tiny_backbone
from PIL import Image

from harness.data import Datum
from harness.engine import evaluate
from harness.engine.evaluate import split_features
from harness.engine.feature_cache import FeatureCache, default_cache, resolve_cache
from harness.methods import config_for

CLASSNAMES = ["dog", "cat", "sea lion"]


def make_task(root: Path, n: int = 7) -> SimpleNamespace:
    """A task with ``n`` random 40x36 test images (non-square, so resize and crop both act)."""
    image_dir = root / "images"
    image_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    test = []
    for i in range(n):
        name = f"c{i % 3}/img_{i}.png"
        (image_dir / name).parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(image_dir / name)
        test.append(Datum(name, i % 3, CLASSNAMES[i % 3]))
    return SimpleNamespace(dataset="toy", image_dir=image_dir, train=[], val=[], test=test, classnames=CLASSNAMES,
                           template="a photo of a {}.", split_sha256="ab" * 32, subsample="all")


class CountingBackbone:
    """Counts ``encode_images`` calls of a backbone (patched on the instance, restored by monkeypatch)."""

    def __init__(self, backbone, monkeypatch) -> None:
        self.calls = 0
        original = backbone.encode_images

        def counted(images: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return original(images)

        monkeypatch.setattr(backbone, "encode_images", counted)


@pytest.fixture
def task(tmp_path: Path) -> SimpleNamespace:
    return make_task(tmp_path / "data")


@pytest.fixture
def cache(tmp_path: Path) -> FeatureCache:
    return FeatureCache(tmp_path / "cache")


def zeroshot(backbone):
    from harness.methods import build_method

    return build_method("zeroshot", backbone, config_for("zeroshot"), CLASSNAMES, "a photo of a {}.")


def test_second_evaluation_encodes_no_image_and_gives_the_same_logits(tiny_backbone, task, cache, monkeypatch):
    counter = CountingBackbone(tiny_backbone, monkeypatch)
    uncached = evaluate(zeroshot(tiny_backbone), tiny_backbone, task, batch_size=3, cache=False)
    calls_uncached = counter.calls
    assert calls_uncached == 3 and not cache.root.exists()  # cache=False writes nothing
    first = evaluate(zeroshot(tiny_backbone), tiny_backbone, task, batch_size=3, cache=cache)
    assert counter.calls == 2 * calls_uncached and (cache.hits, cache.misses) == (0, 1)
    second = evaluate(zeroshot(tiny_backbone), tiny_backbone, task, batch_size=3, cache=cache)
    assert counter.calls == 2 * calls_uncached, "a warm entry must not encode any image"
    assert (cache.hits, cache.misses, cache.rebuilt) == (1, 1, 0)
    torch.testing.assert_close(second.logits, uncached.logits, rtol=0, atol=0)
    torch.testing.assert_close(first.logits, uncached.logits, rtol=0, atol=0)
    assert second.labels == uncached.labels and second.impaths == uncached.impaths


def test_entry_is_reused_for_the_same_images_in_another_order(tiny_backbone, task, cache):
    features, labels = split_features(tiny_backbone, task, "test", cache=cache)
    reordered = SimpleNamespace(**{**vars(task), "test": list(reversed(task.test))})
    again, again_labels = split_features(tiny_backbone, reordered, "test", cache=cache)
    assert cache.hits == 1
    torch.testing.assert_close(again, features.flip(0), rtol=0, atol=0)
    assert again_labels.tolist() == labels.flip(0).tolist()


def _damage_flip_byte(tensors: Path, manifest: Path) -> None:
    payload = bytearray(tensors.read_bytes())
    payload[-5] ^= 0xFF
    tensors.write_bytes(bytes(payload))


def _damage_truncate(tensors: Path, manifest: Path) -> None:
    tensors.write_bytes(tensors.read_bytes()[:-16])


def _damage_no_manifest(tensors: Path, manifest: Path) -> None:
    manifest.unlink()


def _damage_wrong_count(tensors: Path, manifest: Path) -> None:
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "count": data["count"] + 1}))


def _damage_wrong_key(tensors: Path, manifest: Path) -> None:
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "key": "0" * 64}))


def _damage_garbage_manifest(tensors: Path, manifest: Path) -> None:
    manifest.write_text("{not json")


@pytest.mark.parametrize("damage", [_damage_flip_byte, _damage_truncate, _damage_no_manifest, _damage_wrong_count,
                                    _damage_wrong_key, _damage_garbage_manifest])
def test_damaged_entry_is_rebuilt_not_used(tiny_backbone, task, cache, monkeypatch, damage):
    reference, _ = split_features(tiny_backbone, task, "test", batch_size=4, cache=False)
    split_features(tiny_backbone, task, "test", batch_size=4, cache=cache)
    (tensors,) = cache.root.glob("*.safetensors")
    damage(tensors, tensors.with_suffix(".json"))
    counter = CountingBackbone(tiny_backbone, monkeypatch)
    rebuilt, _ = split_features(tiny_backbone, task, "test", batch_size=4, cache=cache)
    assert counter.calls == 2 and cache.rebuilt == 1 and cache.hits == 0
    torch.testing.assert_close(rebuilt, reference, rtol=0, atol=0)
    # The rebuilt entry is complete again: the next call is a hit.
    split_features(tiny_backbone, task, "test", batch_size=4, cache=cache)
    assert counter.calls == 2 and cache.hits == 1


def test_another_backbone_with_the_same_checksum_gets_its_own_entry(tiny_backbone, task, cache):
    other = make_tiny_backbone(seed=1)  # same weights_sha256 ("0" * 64), different image tower
    assert other.weights_sha256 == tiny_backbone.weights_sha256
    first, _ = split_features(tiny_backbone, task, "test", cache=cache)
    second, _ = split_features(other, task, "test", cache=cache)
    assert cache.misses == 2 and len(list(cache.root.glob("*.json"))) == 2
    assert not torch.allclose(first, second)


def test_another_transform_gets_its_own_entry(tiny_backbone, task, cache):
    split_features(tiny_backbone, task, "test", cache=cache)
    other = make_tiny_backbone(seed=0)
    other.preprocessing = dataclasses.replace(other.preprocessing, interpolation="bilinear")
    split_features(other, task, "test", cache=cache)
    other.preprocessing = dataclasses.replace(other.preprocessing, mean=(0.5, 0.5, 0.5))
    split_features(other, task, "test", cache=cache)
    assert (cache.hits, cache.misses) == (0, 3)


def test_other_split_items_or_changed_image_get_their_own_entry(tiny_backbone, task, cache):
    split_features(tiny_backbone, task, "test", cache=cache)
    fewer = SimpleNamespace(**{**vars(task), "test": task.test[:-1]})
    split_features(tiny_backbone, fewer, "test", cache=cache)
    relabelled = SimpleNamespace(**{**vars(task), "split_sha256": "cd" * 32})
    split_features(tiny_backbone, relabelled, "test", cache=cache)
    assert (cache.hits, cache.misses) == (0, 3)
    path = task.image_dir / task.test[0].impath
    Image.new("RGB", (40, 36), (10, 200, 30)).save(path)
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse-grained file systems
    split_features(tiny_backbone, task, "test", cache=cache)
    assert (cache.hits, cache.misses) == (0, 4)


def test_default_cache_location_and_switch(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    monkeypatch.delenv("HARNESS_FEATURE_CACHE", raising=False)
    assert resolve_cache(True).root == tmp_path / "features"
    monkeypatch.setenv("HARNESS_FEATURE_CACHE", "off")
    assert default_cache() is None and resolve_cache(True) is None
    assert resolve_cache(False) is None
    with pytest.raises(TypeError):
        resolve_cache("yes")  # type: ignore[arg-type]
