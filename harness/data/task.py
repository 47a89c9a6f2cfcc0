"""``prepare_task_data``: one dataset read, few-shot sampled and base/new subsampled, ready for a method.

The order is the official one: read the split, sample few-shot train (K) and val (min(K, 4)) from one
generator seeded with the seed, then keep the base or new classes (decided on the sampled train) in
every split. Test-only datasets (ImageNetV2/Sketch/A/R) ignore shots and subsample: train = test = all
data, val is empty. Class names come from train, as Dassl's ``DatasetBase`` builds them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness.data.cards import DatasetCard, load_card
from harness.data.fewshot import load_or_build_fewshot
from harness.data.readers import read_dataset
from harness.data.splitio import require_images
from harness.data.subsample import SUBSAMPLES, split_base_new
from harness.data.types import Datum, classnames_from_items
from harness.errors import DataError
from harness.notices import warn_once
from harness.paths import cache_dir


@dataclass
class TaskData:
    """The data of one task (dataset, shots, seed, subsample).

    Attributes:
        dataset: registry name of the dataset.
        image_dir: folder the items' ``impath`` are relative to.
        train / val / test: the items after few-shot sampling and base/new subsampling.
        classnames: indexed by label, from ``train`` (as official).
        template: the prompt template of the dataset (``{}`` = class name).
        split_sha256: checksum of the split file (or of the listing for folder datasets).
        fewshot_index: the JSON index of the few-shot selection, or None without sampling.
    """

    dataset: str
    image_dir: Path
    train: list[Datum]
    val: list[Datum]
    test: list[Datum]
    classnames: list[str]
    template: str
    split_sha256: str
    fewshot_index: Path | None


def resolve_data_root(card: DatasetCard, data_root: Path | None) -> Path:
    """The data root to read ``card`` from; ``None`` means the embedded world (generated on first use)."""
    if data_root is not None:
        return Path(data_root).expanduser()
    if not card.embedded:
        raise DataError(
            f"dataset {card.name} is not embedded: pass --data-root DIR (the folder holding {card.folder}/); "
            f"get it from {card.download.get('images', 'the link in its card')}"
        )
    root = cache_dir() / "embedded"
    from harness.world import ensure_world  # lazy: the world generator is heavy and optional here

    ensure_world(root)
    return root


def _sample(card: DatasetCard, raw_train: list[Datum], raw_val: list[Datum], shots: int | None,
            seed: int | None, split_sha256: str, draw: int = 0) -> tuple[list[Datum], list[Datum] | None, Path | None]:
    """Few-shot train/val (val None = not sampled, it is the test set); unchanged when shots is None or < 1."""
    val_sampled = None if card.val_is_test else raw_val
    if shots is None or shots < 1:  # the official code samples only when NUM_SHOTS >= 1
        if shots is not None:
            warn_once(f"all-shots-{shots}", f"--shots {shots} means every training image of every class (no "
                      "few-shot sampling), as the official NUM_SHOTS < 1")
        return raw_train, val_sampled, None
    if seed is None:
        raise DataError(f"few-shot sampling of {card.name} ({shots} shots) needs an explicit seed")
    _warn_short_classes(card.name, raw_train, shots)
    return load_or_build_fewshot(card.name, raw_train, val_sampled, shots=shots, seed=seed, split_sha256=split_sha256,
                                 draw=draw)


def _warn_short_classes(dataset: str, train: list[Datum], shots: int) -> None:
    """Warn (once per dataset and K) when classes hold fewer than K train images: they keep what they have."""
    counts = Counter(item.label for item in train)
    short = sorted(count for count in counts.values() if count < shots)
    if short:
        warn_once(f"short-classes-{dataset}-{shots}", (
            f"{dataset}: {len(short)} of {len(counts)} classes have fewer than {shots} training images (fewest "
            f"{short[0]}); those classes use every image they have, as the official sampler does"))


def _check_labels(train: list[Datum], others: dict[str, list[Datum]], source: str) -> list[str]:
    """Class names from train; every label in range and always paired with the same class name."""
    try:
        classnames = classnames_from_items(train)
    except ValueError as exc:
        raise DataError(f"{source}: train {exc}") from exc
    for name, items in {"train": train, **others}.items():
        for item in items:
            if not 0 <= item.label < len(classnames):
                raise DataError(
                    f"{source}: {name} image {item.impath} has label {item.label}, "
                    f"but train has classes 0..{len(classnames) - 1}"
                )
            if item.classname != classnames[item.label]:
                raise DataError(
                    f"{source}: {name} image {item.impath} has label {item.label} named {item.classname!r}, "
                    f"but train names that label {classnames[item.label]!r}"
                )
    return classnames


def prepare_task_data(
    dataset: str,
    data_root: Path | None,
    *,
    shots: int | None = None,
    seed: int | None = None,
    subsample: str = "all",
    generate_split: bool = False,
    split_seed: int = 1,
    draw: int = 0,
) -> TaskData:
    """Read ``dataset`` and apply few-shot sampling and the base/new class split as the official code does.

    Args:
        dataset: registry name (``harness ls datasets``).
        data_root: the folder holding the dataset folders; None for an embedded dataset.
        shots: images per class for train (and min(shots, 4) for val); None or < 1 keeps all.
        seed: seed of the few-shot selection (required with shots).
        subsample: ``all``, ``base`` or ``new``.
        generate_split: allow a fresh random split when the official split file is missing (warns).
        split_seed: seed of that fresh split.
        draw: the few-shot draw of ``seed`` (0: the official selection; see ``harness.data.fewshot``).

    Raises:
        DataError: missing folder or split file, an image listed but not on disk, a malformed entry.
    """
    card = load_card(dataset)
    if subsample not in SUBSAMPLES:
        raise DataError(f"unknown subsample {subsample!r}; expected one of {', '.join(SUBSAMPLES)}")
    root = resolve_data_root(card, data_root)
    raw = read_dataset(card, root, generate_split=generate_split, split_seed=split_seed)
    image_dir = card.images_dir(root)
    try:
        require_images(raw.as_dict(), image_dir, raw.source)
    except DataError as exc:
        if data_root is None and card.embedded:  # the world is ours: say how to regenerate it
            raise DataError(f"{exc}; the embedded world is incomplete: run `harness data make-embedded` "
                            "to regenerate its missing files") from None
        raise
    if card.test_only:
        train, val, test, index = raw.test, [], raw.test, None
    else:
        train, val_sampled, index = _sample(card, raw.train, raw.val, shots, seed, raw.split_sha256, draw)
        val = val_sampled if val_sampled is not None else raw.test
        train, val, test = split_base_new([train, val, raw.test], subsample)
    classnames = _check_labels(train, {"val": val, "test": test}, raw.source)
    return TaskData(card.name, image_dir, train, val, test, classnames, card.template, raw.split_sha256, index)
