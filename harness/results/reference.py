"""Published numbers (top-1 %, as printed in the papers), shipped in ``harness/assets/reference/*.csv``.

The CSVs are copied verbatim from the project's reference transcription (see the README beside them for
sources and known discrepancies). This module reads them into one tidy shape for the leaderboards:
``method, dataset, shots, column, value, printed, source`` where ``column`` is ``base``, ``new``, ``hm``
(base-to-new) or ``accuracy`` (the other protocols). All published rows are ViT-B/16; the CoOp-paper rows
of the domain-generalization file for other backbones/context lengths are left out.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd

from harness.errors import HarnessError
from harness.paths import ASSETS_DIR

REFERENCE_DIR = ASSETS_DIR / "reference"
PUBLISHED_BACKBONE = "ViT-B/16"
# Method registry name -> the name the papers print.
METHOD_DISPLAY = {"zeroshot": "CLIP", "zeroshot_ensemble": "CLIP (ensemble)", "coop": "CoOp", "cocoop": "CoCoOp",
                  "maple": "MaPLe"}


def method_display(method: str) -> str:
    """The papers' name for a method (``coop`` -> ``CoOp``); unknown methods keep their registry name."""
    return METHOD_DISPLAY.get(method, method)


def reference_file(protocol: str) -> str | None:
    """The file of published numbers the protocol's entry names (``None``: none, or an unknown protocol)."""
    from harness.protocols import PROTOCOLS

    return PROTOCOLS.get(protocol).reference if protocol in PROTOCOLS else None


def reference_path(protocol: str) -> Path:
    """The shipped CSV of published numbers for ``protocol``.

    Raises:
        HarnessError: for a protocol without published numbers.
    """
    name = reference_file(protocol)
    if name is None:
        raise HarnessError(f"no published numbers for protocol {protocol!r}")
    return REFERENCE_DIR / name


def _tidy(frame: pd.DataFrame, dataset_column: str, columns: list[str], shots: pd.Series | None) -> pd.DataFrame:
    pieces = []
    for column in columns:
        piece = pd.DataFrame({
            "method": frame["method"],
            "dataset": frame[dataset_column],
            "shots": shots if shots is not None else 16,
            "column": column,
            "printed": frame[column],
            "source": frame["source"],
        })
        pieces.append(piece)
    tidy = pd.concat(pieces, ignore_index=True)
    tidy["value"] = tidy["printed"].astype(float)
    return tidy


@cache
def published(protocol: str) -> pd.DataFrame:
    """The published numbers of ``protocol`` in the tidy shape of the module docstring (ViT-B/16 only).

    The file's columns say its shape: ``base``/``new``/``hm`` (base-to-new) or ``accuracy``; the dataset in
    ``target_dataset``, ``target`` or ``dataset``; rows filtered to ViT-B/16 where a ``backbone`` column exists;
    shots from a ``shots`` column, else 16.
    """
    frame = pd.read_csv(reference_path(protocol), dtype=str, keep_default_na=False)
    if "backbone" in frame.columns:
        frame = frame[frame["backbone"] == PUBLISHED_BACKBONE].reset_index(drop=True)
    dataset_column = next(name for name in ("target_dataset", "target", "dataset") if name in frame.columns)
    columns = ["base", "new", "hm"] if "hm" in frame.columns else ["accuracy"]
    shots = frame["shots"].astype(int) if "shots" in frame.columns else None
    return _tidy(frame, dataset_column, columns, shots)


def lookup(protocol: str, method: str, dataset_display: str, column: str, shots: int = 16) -> float | None:
    """The published value for (method registry name, dataset display name, column, shots), or ``None``."""
    if reference_file(protocol) is None:
        return None
    table = published(protocol)
    match = table[(table["method"] == method_display(method)) & (table["dataset"] == dataset_display)
                  & (table["column"] == column) & (table["shots"] == shots)]
    return float(match.iloc[0]["value"]) if len(match) else None
