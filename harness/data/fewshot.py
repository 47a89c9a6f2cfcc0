"""Few-shot sampling exactly as the official code does it, and the JSON index that records a selection.

Sampling (Dassl ``generate_fewshot_dataset`` with ``repeat=False``): group the items by label in order
of first appearance, take ``rng.sample(items, K)`` per class (all items when a class has fewer than K),
and concatenate the classes in that order. The official code draws from the global ``random`` right
after ``random.seed(seed)``; ``random.Random(seed)`` yields the same stream, so passing a fresh
``random.Random(seed)`` and sampling train (K) then val (min(K, 4)) from it reproduces the official
selection for the same split file.

The index at ``<cache>/fewshot/<dataset>/split_<sha>/shot_<K>-seed_<S>[-draw_<D>].json`` stores the selected
image paths (relative to the dataset's image folder) under ``train`` and ``val`` (``val`` is null when val is
not sampled, ImageNet), and the split file's sha256 it was drawn from. ``<sha>`` is the start of that sha256:
the same dataset under two data roots with different split files keeps two indexes instead of one
overwriting the other. An index written before the split checksum was part of the path
(``<dataset>/shot_<K>-seed_<S>.json``) is still read when it was drawn from the same split file.

Draws (``harness run --draws N``, an extension beyond the official single draw per seed): draw 0 is the
official selection above; draw d > 0 of seed s samples the same way from ``random.Random("fewshot-seed<s>-
draw<d>")`` (a string seed: Python hashes it with sha512, so the stream is fixed across machines and runs, and
no (seed, draw) pair shares the stream of another or of an official seed). Its index has ``-draw_<d>`` in its
name.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from pathlib import Path

from harness.data.splitio import read_json, write_json_atomic
from harness.data.types import Datum
from harness.errors import DataError
from harness.paths import cache_dir

INDEX_VERSION = 1


def sample_few_shot(items: Sequence[Datum], shots: int, rng: random.Random) -> list[Datum]:
    """Sample ``shots`` items per class from ``items`` with ``rng`` (no I/O, no global state).

    Args:
        items: the split to sample from, in file order.
        shots: items per class; a class with fewer keeps all its items.
        rng: the generator to draw from (advanced in place).
    """
    if shots < 1:
        raise ValueError(f"shots must be at least 1, got {shots}")
    by_label: dict[int, list[Datum]] = {}
    for item in items:  # dicts keep insertion order = order of first appearance, like defaultdict
        by_label.setdefault(item.label, []).append(item)
    selected: list[Datum] = []
    for group in by_label.values():
        selected.extend(rng.sample(group, shots) if len(group) >= shots else group)
    return selected


def draw_rng(seed: int, draw: int = 0) -> random.Random:
    """The generator of few-shot draw ``draw`` of ``seed``: ``random.Random(seed)`` (official) for draw 0."""
    if draw < 0:
        raise ValueError(f"draw must be at least 0, got {draw}")
    return random.Random(seed) if draw == 0 else random.Random(f"fewshot-seed{seed}-draw{draw}")


def sample_train_val(
    train: Sequence[Datum], val: Sequence[Datum] | None, shots: int, seed: int, draw: int = 0
) -> tuple[list[Datum], list[Datum] | None]:
    """The official selection: train with K, then val with min(K, 4), from ONE generator seeded with ``seed``.

    ``val=None`` samples train only (ImageNet, whose val is the test set). ``draw`` > 0 draws from another
    generator (``draw_rng``); draw 0 is the official selection.
    """
    rng = draw_rng(seed, draw)
    few_train = sample_few_shot(train, shots, rng)
    few_val = sample_few_shot(val, min(shots, 4), rng) if val is not None else None
    return few_train, few_val


SPLIT_KEY_CHARS = 16  # of the split file's sha256 in the index path: plenty to tell split files apart


def fewshot_index_path(dataset: str, shots: int, seed: int, split_sha256: str | None = None,
                       root: Path | None = None, draw: int = 0) -> Path:
    """Where the index of (dataset, split file, K, seed, draw) lives.

    ``<cache>/fewshot/<dataset>/split_<sha>/shot_<K>-seed_<S>[-draw_<D>].json``; without ``split_sha256``, the
    path of an index written before the split checksum was part of the key (``<dataset>/shot_<K>-seed_<S>.json``).
    """
    base = (Path(root) if root is not None else cache_dir()) / "fewshot" / dataset
    if split_sha256 is not None:
        base = base / f"split_{split_sha256[:SPLIT_KEY_CHARS]}"
    suffix = f"-draw_{draw}" if draw else ""
    return base / f"shot_{shots}-seed_{seed}{suffix}.json"


def _legacy_selection(dataset: str, shots: int, seed: int, split_sha256: str,
                      has_val: bool) -> dict[str, list[str] | None] | None:
    """The selection of an old, split-less index path if it was drawn from this split file, else None."""
    legacy = fewshot_index_path(dataset, shots, seed)
    if not legacy.is_file():
        return None
    try:
        data = read_json(legacy)
    except DataError:
        return None  # unreadable: sampling again gives the official selection anyway
    if not isinstance(data, dict) or data.get("split_sha256") != split_sha256:
        return None  # another data root's split file: not ours, left as it is
    return _read_index(legacy, split_sha256, has_val)


def _select(items: Sequence[Datum], paths: list[str], index_path: Path, split: str) -> list[Datum]:
    by_path = {item.impath: item for item in items}
    missing = [p for p in paths if p not in by_path]
    if missing:
        raise DataError(f"few-shot index {index_path}: {split} image {missing[0]!r} is not in the {split} split")
    return [by_path[p] for p in paths]


def _read_index(path: Path, split_sha256: str, has_val: bool) -> dict[str, list[str] | None] | None:
    """The index's selection, or None when it was drawn from a different split file (warned)."""
    data = read_json(path)
    if not isinstance(data, dict) or "train" not in data or "val" not in data:
        raise DataError(f"few-shot index {path}: expected a mapping with keys train and val")
    if data.get("split_sha256") != split_sha256:
        warnings.warn(
            f"few-shot index {path} was drawn from a split with sha256 {data.get('split_sha256')}, "
            f"the split now has {split_sha256}; sampling again and replacing the index",
            stacklevel=3,
        )
        return None
    for key in ("train", "val") if has_val else ("train",):
        if not isinstance(data[key], list) or not all(isinstance(p, str) for p in data[key]):
            raise DataError(f"few-shot index {path}: {key!r} must be a list of relative image paths")
    return data


