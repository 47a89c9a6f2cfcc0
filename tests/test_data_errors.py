"""Every kind of bad dataset input is a ``DataError`` that names the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data import imagenet_layouts, layouts
from data_fixtures import build_dtd_fixture

from harness.data import ImageDataset, load_image, prepare_task_data
from harness.errors import DataError

SPLIT = "split_zhou_DescribableTextures.json"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _edit_split(root: Path, edit: object) -> Path:
    path = root / "dtd" / SPLIT
    data = json.loads(path.read_text())
    edit(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))
    return path


def test_missing_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset folder not found: .*/dtd .*dtd-r1\.0\.1\.tar\.gz"):
        prepare_task_data("dtd", tmp_path)


def test_real_dataset_without_data_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset dtd is not embedded: pass --data-root"):
        prepare_task_data("dtd", None)


def test_split_entry_whose_image_is_missing(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path)
    (root / "dtd" / "images" / "blotchy" / "blotchy_0002.jpg").unlink()
    with pytest.raises(DataError, match=rf"{SPLIT} \(train\) not found: .*images/blotchy/blotchy_0002\.jpg"):
        prepare_task_data("dtd", root)


def test_label_out_of_range(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path)
    _edit_split(root, lambda d: d["val"][1].__setitem__(1, 47))
    with pytest.raises(DataError, match=rf"{SPLIT}: val\[1\]: label 47 is out of range; expected 0\.\.46"):
        prepare_task_data("dtd", root)


def test_label_that_is_not_an_integer(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path)
    _edit_split(root, lambda d: d["test"][0].__setitem__(1, "banded"))
    with pytest.raises(DataError, match=rf"{SPLIT}: test\[0\]: label 'banded' is not an integer"):
        prepare_task_data("dtd", root)


def test_test_label_without_a_train_class(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path, n_classes=2)
    _edit_split(root, lambda d: d["test"][0].__setitem__(1, 5))
    expected = r"test image banded/banded_0007\.jpg has label 5, but train has classes 0\.\.1"
    with pytest.raises(DataError, match=expected):
        prepare_task_data("dtd", root)


def test_malformed_entry_and_malformed_json(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path)
    path = _edit_split(root, lambda d: d["train"].__setitem__(0, ["banded/banded_0001.jpg", 0]))
    with pytest.raises(DataError, match=r"train\[0\] must be \[relative_impath, label, classname\]"):
        prepare_task_data("dtd", root)
    path.write_text('{"train": [')
    with pytest.raises(DataError, match=rf"cannot parse JSON file .*{SPLIT}"):
        prepare_task_data("dtd", root)


def test_absolute_path_in_split_is_refused(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path)
    _edit_split(root, lambda d: d["train"][0].__setitem__(0, "/etc/passwd"))
    with pytest.raises(DataError, match="must be a non-empty relative path"):
        prepare_task_data("dtd", root)


def test_corrupt_image(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path)
    bad = root / "dtd" / "images" / "banded" / "banded_0001.jpg"
    bad.write_bytes(b"this is not a jpeg")
    task = prepare_task_data("dtd", root)
    with pytest.raises(DataError, match=r"cannot decode image .*banded_0001\.jpg"):
        ImageDataset(task.train, task.image_dir, None)[0]


def test_truncated_image(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    from PIL import Image

    Image.effect_noise((64, 64), 50).convert("RGB").save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cannot decode image .*big\.jpg \(corrupt or truncated\?\)"):
        load_image(path)


def test_image_deleted_after_reading(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path)
    task = prepare_task_data("dtd", root)
    (task.image_dir / task.test[0].impath).unlink()
    with pytest.raises(DataError, match=r"image not found: .*banded_0007\.jpg"):
        ImageDataset(task.test, task.image_dir, None)[0]


def test_bad_annotation_lines_name_file_and_line(tmp_path: Path) -> None:
    root = imagenet_layouts.build_fgvc_aircraft(tmp_path)
    with open(root / "fgvc_aircraft" / "images_variant_val.txt", "a") as out:
        out.write("1099999 Spitfire\n")
    with pytest.raises(DataError, match=r"images_variant_val\.txt:7: variant 'Spitfire' is not in variants\.txt"):
        prepare_task_data("fgvc_aircraft", root)


def test_missing_aircraft_list(tmp_path: Path) -> None:
    root = imagenet_layouts.build_fgvc_aircraft(tmp_path)
    (root / "fgvc_aircraft" / "images_variant_test.txt").unlink()
    with pytest.raises(DataError, match=r"file not found: .*images_variant_test\.txt"):
        prepare_task_data("fgvc_aircraft", root)


def test_imagenet_folder_without_a_class_name(tmp_path: Path) -> None:
    root = imagenet_layouts.build_imagenet_sketch(tmp_path)
    (root / "imagenet-sketch" / "images" / "n99999999").mkdir()
    with pytest.raises(DataError, match=r"n99999999 has no entry in .*classnames\.txt"):
        prepare_task_data("imagenet_sketch", root)


def test_bad_pets_annotation_when_generating(tmp_path: Path) -> None:
    root = layouts.build_oxford_pets(tmp_path, with_split=False)
    with open(root / "oxford_pets" / "annotations" / "trainval.txt", "a") as out:
        out.write("Abyssinian_999 one 1 1\n")
    with pytest.raises(DataError, match=r"trainval\.txt:16: expected '<image> <class id> <species> <breed id>'"):
        prepare_task_data("oxford_pets", root, generate_split=True)


def test_unknown_subsample(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown subsample 'old'"):
        prepare_task_data("dtd", build_dtd_fixture(tmp_path), subsample="old")


def test_label_with_two_class_names(tmp_path: Path) -> None:
    root = build_dtd_fixture(tmp_path)
    _edit_split(root, lambda d: d["val"][0].__setitem__(2, "stripy"))
    with pytest.raises(DataError, match="val image banded/banded_0005.jpg has label 0 named 'stripy', but train names"):
        prepare_task_data("dtd", root)
