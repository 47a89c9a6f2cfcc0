"""Dataset readers, one per on-disk layout, registered by name in ``READERS`` when imported."""

from __future__ import annotations

from harness.data.readers import folders, imagenet, lists  # noqa: F401  (register the readers)
from harness.data.readers.base import READERS, RawSplits, Reader, get_reader, read_dataset, register_reader

__all__ = ["READERS", "RawSplits", "Reader", "get_reader", "read_dataset", "register_reader"]
