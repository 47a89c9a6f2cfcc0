"""``harness data make-embedded`` checks the world and regenerates what is missing (issue 15, item 8)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

import harness.world.make as make
from harness.cli import main
from harness.data import prepare_task_data
from harness.errors import DataError
from harness.world.datasets import SOURCE, TARGETS


@pytest.fixture()
def small_world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Two small datasets (textures keeps its real classes, so its card still reads it)."""
    small = (dataclasses.replace(SOURCE, classes=SOURCE.classes[:3], per_class=(2, 1, 2)),
             dataclasses.replace(TARGETS[2], per_class=(1, 1, 1)))
    monkeypatch.setattr(make, "WORLD_DATASETS", small)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "embedded"


def digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def make_embedded(capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert main(["data", "make-embedded", *extra]) == 0
    return capsys.readouterr().out.strip()


def test_make_embedded_regenerates_missing_and_damaged_files(small_world: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert make_embedded(capsys) == f"embedded world written to {small_world}"
    original = digest(small_world)
    assert "manifest.json" in original
    images = sorted(small_world.rglob("*.png"))
    for path in images[::2]:
        path.unlink()
    images[1].write_bytes(b"\x89PNG damaged")
    (small_world / SOURCE.folder / SOURCE.split_file).unlink()
    out = make_embedded(capsys)
    assert out.startswith(f"embedded world at {small_world}: regenerated ")
    assert "1 dataset(s)" in out and "missing or damaged" in out
    assert digest(small_world) == original
    assert make_embedded(capsys).endswith("is complete (every image present and unchanged)")
    assert make_embedded(capsys, "--force") == f"embedded world written to {small_world}"
    assert digest(small_world) == original


def test_missing_embedded_image_names_the_repair_command(small_world: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    make_embedded(capsys)
    next(iter((small_world / TARGETS[2].folder).rglob("*.png"))).unlink()
    with pytest.raises(DataError, match=r"not found: .*run `harness data make-embedded` to regenerate"):
        prepare_task_data(TARGETS[2].name, None)
    make_embedded(capsys)
    assert len(prepare_task_data(TARGETS[2].name, None).test) == len(TARGETS[2].classes)
