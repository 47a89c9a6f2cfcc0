"""Importing an official few-shot selection (``split_fewshot/shot_K-seed_S.pkl``) into our JSON index.

The official code pickles ``{"train": [Datum, ...], "val": [Datum, ...]}`` (ImageNet: train only) with
Dassl ``Datum`` objects holding ABSOLUTE paths. Those files are read here with a restricted unpickler
that resolves exactly one global, ``dassl.data.datasets.base_dataset.Datum``, to an inert stand-in that
only stores its attribute dict; any other global (``os.system``, ``builtins.eval``, ...) is refused, so
reading a pickle can never run code. The absolute paths are cut back to paths relative to the dataset's
image folder and checked against the split file before the selection is recorded.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from harness.data.cards import DatasetCard
from harness.data.fewshot import INDEX_VERSION, fewshot_index_path
from harness.data.readers import read_dataset
from harness.data.splitio import write_json_atomic
from harness.data.types import Datum
from harness.errors import DataError

DATUM_GLOBAL = ("dassl.data.datasets.base_dataset", "Datum")
MAX_PICKLE_BYTES = 512 * 1024 * 1024


class PickledDatum:
    """Inert stand-in for Dassl's ``Datum``: keeps the pickled attribute dict, nothing else."""

    __slots__ = ("state",)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or "_impath" not in state or "_label" not in state:
            raise pickle.UnpicklingError(f"a Datum state must be a dict with _impath and _label, got {state!r}")
        self.state = state


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only Dassl's ``Datum`` class (to ``PickledDatum``)."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102  (pickle API)
        if (module, name) == DATUM_GLOBAL:
            return PickledDatum
        raise pickle.UnpicklingError(f"refused global {module}.{name} (only {'.'.join(DATUM_GLOBAL)} is allowed)")

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102  (pickle API)
        raise pickle.UnpicklingError("persistent ids are not allowed")


def load_official_pickle(path: Path) -> dict[str, list[tuple[str, int]]]:
    """Read an official few-shot pickle into ``{"train": [(abs impath, label)], "val": [...]}`` safely."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"official few-shot file not found: {path}")
    if path.stat().st_size > MAX_PICKLE_BYTES:
        raise DataError(f"{path} is larger than {MAX_PICKLE_BYTES} bytes; refusing to read it")
    try:
        data = RestrictedUnpickler(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError, IndexError) as exc:
        raise DataError(f"cannot read official few-shot file {path}: {exc}") from exc
    if not isinstance(data, dict) or "train" not in data:
        raise DataError(f"{path}: expected a dict with 'train' (and 'val') lists of Datum")
    out: dict[str, list[tuple[str, int]]] = {}
    for key in ("train", "val"):
        if key in data:
            if not isinstance(data[key], list) or not all(isinstance(d, PickledDatum) for d in data[key]):
                raise DataError(f"{path}: {key!r} must be a list of Datum objects")
            out[key] = [(str(d.state["_impath"]), int(d.state["_label"])) for d in data[key]]
    return out


def relative_to_image_dir(impath: str, card: DatasetCard, source: Path) -> str:
    """Cut an official absolute path back to the part after ``<folder>/<image_dir>/``."""
    marker = f"/{card.folder}/" + ("" if card.image_dir == "." else f"{card.image_dir}/")
    position = impath.replace("\\", "/").rfind(marker)
    if position < 0:
        raise DataError(f"{source}: path {impath!r} does not contain {marker!r}; is this file for {card.name}?")
    return impath.replace("\\", "/")[position + len(marker):]


def _match(entries: list[tuple[str, int]], split: list[Datum], card: DatasetCard, source: Path, key: str) -> list[str]:
    by_path = {item.impath: item for item in split}
    paths = []
    for impath, label in entries:
        relative = relative_to_image_dir(impath, card, source)
        item = by_path.get(relative)
        if item is None or item.label != label:
            raise DataError(f"{source}: {key} image {relative!r} (label {label}) is not in {card.name}'s {key} split")
        paths.append(relative)
    return paths


def import_official_fewshot(card: DatasetCard, data_root: Path, shots: int, seed: int,
                            pickle_path: Path | None = None) -> Path:
    """Record the selection of an official ``shot_K-seed_S.pkl`` as our index for (dataset, K, seed).

    Args:
        card: the dataset's card.
        data_root: folder holding the dataset folders (the split must be there to validate against).
        shots: K of the pickle.
        seed: seed of the pickle.
        pickle_path: the pickle (default ``<dataset folder>/split_fewshot/shot_K-seed_S.pkl``).

    Returns:
        The path of the written index.
    """
    if card.test_only:
        raise DataError(f"{card.name} is test-only: it has no few-shot selection")
    default = card.dataset_dir(data_root) / "split_fewshot" / f"shot_{shots}-seed_{seed}.pkl"
    source = Path(pickle_path) if pickle_path else default
    selection = load_official_pickle(source)
    raw = read_dataset(card, data_root)
    train = _match(selection["train"], raw.train, card, source, "train")
    if card.val_is_test:
        val = None
    elif "val" not in selection:
        raise DataError(f"{source}: has no 'val' list, which {card.name} needs")
    else:
        val = _match(selection["val"], raw.val, card, source, "val")
    path = fewshot_index_path(card.name, shots, seed, raw.split_sha256)
    record = {"version": INDEX_VERSION, "dataset": card.name, "shots": shots, "seed": seed,
              "split_sha256": raw.split_sha256, "source": f"official pickle {source.name}", "train": train, "val": val}
    write_json_atomic(path, record, indent=1)
    return path
