"""The plain data model of a dataset: items, splits and class names."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Datum:
    """One labelled image.

    Attributes:
        impath: path relative to the dataset's image folder, exactly as in the split file.
        label: integer class label.
        classname: class name as the official reader derives it (``_`` kept).
    """

    impath: str
    label: int
    classname: str


@dataclass
class DatasetSplits:
    """A dataset read from disk: its image folder and its train/val/test items.

    ``classnames`` is indexed by label. As in the official code, the class list a model is built for
    comes from ``train`` (after few-shot sampling and base/new subsampling); ``classnames_from_train``
    computes it that way.
    """

    name: str
    image_dir: Path
    train: list[Datum]
    val: list[Datum]
    test: list[Datum]
    template: str
    split_file: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def split(self, name: str) -> list[Datum]:
        """Return the items of split ``name`` (``train``, ``val`` or ``test``)."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}: expected train, val or test")
        return getattr(self, name)


def classnames_from_items(items: list[Datum]) -> list[str]:
    """Class names indexed by label, from (label, classname) pairs, as Dassl's DatasetBase builds them.

    Labels are expected to run 0..max without gaps; a gap is an error naming the missing labels.
    """
    by_label: dict[int, str] = {}
    for item in items:
        by_label.setdefault(item.label, item.classname)
    if not by_label:
        return []
    missing = sorted(set(range(max(by_label) + 1)) - set(by_label))
    if missing:
        raise ValueError(f"labels {missing[:10]} have no items; labels must run 0..{max(by_label)}")
    return [by_label[i] for i in range(len(by_label))]
