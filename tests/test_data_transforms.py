"""Transforms sized to the model, and the ``ImageDataset`` that applies them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_fixtures import build_dtd_fixture, write_image
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import InterpolationMode

from harness.data import ImageDataset, build_pipeline, build_transform, load_image, prepare_task_data
from harness.errors import ConfigError
from harness.models.backbone import Preprocessing

CLIP = Preprocessing(24, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


def test_train_transform_is_random_resized_crop_flip_normalize() -> None:
    steps = build_transform(CLIP, train=True).transforms
    names = [type(t).__name__ for t in steps]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    crop = steps[0]
    assert crop.size == (24, 24) and crop.scale == (0.08, 1.0) and crop.interpolation == InterpolationMode.BICUBIC
    assert crop.ratio == pytest.approx((3 / 4, 4 / 3)) and steps[1].p == 0.5
    assert steps[3].mean == list(CLIP.mean) and steps[3].std == list(CLIP.std)


def test_test_transform_resizes_shorter_side_then_centre_crops() -> None:
    steps = build_transform(CLIP, train=False).transforms
    assert [type(t).__name__ for t in steps] == ["Resize", "CenterCrop", "ToTensor", "Normalize"]
    assert steps[0].size == 24 and steps[0].interpolation == InterpolationMode.BICUBIC
    # A 48x96 image: shorter side -> 24 keeps the aspect ratio (24x48), then the centre 24x24 is kept.
    image = Image.new("RGB", (96, 48), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 16, 48))  # a blue band at the left edge, cut off by the centre crop
    out = build_transform(Preprocessing(24, (0, 0, 0), (1, 1, 1)), train=False)(image)
    assert out.shape == (3, 24, 24)
    assert torch.allclose(out[0], torch.ones(24, 24), atol=0.02) and out[2].abs().max() < 0.02


def test_sizes_follow_the_model_not_224() -> None:
    image = Image.new("RGB", (50, 70))
    for size in (16, 40):
        prep = Preprocessing(size, CLIP.mean, CLIP.std)
        assert build_transform(prep, train=True)(image).shape == (3, size, size)
        assert build_transform(prep, train=False)(image).shape == (3, size, size)


def test_unknown_interpolation_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown interpolation 'lanczos9'"):
        build_transform(Preprocessing(24, CLIP.mean, CLIP.std, "lanczos9"), train=False)


def test_images_are_converted_to_rgb(tmp_path: Path) -> None:
    Image.new("L", (8, 8), 200).save(tmp_path / "grey.png")
    Image.new("RGBA", (8, 8), (1, 2, 3, 0)).save(tmp_path / "alpha.png")
    write_image(tmp_path / "c.jpg")
    assert {load_image(tmp_path / n).mode for n in ("grey.png", "alpha.png", "c.jpg")} == {"RGB"}


def test_image_dataset_yields_image_label_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    task = prepare_task_data("dtd", build_dtd_fixture(tmp_path / "data"))
    dataset = ImageDataset(task.test, task.image_dir, build_transform(CLIP, train=False))
    assert len(dataset) == 12
    image, label, index = dataset[5]
    assert image.shape == (3, 24, 24) and image.dtype == torch.float32
    assert (label, index) == (task.test[5].label, 5)
    assert dataset.impath(5) == task.image_dir / task.test[5].impath
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch[0].shape == (4, 3, 24, 24) and batch[2].tolist() == [0, 1, 2, 3]


def _random_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("train", [False, True])
def test_pipeline_gives_the_official_transforms_pixels_bit_for_bit(train: bool) -> None:
    """Per-image PIL steps to uint8, then one batched ToTensor + Normalize: the same float32 values exactly."""
    rng = np.random.default_rng(0)
    images = [_random_image(rng, w, h) for w, h in ((40, 36), (24, 24), (97, 31), (31, 97), (300, 200))]
    official = build_transform(CLIP, train=train, crop_scale=(0.08, 1.0))
    pipeline = build_pipeline(CLIP, train=train, crop_scale=(0.08, 1.0))
    torch.manual_seed(3)  # the random crop and flip draw the same numbers on both sides
    expected = torch.stack([official(image) for image in images])
    torch.manual_seed(3)
    uint8 = torch.stack([pipeline.per_image(image) for image in images])
    assert uint8.dtype == torch.uint8 and uint8.shape == (5, 24, 24, 3)
    got = pipeline.normalize(uint8)
    assert got.dtype == torch.float32 and got.is_contiguous()
    assert torch.equal(got, expected)


def test_pipeline_in_a_loader_matches_the_dataset_with_the_official_transform(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    task = prepare_task_data("dtd", build_dtd_fixture(tmp_path / "data"))
    official = ImageDataset(task.test, task.image_dir, build_transform(CLIP, train=False))
    pipeline = build_pipeline(CLIP, train=False)
    loader = DataLoader(ImageDataset(task.test, task.image_dir, pipeline.per_image), batch_size=5)
    got = torch.cat([pipeline.normalize(images) for images, _, _ in loader])
    assert torch.equal(got, torch.stack([official[i][0] for i in range(len(official))]))


def test_batch_normalize_rejects_what_it_cannot_normalise() -> None:
    normalize = build_pipeline(CLIP, train=False).normalize
    with pytest.raises(ValueError, match=r"expected a uint8 batch \(B, H, W, 3\), got torch.float32"):
        normalize(torch.zeros(2, 24, 24, 3))
    with pytest.raises(ValueError, match=r"got torch.uint8 \(2, 3, 24, 24\)"):
        normalize(torch.zeros(2, 3, 24, 24, dtype=torch.uint8))
    with pytest.raises(ConfigError, match=r"std \[1, 0, 1\] has a zero"):
        build_pipeline(Preprocessing(24, CLIP.mean, (1, 0, 1)), train=False)
