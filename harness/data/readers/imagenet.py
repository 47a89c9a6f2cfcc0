"""Readers of ImageNet and its four test-only variants (V2, Sketch, A, R), which have no split file.

Class names come from ``classnames.txt`` (lines ``<wnid> <name words...>``, CLIP's cleaned names).

Image order inside a class folder: the official code uses ``os.listdir`` order (Dassl
``listdir_nohidden`` without sorting), which depends on the file system, and ``random.sample`` picks by
position, so the official ImageNet few-shot selection is not portable (spec pitfall 11). We list
images **sorted by file name** so a listing, its checksum and a seed give the same selection on every
machine; the chosen images are recorded in the few-shot JSON index. The class folders are sorted in
both. For V2/Sketch/A/R (test only) the order changes nothing but the order of predictions.
"""

from __future__ import annotations

from pathlib import Path

from harness.data.cards import DatasetCard
from harness.data.readers.base import RawSplits, list_dirs, list_files, read_lines, register_reader
from harness.data.splitio import sha256_items
from harness.data.types import Datum
from harness.errors import DataError

IMAGENET_A_R_IGNORED = ("README.txt",)


def read_classnames(path: Path) -> dict[str, str]:
    """``classnames.txt`` as an ordered ``{wnid: name}`` mapping."""
    names: dict[str, str] = {}
    for number, line in read_lines(path):
        wnid, _, name = line.partition(" ")
        if not name:
            raise DataError(f"{path}:{number}: expected '<wnid> <class name>', got {line!r}")
        names[wnid] = name
    return names


def _read_class_folders(split_dir: Path, folders: list[str], names: dict[str, str], prefix: str,
                        names_file: Path) -> list[Datum]:
    items = []
    for label, folder in enumerate(folders):
        if folder not in names:
            raise DataError(f"class folder {split_dir / folder} has no entry in {names_file}")
        items.extend(Datum(f"{prefix}{folder}/{name}", label, names[folder]) for name in list_files(split_dir / folder))
    return items


def _check_class_count(card: DatasetCard, count: int, where: Path) -> None:
    if count > card.num_classes:
        raise DataError(f"{where} has {count} class folders, expected at most {card.num_classes}")


def read_imagenet(card: DatasetCard, data_root: Path) -> RawSplits:
    """ImageNet: ``images/train`` is train, ``images/val`` is test (and val); label = sorted wnid index."""
    dataset_dir, image_dir = card.dataset_dir(data_root), card.images_dir(data_root)
    names_file = dataset_dir / "classnames.txt"
    names = read_classnames(names_file)
    splits = {}
    for split, sub in (("train", "train"), ("test", "val")):
        folders = list_dirs(image_dir / sub)
        _check_class_count(card, len(folders), image_dir / sub)
        splits[split] = _read_class_folders(image_dir / sub, folders, names, f"{sub}/", names_file)
    return RawSplits(splits["train"], splits["test"], splits["test"], sha256_items(splits), "images/{train,val}")


def read_test_only_folders(card: DatasetCard, data_root: Path) -> RawSplits:
    """Sketch, A, R: label = index in the sorted folder list (README.txt ignored); train = test = all."""
    dataset_dir, image_dir = card.dataset_dir(data_root), card.images_dir(data_root)
    names_file = dataset_dir / "classnames.txt"
    folders = list_dirs(image_dir, IMAGENET_A_R_IGNORED)
    _check_class_count(card, len(folders), image_dir)
    data = _read_class_folders(image_dir, folders, read_classnames(names_file), "", names_file)
    return RawSplits(data, [], data, sha256_items({"test": data}), card.image_dir)


def read_imagenetv2(card: DatasetCard, data_root: Path) -> RawSplits:
    """ImageNetV2: folder ``<label>`` holds class ``label``, named by the ``label``-th line of classnames.txt."""
    dataset_dir, image_dir = card.dataset_dir(data_root), card.images_dir(data_root)
    names = list(read_classnames(dataset_dir / "classnames.txt").values())
    if len(names) > card.num_classes:
        raise DataError(f"{dataset_dir / 'classnames.txt'} has {len(names)} classes, expected {card.num_classes}")
    data = []
    for label, name in enumerate(names):  # the official loop is range(1000) = every line of classnames.txt
        class_dir = image_dir / str(label)
        if not class_dir.is_dir():
            raise DataError(f"class folder not found: {class_dir} (one folder per label 0..{len(names) - 1})")
        data.extend(Datum(f"{label}/{file}", label, name) for file in list_files(class_dir))
    return RawSplits(data, [], data, sha256_items({"test": data}), card.image_dir)


register_reader("imagenet", read=read_imagenet)
register_reader("imagenetv2", read=read_imagenetv2)
register_reader("imagenet_folders", read=read_test_only_folders)
