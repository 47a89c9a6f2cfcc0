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
FILES = {
    "base2new": "base2new.csv",
    "cross_dataset": "cross_dataset.csv",
    "domain_generalization": "domain_generalization.csv",
    "few_shot": "few_shot.csv",
}
PUBLISHED_BACKBONE = "ViT-B/16"
# Method registry name -> the name the papers print.
METHOD_DISPLAY = {"zeroshot": "CLIP", "zeroshot_ensemble": "CLIP (ensemble)", "coop": "CoOp", "cocoop": "CoCoOp",
                  "maple": "MaPLe"}


def method_display(method: str) -> str:
    """The papers' name for a method (``coop`` -> ``CoOp``); unknown methods keep their registry name."""
    return METHOD_DISPLAY.get(method, method)


def reference_path(protocol: str) -> Path:
    """The shipped CSV of published numbers for ``protocol``.

    Raises:
        HarnessError: for a protocol without published numbers.
    """
    if protocol not in FILES:
        raise HarnessError(f"no published numbers for protocol {protocol!r}; known: {', '.join(FILES)}")
    return REFERENCE_DIR / FILES[protocol]


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
    """The published numbers of ``protocol`` in the tidy shape of the module docstring (ViT-B/16 only)."""
    frame = pd.read_csv(reference_path(protocol), dtype=str, keep_default_na=False)
    if protocol == "base2new":
        return _tidy(frame, "dataset", ["base", "new", "hm"], None)
    if protocol == "cross_dataset":
        return _tidy(frame, "target_dataset", ["accuracy"], None)
    if protocol == "domain_generalization":
        frame = frame[frame["backbone"] == PUBLISHED_BACKBONE].reset_index(drop=True)
        return _tidy(frame, "target", ["accuracy"], None)
    frame = frame[frame["backbone"] == PUBLISHED_BACKBONE].reset_index(drop=True)
    return _tidy(frame, "dataset", ["accuracy"], frame["shots"].astype(int))


def lookup(protocol: str, method: str, dataset_display: str, column: str, shots: int = 16) -> float | None:
    """The published value for (method registry name, dataset display name, column, shots), or ``None``."""
    if protocol not in FILES:
        return None
    table = published(protocol)
    match = table[(table["method"] == method_display(method)) & (table["dataset"] == dataset_display)
                  & (table["column"] == column) & (table["shots"] == shots)]
    return float(match.iloc[0]["value"]) if len(match) else None
