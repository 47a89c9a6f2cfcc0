"""``harness data check``: whether a dataset's layout is complete and its split sizes match the card."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.data.cards import DatasetCard
from harness.data.readers import read_dataset
from harness.data.splitio import SPLITS, missing_images
from harness.errors import DataError

SHOW_MISSING = 5


@dataclass
class DatasetCheck:
    """The result of checking one dataset folder."""

    card: DatasetCard
    dataset_dir: Path
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sizes: dict[str, int] | None = None
    split_sha256: str | None = None

    @property
    def complete(self) -> bool:
        """True when every needed file is present and every listed image exists."""
        return not self.missing and not self.problems

    @property
    def size_mismatches(self) -> dict[str, tuple[int, int]]:
        """``{split: (found, expected)}`` for the splits whose size differs from the card."""
        if self.sizes is None:
            return {}
        expected = self.card.split_sizes
        return {s: (self.sizes[s], expected[s]) for s in SPLITS if self.sizes[s] != expected[s]}


def _required_paths(card: DatasetCard, root: Path) -> list[tuple[Path, str]]:
    dataset_dir = card.dataset_dir(root)
    images = card.download.get("images", "see its card")
    needed = [(dataset_dir, f"dataset folder; get it from {images}")]
    if card.image_dir != ".":
        needed.append((card.images_dir(root), f"image folder; get it from {images}"))
    split = card.split_path(root)
    if split is not None:
        needed.append((split, f"split file; download it from {card.download.get('split', 'see its card')}"))
    needed.extend((dataset_dir / name, f"needed by the {card.reader} reader") for name in card.required_files)
    return needed


def _undecodable(raw_splits: dict[str, list], image_dir: Path) -> list[str]:
    """Relative paths of the existing images PIL cannot fully decode (corrupt or truncated)."""
    from harness.data.image_dataset import load_image

    bad, seen = [], set()
    for items in raw_splits.values():
        for item in items:
            path = image_dir / item.impath
            if item.impath in seen or not path.is_file():
                continue
            seen.add(item.impath)
            try:
                load_image(path)
            except DataError:
                bad.append(item.impath)
    return bad


def check_dataset(card: DatasetCard, data_root: Path, verify_images: bool = False) -> DatasetCheck:
    """Check one dataset under ``data_root``: needed files, images listed by the split, split sizes.

    Args:
        card: the dataset's card.
        data_root: folder holding the dataset folders.
        verify_images: also decode every listed image and report the corrupt or truncated ones (slow).
    """
    report = DatasetCheck(card, card.dataset_dir(data_root))
    for path, why in _required_paths(card, data_root):
        if not path.exists():
            report.missing.append(f"{path} ({why})")
            if path == report.dataset_dir:
                return report
    if report.missing:
        return report
    try:
        raw = read_dataset(card, data_root)
    except DataError as exc:
        report.problems.append(str(exc))
        return report
    report.sizes = {s: len(items) for s, items in raw.as_dict().items()}
    report.split_sha256 = raw.split_sha256
    image_dir = card.images_dir(data_root)
    for split, items in raw.as_dict().items():
        absent = missing_images(items, image_dir)
        if absent:
            shown = ", ".join(absent[:SHOW_MISSING]) + (", ..." if len(absent) > SHOW_MISSING else "")
            report.missing.append(f"{len(absent)} {split} image(s) listed in {raw.source} under {image_dir}: {shown}")
    if verify_images:
        bad = _undecodable(raw.as_dict(), image_dir)
        if bad:
            shown = ", ".join(bad[:SHOW_MISSING]) + (", ..." if len(bad) > SHOW_MISSING else "")
            report.problems.append(f"{len(bad)} image(s) cannot be decoded (corrupt or truncated): {shown}")
    if card.split_sha256 and card.split_sha256 != raw.split_sha256:
        report.problems.append(f"{raw.source} has sha256 {raw.split_sha256}, the card pins {card.split_sha256}")
    return report


def format_check(report: DatasetCheck) -> str:
    """A human-readable block for one dataset."""
    card = report.card
    status = "complete" if report.complete else "INCOMPLETE"
    lines = [f"{card.name} ({card.display_name}): {status}", f"  folder: {report.dataset_dir}"]
    lines += [f"  missing: {item}" for item in report.missing]
    lines += [f"  problem: {item}" for item in report.problems]
    if report.sizes is not None:
        mismatches = report.size_mismatches
        for split in SPLITS:
            found, expected = report.sizes[split], card.split_sizes[split]
            verdict = "matches the card" if split not in mismatches else f"differs from the card ({expected})"
            lines.append(f"  {split}: {found} images, {verdict}")
    if report.split_sha256:
        lines.append(f"  split sha256: {report.split_sha256}")
    return "\n".join(lines)
