"""Reading and writing split files, checksums and atomic JSON writes.

A ``split_zhou_<Name>.json`` file is ``{"train"|"val"|"test": [[relative_impath, label, classname], ...]}``,
paths relative to the dataset's image folder. The official code joins the prefix back and casts the
label with ``int``; we keep the relative path (``Datum.impath``) and validate every entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from harness.data.types import Datum
from harness.errors import DataError

SPLITS = ("train", "val", "test")


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_files(paths: list[Path]) -> str:
    """One sha256 over several files (name and bytes of each, in the given order)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode() + b"\0")
        digest.update(bytes.fromhex(sha256_file(path)))
    return digest.hexdigest()


def sha256_items(splits: dict[str, list[Datum]]) -> str:
    """A sha256 of a listing (for datasets read from folders): one JSON line per (path, label, classname)."""
    digest = hashlib.sha256()
    for name in sorted(splits):  # incremental: an ImageNet listing has 1.3M entries
        digest.update(f"[{name}]\n".encode())
        for item in splits[name]:
            digest.update(json.dumps([item.impath, item.label, item.classname]).encode() + b"\n")
    return digest.hexdigest()


def write_json_atomic(path: Path, data: Any, indent: int | None = 4) -> None:
    """Write JSON to ``path`` through a temporary file and ``os.replace``, so no half-written file remains."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            json.dump(data, out, indent=indent)
            out.write("\n")
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    """Load a JSON file; a missing or malformed file is a ``DataError`` naming it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise DataError(f"file not found: {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot parse JSON file {path}: {exc}") from exc


def parse_split_entries(entries: Any, split: str, path: Path, num_classes: int) -> list[Datum]:
    """Validate the ``[impath, label, classname]`` entries of one split and build ``Datum`` items.

    Raises:
        DataError: naming the file, split, entry index and what is wrong with it.
    """
    if not isinstance(entries, list):
        raise DataError(f"split file {path}: '{split}' must be a list, got {type(entries).__name__}")
    items = []
    for index, entry in enumerate(entries):
        where = f"split file {path}: {split}[{index}]"
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            raise DataError(f"{where} must be [relative_impath, label, classname], got {entry!r}")
        impath, label, classname = entry
        if not isinstance(impath, str) or not impath or os.path.isabs(impath):
            raise DataError(f"{where}: image path must be a non-empty relative path, got {impath!r}")
        try:
            label = int(label)  # the official reader casts with int()
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: label {label!r} is not an integer") from exc
        if not 0 <= label < num_classes:
            raise DataError(f"{where}: label {label} is out of range; expected 0..{num_classes - 1} ({impath})")
        items.append(Datum(impath=impath, label=label, classname=str(classname)))
    return items


def read_split_json(path: Path, num_classes: int) -> dict[str, list[Datum]]:
    """Read a ``split_zhou_*.json`` file into ``{"train", "val", "test"}`` lists of ``Datum``."""
    data = read_json(path)
    if not isinstance(data, dict) or any(split not in data for split in SPLITS):
        raise DataError(f"split file {path}: expected a mapping with keys train, val, test")
    return {split: parse_split_entries(data[split], split, path, num_classes) for split in SPLITS}


def split_to_json(splits: dict[str, list[Datum]]) -> dict[str, list[list[Any]]]:
    """The JSON form of splits, as the official ``save_split`` writes it."""
    return {name: [[d.impath, d.label, d.classname] for d in splits[name]] for name in SPLITS}


def missing_images(items: list[Datum], image_dir: Path) -> list[str]:
    """Relative paths of the items whose image file does not exist, in order, without repeats."""
    seen: set[str] = set()
    missing = []
    for item in items:
        if item.impath not in seen:
            seen.add(item.impath)
            if not (image_dir / item.impath).is_file():
                missing.append(item.impath)
    return missing


def require_images(splits: dict[str, list[Datum]], image_dir: Path, source: str) -> None:
    """Raise a ``DataError`` naming the first missing image (and how many are missing) in any split."""
    for name, items in splits.items():
        missing = missing_images(items, image_dir)
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DataError(
                f"image listed in {source} ({name}) not found: {image_dir / missing[0]}{more}"
            )