def load_or_build_fewshot(
    dataset: str,
    train: Sequence[Datum],
    val: Sequence[Datum] | None,
    *,
    shots: int,
    seed: int,
    split_sha256: str,
    draw: int = 0,
) -> tuple[list[Datum], list[Datum] | None, Path]:
    """Reuse the recorded selection for (dataset, K, seed, draw) or sample it and record it atomically.

    Returns:
        ``(train, val, index_path)``; ``val`` is None when ``val`` was None (not sampled).
    """
    path = fewshot_index_path(dataset, shots, seed, split_sha256, draw=draw)
    data = _read_index(path, split_sha256, val is not None) if path.exists() else None
    if data is None and not path.exists() and not draw:  # only official draws existed before the split key
        data = _legacy_selection(dataset, shots, seed, split_sha256, val is not None)
        if data is not None:  # carry the old selection over to the new path, so it stays the one used
            write_json_atomic(path, {**data, "split_sha256": split_sha256}, indent=1)
    if data is not None:
        few_train = _select(train, data["train"], path, "train")
        few_val = _select(val, data["val"], path, "val") if val is not None else None
        return few_train, few_val, path
    few_train, few_val = sample_train_val(train, val, shots, seed, draw)
    record: dict[str, object] = {
        "version": INDEX_VERSION,
        "dataset": dataset,
        "shots": shots,
        "seed": seed,
        "split_sha256": split_sha256,
        "train": [item.impath for item in few_train],
        "val": [item.impath for item in few_val] if few_val is not None else None,
    }
    if draw:
        record["draw"] = draw
    write_json_atomic(path, record, indent=1)
    return few_train, few_val, path
