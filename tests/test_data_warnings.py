"""Kept official behaviour that surprises users gets one warning each (issue 15, item 10)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from clip_files import write_backbone_folder
from data_fixtures import build_dtd_fixture
from PIL import Image

from harness import notices
from harness.cli import main
from harness.data.image_dataset import load_image
from harness.notices import HarnessWarning


@pytest.fixture(autouse=True)
def fresh_notices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    notices.forget()


def harness_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, HarnessWarning)]


def test_16_bit_png_becomes_white_as_officially_with_one_warning(tmp_path: Path) -> None:
    pixels = (np.arange(32 * 32).reshape(32, 32) * 60).astype(np.uint16)
    for name in ("a.png", "b.png"):
        Image.fromarray(pixels).save(tmp_path / name)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        first, second = load_image(tmp_path / "a.png"), load_image(tmp_path / "b.png")
    (message,) = harness_warnings(record)
    assert "a.png is a 16-bit image (PIL mode I;16)" in message and "almost all white" in message
    assert (np.asarray(first) == 255).mean() > 0.99 and np.array_equal(np.asarray(first), np.asarray(second))


def eval_args(tmp_path: Path, shots: str) -> list[str]:
    data = build_dtd_fixture(tmp_path / "data", n_classes=3, per_split=(4, 2, 2), image_size=32)
    backbone = write_backbone_folder(tmp_path / "backbone")
    return ["eval", "--method", "zeroshot", "--dataset", "dtd", "--data-root", str(data), "--model", str(backbone),
            "--shots", shots, "--seed", "1", "--split", "val", "--out", str(tmp_path / "eval")]


@pytest.mark.parametrize(("shots", "expected", "val_images"), [
    ("-1", "--shots -1 means every training image of every class", 6),
    ("50", "dtd: 3 of 3 classes have fewer than 50 training images (fewest 4); those classes use every image", 6),
])
def test_shots_oddities_warn_once_and_keep_the_official_selection(tmp_path: Path, shots: str, expected: str,
                                                                  val_images: int,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert main(eval_args(tmp_path, shots)) == 0
        assert main(eval_args(tmp_path, shots)) == 0
    (message,) = harness_warnings(record)
    assert message.startswith(expected)
    assert f"{val_images} images" in capsys.readouterr().out  # all val images: -1 and 50 keep every one


def test_cli_prints_harness_warnings_as_one_line() -> None:
    saved = warnings.formatwarning
    try:
        notices.format_warnings()
        assert warnings.formatwarning("x happens", HarnessWarning, "f.py", 3) == "warning: x happens\n"
        assert "UserWarning" in warnings.formatwarning("y", UserWarning, "f.py", 3)
    finally:
        warnings.formatwarning = saved
