"""Per-image predictions of one evaluation, saved beside a run's records so comparisons need no rerun.

One compressed NumPy file per evaluation, ``predictions-<dataset>-<subsample>-<split>.npz`` in the run folder,
holds ``labels`` and ``preds`` (int32, one entry per test image, in split order) and ``images_sha256``: the
sha256 of the evaluated image paths joined by newlines, so two runs can be paired image by image only when they
evaluated the same list. The file is written through a temporary file and an atomic rename before the run's
``DONE``; the run's records name it in their ``predictions`` key. It is read with ``allow_pickle=False``:
loading it never runs code. Runs finished before this file existed have no ``predictions`` key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import HarnessError

PREFIX = "predictions"
RECORD_KEY = "predictions"


@dataclass(frozen=True)
class Predictions:
    """Labels and predicted labels per image of one evaluation, with the checksum of its image list."""

    labels: np.ndarray
    preds: np.ndarray
    images_sha256: str

    @property
    def correct(self) -> np.ndarray:
        """1.0 where the prediction is right, else 0.0 (float64, per image)."""
        return (self.labels == self.preds).astype(np.float64)


def images_checksum(impaths: Sequence[str]) -> str:
    """sha256 of the image paths in order, joined by newlines."""
    return hashlib.sha256("\n".join(impaths).encode("utf-8")).hexdigest()


def predictions_name(dataset: str, subsample: str, split: str) -> str:
    """The file name of one evaluation's predictions inside its run folder."""
    return f"{PREFIX}-{dataset}-{subsample}-{split}.npz"


def save_predictions(folder: Path, dataset: str, subsample: str, split: str, *, labels: Sequence[int],
                     preds: Sequence[int], impaths: Sequence[str]) -> str:
    """Write one evaluation's predictions atomically into ``folder``; return the file name (for the records).

    Raises:
        HarnessError: if labels, predictions and image paths differ in length.
    """
    if not len(labels) == len(preds) == len(impaths):
        raise HarnessError(f"predictions of {dataset} ({subsample}, {split}): {len(labels)} labels, "
                           f"{len(preds)} predictions and {len(impaths)} images differ in number")
    name = predictions_name(dataset, subsample, split)
    folder.mkdir(parents=True, exist_ok=True)
    # Ends with .tmp so that the runner's reset of an interrupted attempt removes it.
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as handle:
        np.savez_compressed(handle, labels=np.asarray(labels, dtype=np.int32), preds=np.asarray(preds, dtype=np.int32),
                            images_sha256=np.asarray(images_checksum(impaths)))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, folder / name)
    return name


def load_predictions(path: Path) -> Predictions:
    """Read a predictions file written by ``save_predictions``.

    Raises:
        HarnessError: naming the file if it is missing, unreadable or lacks an array.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            labels, preds = data["labels"], data["preds"]
            checksum = str(data["images_sha256"])
    except (OSError, KeyError, ValueError) as exc:
        raise HarnessError(f"{path}: not a readable predictions file ({exc})") from None
    if labels.shape != preds.shape or labels.ndim != 1:
        raise HarnessError(f"{path}: labels {labels.shape} and preds {preds.shape} must be equal 1-d arrays")
    return Predictions(labels.astype(np.int64), preds.astype(np.int64), checksum)


def evaluation_extra(folder: Path, spec: object, evaluation: object, result: object) -> dict[str, object]:
    """Save one evaluation's predictions into the run folder; the extra record keys that point to them.

    ``spec`` is a ``RunSpec``, ``evaluation`` an ``EvalSpec`` and ``result`` an ``EvalResult`` (typed loosely:
    the results package does not import the engine). A few-shot draw beyond the official one (``draw`` > 0)
    is recorded as well, so that tables can separate draw from training variance.
    """
    name = save_predictions(folder, evaluation.dataset, evaluation.subsample, evaluation.split,  # type: ignore[attr-defined]
                            labels=result.labels, preds=result.preds, impaths=result.impaths)  # type: ignore[attr-defined]
    extra: dict[str, object] = {RECORD_KEY: name}
    draw = getattr(spec, "draw", 0)
    if draw:
        extra["draw"] = int(draw)
    return extra
