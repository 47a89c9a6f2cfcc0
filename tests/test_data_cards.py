"""The 15 dataset cards: registered, valid, and faithful to the official templates and sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.data import DatasetCard, load_card
from harness.data.cards import card_from_dict, read_card_file
from harness.errors import DataError, HarnessError
from harness.paths import cards_dir

# CUSTOM_TEMPLATES of CoOp:trainers/zsclip.py, keyed by our registry names.
OFFICIAL_TEMPLATES = {
    "oxford_pets": "a photo of a {}, a type of pet.",
    "oxford_flowers": "a photo of a {}, a type of flower.",
    "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
    "dtd": "{} texture.",
    "eurosat": "a centered satellite photo of {}.",
    "stanford_cars": "a photo of a {}.",
    "food101": "a photo of {}, a type of food.",
    "sun397": "a photo of a {}.",
    "caltech101": "a photo of a {}.",
    "ucf101": "a photo of a person doing {}.",
    "imagenet": "a photo of a {}.",
    "imagenet_sketch": "a photo of a {}.",
    "imagenetv2": "a photo of a {}.",
    "imagenet_a": "a photo of a {}.",
    "imagenet_r": "a photo of a {}.",
}
DISPLAY = {
    "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets", "stanford_cars": "StanfordCars",
    "oxford_flowers": "Flowers102", "food101": "Food101", "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397",
    "dtd": "DTD", "eurosat": "EuroSAT", "ucf101": "UCF101", "imagenetv2": "ImageNetV2",
    "imagenet_sketch": "ImageNet-Sketch", "imagenet_a": "ImageNet-A", "imagenet_r": "ImageNet-R",
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_TEMPLATES))
def test_card_matches_the_official_reader(name: str) -> None:
    card = load_card(name)
    assert isinstance(card, DatasetCard) and card.name == name and not card.embedded
    assert card.template == OFFICIAL_TEMPLATES[name]
    assert card.display_name == DISPLAY[name]
    assert card.test_only == (name in ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"))
    assert card.download.get("images") and card.download.get("split")


def test_split_sizes_and_class_counts_from_the_spec() -> None:
    sizes = {n: tuple(load_card(n).split_sizes.values()) for n in OFFICIAL_TEMPLATES}
    assert sizes["caltech101"] == (4128, 1649, 2465) and sizes["sun397"] == (15880, 3970, 19850)
    assert sizes["imagenet_a"] == (7500, 0, 7500) and sizes["imagenet"][2] == 50000
    assert load_card("imagenet_r").num_classes == 200 and load_card("eurosat").num_classes == 10


def test_prompt_replaces_underscores() -> None:
    assert load_card("food101").format_prompt("apple_pie") == "a photo of apple pie, a type of food."


def test_unknown_dataset_suggests_close_names() -> None:
    with pytest.raises(HarnessError, match="Did you mean.*oxford_pets"):
        load_card("oxford_pet")


def _card_dict() -> dict:
    return yaml.safe_load((cards_dir() / "dtd.yaml").read_text())


def test_unknown_card_key_is_an_error() -> None:
    data = _card_dict() | {"colour": "red"}
    with pytest.raises(DataError, match="unknown key.*colour"):
        card_from_dict(data, Path("dtd.yaml"))


def test_missing_card_key_is_an_error() -> None:
    data = _card_dict()
    del data["template"]
    with pytest.raises(DataError, match="missing key.*template"):
        card_from_dict(data)


def test_bad_role_and_template_are_errors() -> None:
    with pytest.raises(DataError, match="role must be one of"):
        card_from_dict(_card_dict() | {"role": "train"})
    with pytest.raises(DataError, match="has no '{}'"):
        card_from_dict(_card_dict() | {"template": "texture."})


def test_card_name_must_match_file_name(tmp_path: Path) -> None:
    path = tmp_path / "textures.yaml"
    path.write_text(yaml.safe_dump(_card_dict()))
    with pytest.raises(DataError, match="differs from the file name 'textures'"):
        read_card_file(path)
