"""Readers of datasets described by annotation lists: OxfordPets, StanfordCars, SUN397, UCF101, FGVCAircraft.

The first four read their ``split_zhou_*.json``; their annotation files are parsed only to generate a
fresh split on request (trainval split 80/20 per class, as official). FGVCAircraft has no JSON: its
official txt lists are the split, labels are line indices in ``variants.txt``.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from harness.data.cards import DatasetCard
from harness.data.readers.base import RawSplits, Splits, read_lines, register_reader
from harness.data.splitgen import split_trainval
from harness.data.splitio import sha256_files
from harness.data.types import Datum
from harness.errors import DataError


def _trainval_then_test(trainval: list[Datum], test: list[Datum], rng: random.Random) -> Splits:
    train, val = split_trainval(trainval, rng)
    return {"train": train, "val": val, "test": test}


# -- OxfordPets ----------------------------------------------------------------------------------------
def read_pets_annotations(path: Path) -> list[Datum]:
    """Parse ``annotations/{trainval,test}.txt`` lines ``<image> <class id> <species> <breed id>``.

    The class name is the image name without its trailing ``_<n>``, lower-cased; the label is class id - 1.
    """
    items = []
    for number, line in read_lines(path):
        parts = line.split(" ")
        if len(parts) != 4 or not parts[1].isdigit():
            raise DataError(f"{path}:{number}: expected '<image> <class id> <species> <breed id>', got {line!r}")
        breed = "_".join(parts[0].split("_")[:-1]).lower()
        items.append(Datum(parts[0] + ".jpg", int(parts[1]) - 1, breed))
    return items


def generate_pets(card: DatasetCard, data_root: Path, rng: random.Random) -> Splits:
    """Fresh OxfordPets split: trainval.txt split 80/20 per class, test.txt as test."""
    annotations = card.dataset_dir(data_root) / "annotations"
    return _trainval_then_test(
        read_pets_annotations(annotations / "trainval.txt"), read_pets_annotations(annotations / "test.txt"), rng
    )


# -- StanfordCars --------------------------------------------------------------------------------------
def car_classname(meta_name: str) -> str:
    """Move the year from the end to the front: ``Tesla Model S Sedan 2012`` -> ``2012 Tesla Model S Sedan``."""
    words = meta_name.split(" ")
    return " ".join([words[-1], *words[:-1]])


def read_cars_annotations(image_folder: str, anno_file: Path, meta_file: Path) -> list[Datum]:
    """Parse a cars ``.mat`` annotation file (struct ``annotations`` with ``fname`` and 1-based ``class``).

    Class names come from ``cars_meta.mat``'s ``class_names``; paths are ``<image_folder>/<fname>``,
    relative to the dataset folder as in the official split file.
    """
    from scipy.io import loadmat

    try:
        annotations = loadmat(str(anno_file))["annotations"][0]
        class_names = [str(entry[0]) for entry in loadmat(str(meta_file))["class_names"][0]]
    except FileNotFoundError as exc:
        raise DataError(f"file not found: {exc.filename or anno_file}") from exc
    except (KeyError, IndexError, ValueError, OSError) as exc:
        raise DataError(f"cannot read {anno_file} / {meta_file}: {exc}") from exc
    items = []
    for index, entry in enumerate(annotations):
        label = int(entry["class"][0, 0]) - 1
        if not 0 <= label < len(class_names):
            raise DataError(f"{anno_file}: annotation {index} has class {label + 1}, expected 1..{len(class_names)}")
        items.append(Datum(f"{image_folder}/{entry['fname'][0]}", label, car_classname(class_names[label])))
    return items


def generate_cars(card: DatasetCard, data_root: Path, rng: random.Random) -> Splits:
    """Fresh StanfordCars split: cars_train split 80/20 per class, cars_test as test."""
    folder = card.dataset_dir(data_root)
    meta = folder / "devkit" / "cars_meta.mat"
    trainval = read_cars_annotations("cars_train", folder / "devkit" / "cars_train_annos.mat", meta)
    test = read_cars_annotations("cars_test", folder / "cars_test_annos_withlabels.mat", meta)
    return _trainval_then_test(trainval, test, rng)


# -- SUN397 --------------------------------------------------------------------------------------------
def sun_classname(category: str) -> str:
    """``a/apartment_building/outdoor`` -> ``outdoor apartment_building`` (parts after the letter, reversed)."""
    return " ".join(category.split("/")[1:][::-1])


def read_sun_list(path: Path, label_of: dict[str, int]) -> list[Datum]:
    """Parse ``Training_01.txt`` / ``Testing_01.txt`` lines ``/<l>/<category>[/<sub>]/<image>.jpg``."""
    items = []
    for number, line in read_lines(path):
        relpath = line[1:]  # drop the leading "/"
        category = relpath.rsplit("/", 1)[0]
        if category not in label_of:
            raise DataError(f"{path}:{number}: category {category!r} is not in ClassName.txt")
        items.append(Datum(relpath, label_of[category], sun_classname(category)))
    return items


def generate_sun397(card: DatasetCard, data_root: Path, rng: random.Random) -> Splits:
    """Fresh SUN397 split: partition 01, training list split 80/20 per class, testing list as test."""
    folder = card.dataset_dir(data_root)
    label_of = {line[1:]: index for index, (_, line) in enumerate(read_lines(folder / "ClassName.txt"))}
    trainval = read_sun_list(folder / "Training_01.txt", label_of)
    return _trainval_then_test(trainval, read_sun_list(folder / "Testing_01.txt", label_of), rng)


# -- UCF101 --------------------------------------------------------------------------------------------
def ucf_classname(action: str) -> str:
    """Split a CamelCase action into words joined by ``_``: ``ApplyEyeMakeup`` -> ``Apply_Eye_Makeup``."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


