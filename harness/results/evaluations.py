"""The finished evaluations of a runs folder, one row each, with where their per-image predictions are.

``load_evaluations`` reads the test-accuracy records of every finished run of a protocol into a DataFrame:
``method, variant, dataset, subsample, shots, seed, draw, value, predictions`` (``predictions`` is the path
of the run's predictions file, or ``None`` for runs finished before predictions were saved). ``paired_parts``
turns two methods' rows of one dataset into the correctness arrays ``harness.results.bootstrap`` resamples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.results.aggregate import NO_SEED
from harness.results.collect import is_transfer, read_spec, run_folders, spec_variant
from harness.results.predictions import RECORD_KEY, load_predictions
from harness.results.records import read_records
from harness.run_layout import DONE_NAME, RECORDS_NAME

NO_RUN = (NO_SEED, 0)
COLUMNS = ["method", "variant", "dataset", "subsample", "shots", "seed", "draw", "value", "predictions", "role"]


def load_evaluations(out_dir: Path, protocol: str, run_keys: Iterable[str] | None = None) -> pd.DataFrame:
    """Test-accuracy evaluations of the finished runs of ``protocol`` under ``out_dir`` (see module docstring).

    ``run_keys`` keeps only those runs (a plan's), as ``harness.results.collect.load_records`` does.
    Seeds and shots of training-free runs are ``-1`` (``NO_SEED``) and the draw defaults to 0. ``role`` is
    ``source`` for the training dataset of a transfer protocol, else ``target``.
    """
    wanted = set(run_keys) if run_keys is not None else None
    rows = []
    for folder in run_folders(out_dir, protocol):
        if not (folder / DONE_NAME).is_file() or (wanted is not None and folder.name not in wanted):
            continue
        spec = read_spec(folder)
        source = spec.evals[0].dataset if is_transfer(spec.protocol) and spec.evals else None
        for record in read_records(folder / RECORDS_NAME):
            if record["metric"] != "accuracy" or record["split"] != "test":
                continue
            name = record.get(RECORD_KEY)
            rows.append({
                "method": record["method"], "variant": spec_variant(spec), "dataset": record["dataset"],
                "subsample": record["subsample"], "shots": _or_none(record["shots"]),
                "seed": _or_none(record["seed"]), "draw": int(record.get("draw") or 0),
                "value": float(record["value"]), "predictions": str(folder / name) if name else None,
                "role": "source" if record["dataset"] == source else "target",
            })
    return pd.DataFrame(rows, columns=COLUMNS)


def _or_none(value: object) -> int:
    return NO_SEED if value is None or pd.isna(value) else int(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PairedDataset:
    """Two methods' paired runs on one dataset (and shot count), ready for the bootstrap.

    Attributes:
        parts: subsample -> ``(2, S, n)`` correctness (A, B), or ``(2, S, 1)`` accuracies without predictions.
        units: the paired runs, as ``(seed, draw)`` (seed -1 for a training-free run).
        with_images: whether per-image predictions of every paired run were found.
        note: what was left out or why images are not resampled.
    """

    parts: dict[str, np.ndarray]
    units: tuple[tuple[int, int], ...]
    with_images: bool
    note: str


def _units(rows: pd.DataFrame) -> dict[tuple[int, int], pd.DataFrame]:
    return {(int(s), int(d)): group for (s, d), group in rows.groupby(["seed", "draw"], sort=True)}


def pair_units(a: pd.DataFrame, b: pd.DataFrame) -> tuple[list[tuple], list[tuple], list[tuple], str]:
    """Pair the runs of A and B by (seed, draw); a single training-free run pairs with every run of the other.

    Returns:
        The paired units, A's unit for each, B's unit for each, and a note naming unpaired runs.
    """
    units_a, units_b = sorted(_units(a)), sorted(_units(b))
    if units_a == [NO_RUN] or units_b == [NO_RUN]:
        # A training-free run does not depend on the seed: it is the same partner for every seed of the other.
        units = units_b if units_a == [NO_RUN] else units_a
        of_a = [NO_RUN] * len(units) if units_a == [NO_RUN] else units
        of_b = [NO_RUN] * len(units) if units_b == [NO_RUN] else units
        return units, of_a, of_b, ""
    units = sorted(set(units_a) & set(units_b))
    unpaired = sorted(set(units_a) ^ set(units_b))
    note = "unpaired runs left out: " + ", ".join(_unit_name(u) for u in unpaired) if unpaired else ""
    return units, units, units, note


def _unit_name(unit: tuple[int, int]) -> str:
    seed, draw = unit
    return ("no seed" if seed == NO_SEED else f"seed {seed}") + (f" draw {draw}" if draw else "")


def paired_dataset(a: pd.DataFrame, b: pd.DataFrame, subsamples: Sequence[str]) -> PairedDataset | None:
    """The paired correctness arrays of methods A and B on one dataset (``None`` when no run pairs).

    Raises:
        HarnessError: if two paired runs evaluated different image lists (their predictions files disagree).
    """
    units, of_a, of_b, note = pair_units(a, b)
    if not units:
        return None
    cells = {}
    for part in subsamples:
        rows = [_cell(a, ua, part) for ua in of_a], [_cell(b, ub, part) for ub in of_b]
        if any(row is None for side in rows for row in side):
            return None
        cells[part] = rows
    with_images = all(row["predictions"] for side in cells.values() for rows in side for row in rows)
    parts = {part: (_correctness(rows) if with_images else _accuracies(rows)) for part, rows in cells.items()}
    if not with_images:
        note = "; ".join(n for n in (note, "no per-image predictions (runs made before they were saved): "
                                     "seeds only") if n)
    return PairedDataset(parts, tuple(units), with_images, note)


def _cell(rows: pd.DataFrame, unit: tuple[int, int], part: str) -> pd.Series | None:
    match = rows[(rows["seed"] == unit[0]) & (rows["draw"] == unit[1]) & (rows["subsample"] == part)]
    return match.iloc[0] if len(match) else None


def _accuracies(rows: tuple[list[pd.Series], list[pd.Series]]) -> np.ndarray:
    return np.array([[[row["value"] / 100.0] for row in side] for side in rows])


def _correctness(rows: tuple[list[pd.Series], list[pd.Series]]) -> np.ndarray:
    loaded = [[load_predictions(Path(row["predictions"])) for row in side] for side in rows]
    checksums = {p.images_sha256 for side in loaded for p in side}
    if len(checksums) > 1:
        files = sorted({row["predictions"] for side in rows for row in side})
        raise HarnessError(f"paired runs evaluated different test images (image-list checksums differ): "
                           f"{', '.join(files[:4])}; they cannot be compared image by image")
    return np.array([[p.correct for p in side] for side in loaded])
