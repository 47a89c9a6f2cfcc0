"""The reader registry and the generic ``split_json`` reader.

A reader turns a dataset folder into train/val/test lists of ``Datum`` (paths relative to the card's
image folder) plus the checksum of what it read. Readers of ``split_zhou_*.json`` datasets share the
JSON reading and differ only in how a fresh split is generated from the original annotations, which
happens only when the user asks for it (``generate_split=True``), never as a silent fallback.
"""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.data.cards import DatasetCard
from harness.data.splitio import read_split_json, sha256_file, split_to_json, write_json_atomic
from harness.data.types import Datum
from harness.errors import DataError
from harness.paths import cache_dir

Splits = dict[str, list[Datum]]
Generator = Callable[[DatasetCard, Path, random.Random], Splits]


@dataclass
class RawSplits:
    """What a reader returns: the three splits, the checksum of their source and a name for messages."""

    train: list[Datum]
    val: list[Datum]
    test: list[Datum]
    split_sha256: str
    source: str

    def as_dict(self) -> Splits:
        """The splits by name."""
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass(frozen=True)
class Reader:
    """A registered reader: ``read(card, data_root)`` and, for split-file datasets, a split generator."""

    name: str
    read: Callable[[DatasetCard, Path], RawSplits]
    generate: Generator | None = None


READERS: dict[str, Reader] = {}


def register_reader(name: str, read: Callable[[DatasetCard, Path], RawSplits] | None = None,
                    generate: Generator | None = None) -> Reader:
    """Register a reader; without ``read`` it reads the card's split JSON (``generate`` makes fresh splits)."""
    if name in READERS:
        raise DataError(f"dataset reader {name!r} is registered twice")
    READERS[name] = Reader(name, read or read_json_split, generate)
    return READERS[name]


def get_reader(card: DatasetCard) -> Reader:
    """The reader a card names."""
    if card.reader not in READERS:
        raise DataError(
            f"dataset card {card.source or card.name}: unknown reader {card.reader!r}; "
            f"known readers: {', '.join(sorted(READERS))}"
        )
    return READERS[card.reader]


def read_json_split(card: DatasetCard, data_root: Path) -> RawSplits:
    """Read ``<root>/<folder>/<split_file>`` (the ``split_json`` reader)."""
    path = card.split_path(data_root)
    if path is None:
        raise DataError(f"dataset card {card.source or card.name}: reader {card.reader!r} needs a split_file")
    if not path.is_file():
        raise DataError(missing_split_message(card, path))
    splits = read_split_json(path, card.num_classes)
    return RawSplits(splits["train"], splits["val"], splits["test"], sha256_file(path), path.name)


def missing_split_message(card: DatasetCard, path: Path) -> str:
    """The error for a missing split file: where to get it and how to opt into a fresh random split."""
    where = card.download.get("split", "the link in the dataset card")
    message = f"split file not found: {path}. Download {path.name} from {where} and put it in {path.parent}"
    if READERS.get(card.reader) is not None and READERS[card.reader].generate is not None:
        message += (
            "; or pass --generate-split (generate_split=True) to create a fresh random split, whose "
            "numbers are NOT comparable with published ones"
        )
    return message


def generated_split_path(card: DatasetCard, seed: int) -> Path:
    """Where a generated split is kept: in the cache, never next to the official file it stands in for."""
    return cache_dir() / "splits" / card.name / f"split_generated-seed_{seed}.json"


def read_dataset(card: DatasetCard, data_root: Path, *, generate_split: bool = False, split_seed: int = 1) -> RawSplits:
    """Read a dataset with its card's reader; generate a split only when asked and the official one is missing.

    Args:
        card: the dataset card.
        data_root: the folder holding the dataset folders.
        generate_split: allow a fresh random split when the split file is missing (warns).
        split_seed: seed of that fresh split.
    """
    dataset_dir = card.dataset_dir(data_root)
    if not dataset_dir.is_dir():
        raise DataError(
            f"dataset folder not found: {dataset_dir} (dataset {card.name}); "
            f"get the images from {card.download.get('images', 'the link in its card')}"
        )
    reader = get_reader(card)
    path = card.split_path(data_root)
    if path is None or path.is_file() or not generate_split or reader.generate is None:
        return reader.read(card, data_root)
    generated = generated_split_path(card, split_seed)
    if not generated.is_file():
        splits = reader.generate(card, data_root, random.Random(split_seed))
        write_json_atomic(generated, split_to_json(splits))
    warnings.warn(
        f"{path.name} not found; using a freshly generated random split {generated} (seed {split_seed}). "
        "Numbers obtained with it are NOT comparable with published results.",
        stacklevel=2,
    )
    splits = read_split_json(generated, card.num_classes)
    return RawSplits(splits["train"], splits["val"], splits["test"], sha256_file(generated), generated.name)


def list_dirs(folder: Path, ignored: tuple[str, ...] = ()) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``folder`` (a missing folder is a ``DataError``)."""
    if not folder.is_dir():
        raise DataError(f"folder not found: {folder}")
    return sorted(
        e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".") and e.name not in ignored
    )


def list_files(folder: Path) -> list[str]:
    """Sorted names of the non-hidden files in ``folder`` (sorted so the listing is the same on every machine)."""
    if not folder.is_dir():
        raise DataError(f"folder not found: {folder}")
    return sorted(e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))


def read_lines(path: Path) -> list[tuple[int, str]]:
    """The non-empty stripped lines of a text file with their 1-based line numbers."""
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise DataError(f"file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


def generate_from_folders(card: DatasetCard, data_root: Path, rng: random.Random) -> Splits:
    """DTD-style fresh split of ``<image_dir>/<category>/*``: sorted categories, per class 50/20/30.

    Labels are indices in the sorted category list, taken before ``class_renames`` is applied, and the
    card's ``ignored_folders`` are skipped (Caltech101's BACKGROUND_Google and Faces_easy).
    """
    image_dir = card.images_dir(data_root)
    groups = []
    for label, category in enumerate(list_dirs(image_dir, card.ignored_folders)):
        files = [f"{category}/{name}" for name in list_files(image_dir / category)]
        groups.append((label, card.class_renames.get(category, category), files))
    from harness.data.splitgen import split_per_class

    train, val, test = split_per_class(groups, rng)
    return {"train": train, "val": val, "test": test}