def read_ucf_list(path: Path, label_of: dict[str, int]) -> list[Datum]:
    """Parse ``trainlist01.txt`` / ``testlist01.txt`` lines ``<Action>/<video>.avi [label]``.

    The mid-frame image is ``<Action_Words>/<video>.jpg`` under ``UCF-101-midframes``.
    """
    items = []
    for number, line in read_lines(path):
        action, _, video = line.split(" ")[0].partition("/")
        if action not in label_of or not video:
            raise DataError(f"{path}:{number}: expected '<Action>/<video>.avi', Action in classInd.txt; got {line!r}")
        name = ucf_classname(action)
        items.append(Datum(f"{name}/{video.replace('.avi', '.jpg')}", label_of[action], name))
    return items


def generate_ucf101(card: DatasetCard, data_root: Path, rng: random.Random) -> Splits:
    """Fresh UCF101 split: split 01, train list split 80/20 per class, test list as test."""
    lists = card.dataset_dir(data_root) / "ucfTrainTestlist"
    label_of = {}
    for number, line in read_lines(lists / "classInd.txt"):
        parts = line.split(" ")
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{lists / 'classInd.txt'}:{number}: expected '<index> <Action>', got {line!r}")
        label_of[parts[1]] = int(parts[0]) - 1
    trainval = read_ucf_list(lists / "trainlist01.txt", label_of)
    return _trainval_then_test(trainval, read_ucf_list(lists / "testlist01.txt", label_of), rng)


# -- FGVCAircraft --------------------------------------------------------------------------------------
AIRCRAFT_FILES = ("variants.txt", "images_variant_train.txt", "images_variant_val.txt", "images_variant_test.txt")


def read_aircraft_list(path: Path, label_of: dict[str, int]) -> list[Datum]:
    """Parse ``images_variant_<split>.txt`` lines ``<image id> <variant words...>``."""
    items = []
    for number, line in read_lines(path):
        image_id, _, variant = line.partition(" ")
        if variant not in label_of:
            raise DataError(f"{path}:{number}: variant {variant!r} is not in variants.txt")
        items.append(Datum(f"{image_id}.jpg", label_of[variant], variant))
    return items


def read_aircraft(card: DatasetCard, data_root: Path) -> RawSplits:
    """FGVCAircraft from its official txt lists; label = line index of the variant in ``variants.txt``."""
    folder = card.dataset_dir(data_root)
    variants = [line for _, line in read_lines(folder / "variants.txt")]
    if len(variants) > card.num_classes:
        raise DataError(f"{folder / 'variants.txt'} lists {len(variants)} variants, expected {card.num_classes}")
    label_of = {name: index for index, name in enumerate(variants)}
    splits = [read_aircraft_list(folder / f"images_variant_{s}.txt", label_of) for s in ("train", "val", "test")]
    return RawSplits(*splits, sha256_files([folder / name for name in AIRCRAFT_FILES]), "images_variant_*.txt")


register_reader("oxford_pets", generate=generate_pets)
register_reader("stanford_cars", generate=generate_cars)
register_reader("sun397", generate=generate_sun397)
register_reader("ucf101", generate=generate_ucf101)
register_reader("fgvc_aircraft", read=read_aircraft)
