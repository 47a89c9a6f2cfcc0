"""Writing the embedded world to disk, in the real datasets' layout: an image folder plus a split JSON.

``make_world`` renders every embedded dataset into a temporary folder and renames it into place only when
complete, with a marker file holding the world's version and seed; ``ensure_world`` regenerates a world
that is missing, half written or outdated, and otherwise does nothing. Each image is a pure function of
(world seed, dataset name, split, class, index), and PNG is lossless, so regenerating gives identical files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from harness.world.datasets import ATTRIBUTE_VALUES, WORLD_DATASETS, WorldDataset
from harness.world.render import image_rng, render
from harness.world.vocab import NO_TEXTURE, STYLES, Scene

WORLD_SEED = 2026
RENDERER_VERSION = 1  # bump when the renderer's output changes
MARKER = "world.json"
MANIFEST = "manifest.json"
IMAGE_DIR = "images"
SPLITS = ("train", "val", "test")


def world_version() -> str:
    """A digest of the renderer version and every dataset definition: a changed world gets a new version."""
    payload = json.dumps(
        {"renderer": RENDERER_VERSION, "datasets": [dataclasses.asdict(d) for d in WORLD_DATASETS]}, sort_keys=True
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _scene(dataset: WorldDataset, label: int, rng: np.random.Generator) -> Scene:
    fixed = dict(zip(dataset.class_attributes, dataset.classes[label]))
    styles = list(dataset.styles)
    style = styles[int(rng.choice(len(styles), p=[dataset.styles[s] for s in styles]))]
    chosen = {}
    for attribute, values in ATTRIBUTE_VALUES.items():
        pool = dataset.free.get(attribute, values)
        name = fixed[attribute] if attribute in fixed else pool[int(rng.integers(len(pool)))]
        chosen[attribute] = values.index(name)
    texture = NO_TEXTURE if style == "sketch" else chosen["texture"]
    return Scene(chosen["shape"], chosen["colour"], chosen["size"], texture, STYLES.index(style))


def image_index(split_index: int, label: int, index: int) -> int:
    """The index of an image in its dataset's seed stream (unique for up to 1,000 classes and images)."""
    return (split_index * 1000 + label) * 1000 + index


def image_path(dataset: WorldDataset, split: str, label: int, index: int) -> str:
    """Path of an image relative to the dataset's image folder."""
    return f"{dataset.classnames[label]}/{split}_{index:03d}.png"


def save_image(dataset: WorldDataset, split_index: int, label: int, index: int, seed: int, path: Path) -> None:
    """Render one image (a pure function of its coordinates and the seed) and save it as PNG at ``path``."""
    rng = image_rng(seed, dataset.name, image_index(split_index, label, index))
    pixels = render(_scene(dataset, label, rng), rng, centred=dataset.centred)
    Image.fromarray(pixels).save(path, format="PNG", compress_level=6)


def write_dataset(dataset: WorldDataset, folder: Path, seed: int = WORLD_SEED) -> None:
    """Render one dataset into ``folder`` (image folder + split JSON).

    Args:
        dataset: the definition.
        folder: the dataset's folder (created).
        seed: the world seed.
    """
    image_dir = folder / IMAGE_DIR
    for classname in dataset.classnames:
        (image_dir / classname).mkdir(parents=True, exist_ok=True)
    split: dict[str, list[list[object]]] = {}
    for split_index, (name, count) in enumerate(zip(SPLITS, dataset.per_class)):
        entries = []
        for label in range(len(dataset.classes)):
            for index in range(count):
                relpath = image_path(dataset, name, label, index)
                save_image(dataset, split_index, label, index, seed, image_dir / relpath)
                entries.append([relpath, label, dataset.classnames[label]])
        split[name] = entries
    # indent=4 as the official split files (OxfordPets.save_split).
    (folder / dataset.split_file).write_text(json.dumps(split, indent=4), encoding="utf-8")


def write_manifest(root: Path) -> None:
    """Record the sha256 of every file under ``root`` in ``root/manifest.json`` (checked by make-embedded)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name not in (MANIFEST, MARKER))
    entries = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    (root / MANIFEST).write_text(json.dumps(entries, indent=0, sort_keys=True), encoding="utf-8")


def _marker_ok(root: Path, seed: int) -> bool:
    try:
        marker = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker == {"version": world_version(), "seed": seed}


def make_world(root: Path, force: bool = False, seed: int = WORLD_SEED) -> None:
    """Render every embedded dataset under ``root/<folder>/``, atomically.

    The world is written into a sibling temporary folder, completed with its marker file, then renamed to
    ``root``; a world interrupted half-way is never seen at ``root``.

    Args:
        root: the world's folder (e.g. ``cache_dir() / "embedded"``).
        force: regenerate even if an up-to-date world is there.
        seed: the world seed (the default is the one the shipped numbers were measured on).
    """
    root = Path(root)
    if not force and _marker_ok(root, seed):
        return
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for dataset in WORLD_DATASETS:
        write_dataset(dataset, tmp / dataset.folder, seed)
    write_manifest(tmp)
    (tmp / MARKER).write_text(json.dumps({"version": world_version(), "seed": seed}), encoding="utf-8")
    old = root.parent / f".{root.name}.old-{os.getpid()}"
    if root.exists():
        os.replace(root, old)
    try:
        os.replace(tmp, root)
    except OSError:
        # Another process finished first: keep its (identical) world and drop ours.
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


def ensure_world(root: Path, seed: int = WORLD_SEED) -> None:
    """Make the world at ``root`` unless an up-to-date, complete one is already there."""
    if not _marker_ok(Path(root), seed):
        make_world(Path(root), force=True, seed=seed)


def split_scenes(dataset: WorldDataset, seed: int = WORLD_SEED) -> dict[str, list[Scene]]:
    """The scene of every image of every split, in split-file order, without rendering anything.

    The scene is the first thing drawn from an image's generator, so it can be recovered on its own
    (diagnostics use it to break accuracy down by rendering style).
    """
    scenes: dict[str, list[Scene]] = {}
    for split_index, (name, count) in enumerate(zip(SPLITS, dataset.per_class)):
        scenes[name] = [
            _scene(dataset, label, image_rng(seed, dataset.name, image_index(split_index, label, index)))
            for label in range(len(dataset.classes))
            for index in range(count)
        ]
    return scenes
