"""A torch ``Dataset`` over ``Datum`` items: opens each image with PIL, converts it to RGB, transforms it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from harness.data.types import Datum
from harness.errors import DataError
from harness.notices import warn_once

# 16- and 32-bit integer modes (16-bit greyscale PNGs open as I;16 or I): PIL's convert("RGB") clips every
# value above 255, so such an image comes out (almost) all white. The official reader does exactly this.
WIDE_INTEGER_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _warn_wide_integer(path: Path, mode: str) -> None:
    warn_once("wide-integer-image", (
        f"{path} is a 16-bit image (PIL mode {mode}): it is converted to RGB as the official reader does, "
        "which clips values above 255, so it (and any other such image) becomes almost all white; convert the "
        "images to 8 bits to see their content (said once)"))


def load_image(path: Path) -> Image.Image:
    """Open an image as RGB, fully decoded; a missing, corrupt or truncated file is a ``DataError`` naming it."""
    try:
        with Image.open(path) as image:
            if image.mode in WIDE_INTEGER_MODES:
                _warn_wide_integer(path, image.mode)
            return image.convert("RGB")  # convert() decodes the whole file, so truncation shows up here
    except FileNotFoundError as exc:
        raise DataError(f"image not found: {path}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image {path} (corrupt or truncated?): {exc}") from exc


class ImageDataset(Dataset):
    """Items of one split as ``(image, label, index)`` triples, ``index`` being the position in ``items``."""

    def __init__(self, items: Sequence[Datum], image_dir: Path, transform: Callable[[Image.Image], Any] | None) -> None:
        self.items = list(items)
        self.image_dir = Path(image_dir)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        item = self.items[index]
        image = load_image(self.image_dir / item.impath)
        return (self.transform(image) if self.transform is not None else image), item.label, index

    def impath(self, index: int) -> Path:
        """The absolute path of item ``index``."""
        return self.image_dir / self.items[index].impath
