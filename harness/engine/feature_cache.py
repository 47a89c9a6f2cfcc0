"""A shared on-disk cache of image features of frozen image encoders, for evaluation.

Every method, seed and protocol that evaluates the same split with the same frozen image encoder needs
the same image features; the official code re-encodes them every time. An entry holds the L2-normalised
float32 features of one evaluated image list and is keyed by everything they depend on:

- the backbone: its weights checksum, a checksum of the image tower's actual tensors (fixtures and
  converted models can share a file checksum without sharing weights), device type and precision;
- the data: dataset, split checksum, split name, subsample, the image folder, and the sorted list of
  ``(impath, label)`` actually evaluated with each file's size and modification time (an image replaced
  on disk changes the key);
- the test transform: its full description (image size, resize, crop, interpolation, mean, std).

Layout under the cache folder (``cache_dir()/"features"`` by default): ``<key>.safetensors`` holds one
tensor ``features`` ``(n, embed_dim)`` in sorted-item order, and ``<key>.json`` the manifest (format, key,
count, embed_dim, sha256 of the tensors file, readable key fields). Both are written atomically (temp file
then ``os.replace``), the manifest last, so a crash leaves an entry without a manifest. An entry whose
manifest is missing or unreadable, whose key, count or shape does not match, or whose checksum fails is
reported, deleted and rebuilt, never used. Safetensors files hold only tensors: loading runs no code.

Set ``HARNESS_FEATURE_CACHE=0`` (or ``off``/``false``) to turn the default cache off.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from harness.errors import DataError
from harness.models.backbone import Backbone
from harness.paths import cache_dir

FORMAT = 1
ENV_SWITCH = "HARNESS_FEATURE_CACHE"
OFF_VALUES = ("0", "off", "false", "no")
_LOG = logging.getLogger(__name__)
# One checksum of the image tower per backbone object: hashing the weights costs about as much as
# encoding a few images, and a backbone's frozen weights do not change.
_TOWER_SHA: weakref.WeakKeyDictionary[Backbone, str] = weakref.WeakKeyDictionary()

Encoder = Callable[[], tuple[torch.Tensor, torch.Tensor]]


def image_tower_sha256(backbone: Backbone) -> str:
    """sha256 over the image tower's state dict (names, dtypes, shapes and bytes), memoised per backbone."""
    cached = _TOWER_SHA.get(backbone)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    tower = getattr(backbone.model, "visual", backbone.model)
    for name, tensor in sorted(tower.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    _TOWER_SHA[backbone] = value = digest.hexdigest()
    return value


def sorted_order(items: Sequence[Any]) -> list[int]:
    """Positions of ``items`` sorted by ``(impath, label)`` (ties keep split order): the row order of an entry."""
    return sorted(range(len(items)), key=lambda i: (items[i].impath, items[i].label))


def items_sha256(items: Sequence[Any], image_dir: Path) -> str:
    """sha256 over the sorted ``(impath, label, size, mtime)`` of the evaluated images.

    Raises:
        DataError: an image file that does not exist.
    """
    digest = hashlib.sha256()
    for index in sorted_order(items):
        item = items[index]
        path = Path(image_dir) / item.impath
        try:
            stat = path.stat()
        except OSError as exc:
            raise DataError(f"image not found: {path} ({exc.strerror})") from None
        digest.update(json.dumps([item.impath, int(item.label), stat.st_size, stat.st_mtime_ns]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def key_fields(backbone: Backbone, task_data: Any, split: str, items: Sequence[Any], transform: Any) -> dict[str, Any]:
    """Everything the features of ``items`` depend on, as a JSON-able dict (hashed into the entry key)."""
    pre = backbone.preprocessing
    return {
        "format": FORMAT,
        "backbone": backbone.name,
        "backbone_sha256": backbone.weights_sha256,
        "image_tower_sha256": image_tower_sha256(backbone),
        "device_type": backbone.device.type,
        "precision": backbone.precision,
        "dataset": str(getattr(task_data, "dataset", "")),
        "split_sha256": str(getattr(task_data, "split_sha256", "")),
        "split": split,
        "subsample": str(getattr(task_data, "subsample", "")),
        "image_dir": str(Path(task_data.image_dir).resolve()),
        "n_images": len(items),
        "items_sha256": items_sha256(items, task_data.image_dir),
        "preprocessing": [pre.image_size, list(pre.mean), list(pre.std), pre.interpolation],
        "transform": repr(transform),
    }


def entry_key(fields: dict[str, Any]) -> str:
    """The entry key: sha256 of the canonical JSON of the key fields."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temp file in the same folder and ``os.replace``."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class FeatureCache:
    """Image features on disk under ``root``, one entry per key (see the module docstring).

    Attributes:
        root: the cache folder.
        hits / misses / rebuilt: counts since construction (``rebuilt`` = invalid entries found and replaced).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        self.rebuilt = 0

    def paths(self, key: str) -> tuple[Path, Path]:
        """The tensors file and the manifest of entry ``key``."""
        return self.root / f"{key}.safetensors", self.root / f"{key}.json"

    def load(self, key: str, count: int) -> torch.Tensor | None:
        """The features ``(count, d)`` of entry ``key`` in sorted-item order; None if absent or invalid.

        An invalid entry (see ``check``) is logged and deleted, and counted in ``rebuilt``.
        """
        tensors_path, manifest_path = self.paths(key)
        if not tensors_path.exists() and not manifest_path.exists():
            return None
        features, problem = self.check(key, count)
        if features is None:
            _LOG.warning("feature cache entry %s is invalid (%s); rebuilding it", tensors_path, problem)
            self.rebuilt += 1
            tensors_path.unlink(missing_ok=True)
            manifest_path.unlink(missing_ok=True)
        return features

    def check(self, key: str, count: int) -> tuple[torch.Tensor | None, str]:
        """Validate entry ``key``: ``(features, "")`` if it is complete and matches, else ``(None, reason)``."""
        tensors_path, manifest_path = self.paths(key)
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            payload = tensors_path.read_bytes()
        except (OSError, ValueError) as exc:
            return None, f"unreadable or missing file: {exc}"
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("key") != key:
            return None, "manifest does not match the key"
        if manifest.get("count") != count:
            return None, f"manifest count {manifest.get('count')} != {count} images"
        if hashlib.sha256(payload).hexdigest() != manifest.get("sha256"):
            return None, "checksum mismatch"
        try:
            features = load_tensors(payload)["features"]
        except Exception as exc:  # safetensors raises its own error types on a malformed header
            return None, f"unreadable tensors: {exc}"
        expected = (count, manifest.get("embed_dim"))
        if tuple(features.shape) != expected or features.dtype != torch.float32:
            return None, f"tensor {tuple(features.shape)} {features.dtype}, expected {expected} float32"
        return features, ""

    def store(self, key: str, fields: dict[str, Any], features: torch.Tensor) -> None:
        """Write entry ``key``: the tensors file first, then the manifest (its presence marks completeness)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tensors_path, manifest_path = self.paths(key)
        payload = save_tensors({"features": features.detach().float().cpu().contiguous()})
        manifest = {
            "format": FORMAT,
            "key": key,
            "count": int(features.shape[0]),
            "embed_dim": int(features.shape[1]),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "fields": fields,
        }
        manifest_path.unlink(missing_ok=True)  # never leave an old manifest next to new tensors
        _write_atomic(tensors_path, payload)
        _write_atomic(manifest_path, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())

    def split_features(self, backbone: Backbone, task_data: Any, split: str, items: Sequence[Any],
                       transform: Any, encode: Encoder) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(n, d)`` (on the backbone's device) and labels of ``items``: from the cache, or ``encode()``.

        Args:
            backbone: the frozen backbone.
            task_data: the ``TaskData`` the items come from.
            split: the split name.
            items: the evaluated items, in split order.
            transform: the test transform ``encode`` applies (its description is part of the key).
            encode: computes ``(features, labels)`` in split order when the entry is absent or invalid.
        """
        fields = key_fields(backbone, task_data, split, items, transform)
        key = entry_key(fields)
        order = sorted_order(items)
        labels = torch.tensor([int(item.label) for item in items], dtype=torch.long)
        cached = self.load(key, len(items))
        if cached is not None:
            self.hits += 1
            features = torch.empty_like(cached)
            features[order] = cached
            return features.to(backbone.device), labels
        self.misses += 1
        features, encoded_labels = encode()
        if not torch.equal(encoded_labels.cpu(), labels):
            raise DataError(f"dataset {fields['dataset']}: encoded labels differ from the {split} split's labels")
        self.store(key, fields, features.float().cpu()[order])
        return features, labels


def default_cache() -> FeatureCache | None:
    """The shared cache under ``cache_dir()/"features"``, or None when ``HARNESS_FEATURE_CACHE`` turns it off."""
    if os.environ.get(ENV_SWITCH, "").strip().lower() in OFF_VALUES:
        return None
    return FeatureCache(cache_dir() / "features")


def resolve_cache(cache: FeatureCache | bool) -> FeatureCache | None:
    """``True`` -> the default shared cache, ``False`` -> none, a ``FeatureCache`` -> itself."""
    if isinstance(cache, FeatureCache):
        return cache
    if cache is True:
        return default_cache()
    if cache is False:
        return None
    raise TypeError(f"cache must be a FeatureCache or a bool, got {cache!r}")
