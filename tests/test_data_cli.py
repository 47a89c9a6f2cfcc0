"""``harness data check``, ``harness data fewshot`` and ``harness data make-embedded``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data import imagenet_layouts, layouts
from data_fixtures import build_dtd_fixture

from harness.cli import main


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_check_complete_layouts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = build_dtd_fixture(tmp_path / "data")
    imagenet_layouts.build_fgvc_aircraft(root)
    code = main(["data", "check", "--data-root", str(root), "--dataset", "dtd", "--dataset", "fgvc_aircraft"])
    out = capsys.readouterr().out
    assert code == 0
    assert "dtd (DTD): complete" in out and "fgvc_aircraft (FGVCAircraft): complete" in out
    assert "train: 16 images, differs from the card (2820)" in out
    assert "test: 6 images, differs from the card (3333)" in out
    assert "2/2 complete" in out


def test_check_reports_exactly_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = build_dtd_fixture(tmp_path / "data")
    (root / "dtd" / "images" / "bubbly" / "bubbly_0009.jpg").unlink()
    (root / "dtd" / "images" / "banded" / "banded_0001.jpg").unlink()
    layouts.build_sun397(root, with_split=False)
    code = main(["data", "check", "--data-root", str(root), "--dataset", "dtd", "--dataset", "sun397",
                 "--dataset", "imagenet"])
    out = capsys.readouterr().out
    assert code == 1
    assert "dtd (DTD): INCOMPLETE" in out
    assert "missing: 1 train image(s) listed in split_zhou_DescribableTextures.json" in out
    assert "banded/banded_0001.jpg" in out
    assert "missing: 1 test image(s) listed in split_zhou_DescribableTextures.json" in out
    assert "bubbly/bubbly_0009.jpg" in out
    assert f"missing: {root / 'sun397' / 'split_zhou_SUN397.json'} (split file; download it from https://drive" in out
    assert f"missing: {root / 'imagenet'} (dataset folder; get it from https://image-net.org/" in out
    assert "0/3 complete; incomplete: dtd, sun397, imagenet" in out


def test_check_without_dataset_covers_the_15_real_datasets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.count("INCOMPLETE") == 15 and "world_" not in out


def test_fewshot_writes_once_then_reuses(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         isolated_cache: Path) -> None:
    root = build_dtd_fixture(tmp_path / "data")
    args = ["data", "fewshot", "--data-root", str(root), "--dataset", "dtd", "--shots", "2", "--seed", "3"]
    assert main(args) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.parent.parent == isolated_cache / "fewshot" / "dtd" and path.name == "shot_2-seed_3.json"
    assert path.parent.name == "split_" + json.loads(path.read_text())["split_sha256"][:16]
    record = json.loads(path.read_text())
    assert {"train", "val", "split_sha256"} <= set(record)
    assert len(record["train"]) == 8 and len(record["val"]) == 8
    assert all(p.count("/") == 1 and not Path(p).is_absolute() for p in record["train"] + record["val"])
    stamp = path.stat().st_mtime_ns
    assert main(args) == 0
    assert Path(capsys.readouterr().out.strip()) == path and path.stat().st_mtime_ns == stamp


def test_fewshot_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "fewshot", "--data-root", str(tmp_path), "--dataset", "imagenet_a",
                 "--shots", "1", "--seed", "1"]) == 2
    assert "imagenet_a is test-only" in capsys.readouterr().err
    assert main(["data", "fewshot", "--data-root", str(tmp_path), "--dataset", "dtd",
                 "--shots", "1", "--seed", "1"]) == 2
    assert "error: dataset folder not found" in capsys.readouterr().err


def test_fewshot_with_generate_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = layouts.build_ucf101(tmp_path / "data", with_split=False)
    args = ["data", "fewshot", "--data-root", str(root), "--dataset", "ucf101", "--shots", "1", "--seed", "1"]
    assert main(args) == 2
    assert "--generate-split" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="NOT comparable"):
        assert main([*args, "--generate-split"]) == 0


def test_check_verify_images_names_corrupt_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = build_dtd_fixture(tmp_path / "data")
    (root / "dtd" / "images" / "braided" / "braided_0005.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    args = ["data", "check", "--data-root", str(root), "--dataset", "dtd"]
    assert main(args) == 0  # the layout is complete; decoding is only checked on request
    capsys.readouterr()
    assert main([*args, "--verify-images"]) == 1
    out = capsys.readouterr().out
    assert "problem: 1 image(s) cannot be decoded (corrupt or truncated): braided/braided_0005.jpg" in out
