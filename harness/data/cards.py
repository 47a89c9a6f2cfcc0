"""Dataset cards: the YAML files in ``datasets/`` that describe each dataset's folder layout.

A card is declarative: where the images and split file live under the data root, which reader parses
them, the prompt template, the expected split sizes and where to download everything. Keys:

Required: ``name`` (registry name, equal to the file stem), ``display_name``, ``folder`` (under the data
root), ``image_dir`` (relative to ``folder``; ``.`` for the folder itself), ``split_file`` (relative to
``folder``, or null for datasets read from other files), ``reader``, ``template`` (``{}`` = class name),
``num_classes``, ``split_sizes`` (``{train, val, test}``), ``class_renames``, ``test_only``, ``embedded``,
``role`` (``source`` | ``target`` | ``domain_shift``), ``download`` (``{images, split}``).

Optional: ``required_files`` (other files the reader needs, relative to ``folder``), ``generate_from``
(files a fresh split is generated from when the user asks for one), ``ignored_folders`` (category folders
the folder-based split generator skips), ``val_is_test`` (ImageNet: val is the test set and few-shot
sampling covers train only), ``image_order`` (how images inside a class folder are ordered),
``base_new_classes`` ([base, new] class counts of the base-to-new protocol), ``split_sha256`` (pins the
split file's checksum; null = not pinned), ``notes``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from harness.errors import DataError
from harness.paths import cards_dir

ROLES = ("source", "target", "domain_shift")


@dataclass(frozen=True)
class DatasetCard:
    """One dataset's card (see the module docstring for the meaning of each key)."""

    name: str
    display_name: str
    folder: str
    image_dir: str
    split_file: str | None
    reader: str
    template: str
    num_classes: int
    split_sizes: dict[str, int]
    class_renames: dict[str, str]
    test_only: bool
    embedded: bool
    role: str
    download: dict[str, str]
    required_files: tuple[str, ...] = ()
    generate_from: tuple[str, ...] = ()
    ignored_folders: tuple[str, ...] = ()
    val_is_test: bool = False
    image_order: str = "split_file"
    base_new_classes: tuple[int, int] | None = None
    split_sha256: str | None = None
    notes: str = ""
    source: Path | None = field(default=None, compare=False)

    def dataset_dir(self, data_root: Path) -> Path:
        """The dataset's folder under ``data_root``."""
        return Path(data_root) / self.folder

    def images_dir(self, data_root: Path) -> Path:
        """The folder image paths in the split are relative to."""
        return (self.dataset_dir(data_root) / self.image_dir) if self.image_dir != "." else self.dataset_dir(data_root)

    def split_path(self, data_root: Path) -> Path | None:
        """The split file's path, or None for datasets without one."""
        return self.dataset_dir(data_root) / self.split_file if self.split_file else None

    def format_prompt(self, classname: str) -> str:
        """The prompt for one class, with ``_`` replaced by spaces as every official trainer does."""
        return self.template.format(classname.replace("_", " "))


_REQUIRED = (
    "name", "display_name", "folder", "image_dir", "split_file", "reader", "template", "num_classes",
    "split_sizes", "class_renames", "test_only", "embedded", "role", "download",
)
_TUPLE_KEYS = ("required_files", "generate_from", "ignored_folders")


def card_from_dict(data: dict[str, Any], source: Path | None = None) -> DatasetCard:
    """Validate a card's mapping and build the ``DatasetCard``.

    Raises:
        DataError: naming the card file and the missing, unknown or malformed key.
    """
    where = f"dataset card {source}" if source else "dataset card"
    if not isinstance(data, dict):
        raise DataError(f"{where}: expected a YAML mapping, got {type(data).__name__}")
    allowed = {f.name for f in fields(DatasetCard)} - {"source"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise DataError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    missing = [key for key in _REQUIRED if key not in data]
    if missing:
        raise DataError(f"{where}: missing key(s) {', '.join(missing)}")
    values = dict(data)
    for key in _TUPLE_KEYS:
        values[key] = tuple(values.get(key) or ())
    if values.get("base_new_classes") is not None:
        values["base_new_classes"] = tuple(values["base_new_classes"])
    values["class_renames"] = dict(values.get("class_renames") or {})
    values["download"] = dict(values.get("download") or {})
    _check_types(values, where)
    return DatasetCard(**values, source=source)


def _check_types(values: dict[str, Any], where: str) -> None:
    for key in ("name", "display_name", "folder", "image_dir", "reader", "template", "role"):
        if not isinstance(values[key], str) or not values[key]:
            raise DataError(f"{where}: key {key!r} must be a non-empty string, got {values[key]!r}")
    if values["split_file"] is not None and not isinstance(values["split_file"], str):
        raise DataError(f"{where}: key 'split_file' must be a string or null, got {values['split_file']!r}")
    if "{}" not in values["template"]:
        raise DataError(f"{where}: template {values['template']!r} has no '{{}}' for the class name")
    if not isinstance(values["num_classes"], int) or values["num_classes"] < 1:
        raise DataError(f"{where}: num_classes must be a positive integer, got {values['num_classes']!r}")
    sizes = values["split_sizes"]
    if not isinstance(sizes, dict) or set(sizes) != {"train", "val", "test"}:
        raise DataError(f"{where}: split_sizes must map exactly train, val, test to integers, got {sizes!r}")
    for key in ("test_only", "embedded", "val_is_test"):
        if not isinstance(values.get(key, False), bool):
            raise DataError(f"{where}: key {key!r} must be true or false, got {values[key]!r}")
    if values["role"] not in ROLES:
        raise DataError(f"{where}: role must be one of {', '.join(ROLES)}, got {values['role']!r}")


def read_card_file(path: Path) -> DatasetCard:
    """Read and validate one card file; its ``name`` must equal the file stem."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read dataset card {path}: {exc}") from exc
    card = card_from_dict(data, source=Path(path))
    if card.name != Path(path).stem:
        raise DataError(f"dataset card {path}: name {card.name!r} differs from the file name {Path(path).stem!r}")
    return card


def card_paths(directory: Path | None = None) -> list[Path]:
    """The card files in ``directory`` (default: the repository's ``datasets/``), sorted by name."""
    folder = Path(directory) if directory is not None else cards_dir()
    return sorted(folder.glob("*.yaml")) if folder.is_dir() else []


def load_card(name: str) -> DatasetCard:
    """The card registered under ``name`` (cards are registered when ``harness.data`` is imported).

    Raises:
        HarnessError: for an unknown name, with the closest registered names.
    """
    import harness.data  # noqa: F401  (registers the cards)
    from harness.registries import DATASETS

    return DATASETS.get(name)
