"""Readers of the 15 official layouts, on fixture folders in those exact layouts."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from data import layouts
from data.builders import FIXTURES

from harness.data import load_card, prepare_task_data
from harness.data.readers import READERS, read_dataset
from harness.data.readers.lists import car_classname, sun_classname, ucf_classname
from harness.errors import DataError
from harness.registries import DATASETS


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_every_real_dataset_has_a_fixture_and_a_reader() -> None:
    real = [name for name in DATASETS.names() if not load_card(name).embedded]
    assert sorted(real) == sorted(FIXTURES)
    assert all(load_card(name).reader in READERS for name in real)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_reader_gives_official_classnames_labels_and_counts(name: str, tmp_path: Path) -> None:
    build, classnames, sizes = FIXTURES[name]
    root = build(tmp_path / "data")
    task = prepare_task_data(name, root)
    assert task.classnames == classnames
    assert (len(task.train), len(task.val), len(task.test)) == sizes
    for items in (task.train, task.val, task.test):
        for item in items:
            assert task.classnames[item.label] == item.classname
            assert not Path(item.impath).is_absolute()
            assert (task.image_dir / item.impath).is_file()
    assert task.template == load_card(name).template
    assert len(task.split_sha256) == 64 and task.fewshot_index is None


def test_split_json_entries_keep_file_order_and_relative_paths(tmp_path: Path) -> None:
    root = layouts.build_stanford_cars(tmp_path)
    task = prepare_task_data("stanford_cars", root)
    # StanfordCars paths are relative to the dataset folder itself (image_dir ".").
    assert task.image_dir == tmp_path / "stanford_cars"
    assert [d.impath for d in task.train[:4]] == [
        "cars_train/00001.jpg", "cars_train/00002.jpg", "cars_train/00003.jpg", "cars_train/00006.jpg"
    ]


def test_imagenet_val_is_test_and_images_sorted_within_class(tmp_path: Path) -> None:
    root = FIXTURES["imagenet"][0](tmp_path)
    task = prepare_task_data("imagenet", root)
    assert task.val == task.test
    assert [d.impath for d in task.train[:3]] == [
        "train/n01440764/n01440764_10026.JPEG",
        "train/n01440764/n01440764_10027.JPEG",
        "train/n01440764/n01440764_10028.JPEG",
    ]
    assert task.test[0].impath.startswith("val/n01440764/")


def test_test_only_sets_ignore_shots_and_subsample(tmp_path: Path) -> None:
    root = FIXTURES["imagenet_r"][0](tmp_path)
    task = prepare_task_data("imagenet_r", root, shots=1, seed=1, subsample="base")
    assert task.train == task.test and task.val == [] and task.fewshot_index is None
    assert task.classnames == ["tench", "great white shark", "hammerhead shark"]


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ("Tesla Model S Sedan 2012", "2012 Tesla Model S Sedan"),
        ("AM General Hummer SUV 2000", "2000 AM General Hummer SUV"),
    ],
)
def test_car_year_moves_to_front(meta: str, expected: str) -> None:
    assert car_classname(meta) == expected


def test_sun_and_ucf_name_rules() -> None:
    assert sun_classname("a/apartment_building/outdoor") == "outdoor apartment_building"
    assert sun_classname("b/bakery/shop") == "shop bakery"
    assert ucf_classname("ApplyEyeMakeup") == "Apply_Eye_Makeup"
    assert ucf_classname("YoYo") == "Yo_Yo"


@pytest.mark.parametrize("name", sorted(layouts.EXPECTED_CLASSNAMES))
def test_generated_split_derives_names_from_original_annotations(name: str, tmp_path: Path) -> None:
    build = getattr(layouts, f"build_{name}")
    root = build(tmp_path / "data", with_split=False)
    with pytest.warns(UserWarning, match="NOT comparable"):
        task = prepare_task_data(name, root, generate_split=True, split_seed=3)
    assert task.classnames == layouts.EXPECTED_CLASSNAMES[name]
    card = load_card(name)
    assert not card.split_path(root).exists()  # never written next to the official file
    n_classes = len(layouts.EXPECTED_CLASSNAMES[name])
    per_class = 9 if name == "dtd" else 7
    assert len(task.train) + len(task.val) + len(task.test) == n_classes * per_class
    assert {d.label for d in task.val} == set(range(n_classes))


def test_generated_split_is_seeded_and_reused(tmp_path: Path, isolated_cache: Path) -> None:
    root = layouts.build_eurosat(tmp_path, with_split=False)
    card = load_card("eurosat")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = read_dataset(card, root, generate_split=True, split_seed=5)
        again = read_dataset(card, root, generate_split=True, split_seed=5)
        other = read_dataset(card, root, generate_split=True, split_seed=6)
    assert first.train == again.train and first.split_sha256 == again.split_sha256
    assert first.split_sha256 != other.split_sha256
    stored = json.loads((isolated_cache / "splits" / "eurosat" / "split_generated-seed_5.json").read_text())
    assert stored["train"][0] == [first.train[0].impath, first.train[0].label, first.train[0].classname]


def test_generated_split_counts_follow_official_rounding(tmp_path: Path) -> None:
    # 7 images per class: round(3.5) = 4 train, round(1.4) = 1 val, 2 test (caltech: 5 classes).
    root = layouts.build_caltech101(tmp_path, with_split=False)
    with pytest.warns(UserWarning):
        task = prepare_task_data("caltech101", root, generate_split=True)
    assert (len(task.train), len(task.val), len(task.test)) == (20, 5, 10)
    assert "BACKGROUND_Google" not in {d.impath.split("/")[0] for d in task.train + task.val + task.test}


def test_missing_split_without_opt_in_is_an_error(tmp_path: Path) -> None:
    root = layouts.build_oxford_pets(tmp_path, with_split=False)
    with pytest.raises(DataError, match="split_zhou_OxfordPets.json") as info:
        prepare_task_data("oxford_pets", root)
    message = str(info.value)
    assert "drive.google.com/file/d/1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs" in message
    assert "--generate-split" in message


def test_embedded_dataset_reads_from_the_cache_after_ensure_world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path
) -> None:
    embedded = [n for n in DATASETS.names() if load_card(n).embedded]
    if not embedded:
        pytest.skip("no embedded dataset card yet (world engineer)")
    import harness.world

    card = load_card(embedded[0])
    calls: list[Path] = []

    def fake_ensure_world(root: Path) -> None:  # writes a tiny split_json layout where the card says
        calls.append(root)
        images = card.images_dir(root)
        split = {"train": [], "val": [], "test": []}
        for label, name in enumerate(["a", "b"]):
            for split_name in split:
                layouts.write_image(images / name / f"{split_name}.jpg")
                split[split_name].append([f"{name}/{split_name}.jpg", label, name])
        card.split_path(root).write_text(json.dumps(split))

    monkeypatch.setattr(harness.world, "ensure_world", fake_ensure_world)
    task = prepare_task_data(card.name, None)
    assert calls == [isolated_cache / "embedded"]
    assert task.image_dir == card.images_dir(isolated_cache / "embedded") and task.classnames == ["a", "b"]
