"""make_world / ensure_world: byte-identical regeneration, atomic writes, stale or partial worlds redone."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

import harness.world.make as make
from harness.world import WORLD_DATASETS, ensure_world, make_world, world_version
from harness.world.datasets import SOURCE, TARGETS


def _small_world(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three small datasets (a few classes, a few images) so each test renders in well under a second."""
    small = (
        dataclasses.replace(SOURCE, classes=SOURCE.classes[:3], per_class=(2, 1, 2)),
        dataclasses.replace(TARGETS[2], per_class=(1, 1, 1)),  # textures: no sketch
        dataclasses.replace(WORLD_DATASETS[-3], classes=SOURCE.classes[:2], per_class=(0, 0, 2)),  # sketch, test only
    )
    monkeypatch.setattr(make, "WORLD_DATASETS", small)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_regenerating_from_the_seed_gives_identical_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _small_world(monkeypatch)
    make_world(tmp_path / "a")
    make_world(tmp_path / "b")
    first, second = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert first == second
    assert sum(name.endswith(".png") for name in first) == 3 * 5 + 6 * 3 + 2 * 2


def test_another_seed_gives_other_images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _small_world(monkeypatch)
    make_world(tmp_path / "a", seed=1)
    make_world(tmp_path / "b", seed=2)
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    pngs = [name for name in a if name.endswith(".png")]
    assert all(a[name] != b[name] for name in pngs)


def test_split_file_is_in_the_official_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _small_world(monkeypatch)
    make_world(tmp_path)
    dataset = make.WORLD_DATASETS[0]
    split = json.loads((tmp_path / dataset.folder / dataset.split_file).read_text())
    assert set(split) == {"train", "val", "test"}
    assert [len(split[s]) for s in ("train", "val", "test")] == [6, 3, 6]
    for relpath, label, classname in split["train"] + split["test"]:
        assert isinstance(label, int) and classname == dataset.classnames[label]
        assert (tmp_path / dataset.folder / "images" / relpath).is_file()
        assert relpath.startswith(f"{classname}/")
    test_only = make.WORLD_DATASETS[2]
    only = json.loads((tmp_path / test_only.folder / test_only.split_file).read_text())
    assert only["train"] == [] and only["val"] == [] and len(only["test"]) == 4


def test_ensure_world_keeps_a_complete_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _small_world(monkeypatch)
    make_world(tmp_path / "w")
    marker = tmp_path / "w" / make.MARKER
    before = marker.stat().st_mtime_ns
    ensure_world(tmp_path / "w")
    assert marker.stat().st_mtime_ns == before


def test_half_written_world_is_regenerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _small_world(monkeypatch)
    make_world(tmp_path / "w")
    reference = _digest(tmp_path / "w")
    (tmp_path / "w" / make.MARKER).unlink()  # what an interrupted non-atomic writer would leave
    next(iter((tmp_path / "w").rglob("*.png"))).unlink()
    ensure_world(tmp_path / "w")
    assert _digest(tmp_path / "w") == reference


def test_outdated_world_is_regenerated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _small_world(monkeypatch)
    make_world(tmp_path / "w")
    marker = tmp_path / "w" / make.MARKER
    marker.write_text(json.dumps({"version": "an-older-world", "seed": make.WORLD_SEED}))
    (tmp_path / "w" / "leftover.txt").write_text("from the old world")
    ensure_world(tmp_path / "w")
    assert json.loads(marker.read_text())["version"] == world_version()
    assert not (tmp_path / "w" / "leftover.txt").exists()


def test_no_temporary_folders_are_left_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _small_world(monkeypatch)
    make_world(tmp_path / "w")
    make_world(tmp_path / "w", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]


def test_version_tracks_the_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    before = world_version()
    _small_world(monkeypatch)
    assert world_version() != before


def pixel_digest(root: Path) -> str:
    """sha256 over every image's path and decoded pixels (independent of the PNG encoder's version)."""
    import numpy as np
    from PIL import Image

    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(np.asarray(Image.open(path).convert("RGB")).tobytes())
    return digest.hexdigest()


# The full world of the default seed, as the shipped numbers were measured on it.
WORLD_PIXEL_SHA256 = "697b2c222a1f7f1838cd3866e265c00959fefedb25f606fba00ac39c92d15754"


@pytest.mark.slow
def test_full_world_regenerates_to_the_pinned_world(tmp_path: Path) -> None:
    from harness.data import load_card

    make_world(tmp_path / "w")
    for dataset in WORLD_DATASETS:
        split = (tmp_path / "w" / dataset.folder / dataset.split_file).read_bytes()
        assert hashlib.sha256(split).hexdigest() == load_card(dataset.name).split_sha256, dataset.name
    assert pixel_digest(tmp_path / "w") == WORLD_PIXEL_SHA256
