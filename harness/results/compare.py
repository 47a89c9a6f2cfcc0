"""``harness compare``: the paired difference between two methods per dataset and on the Average, with intervals.

Rows come from ``harness.results.evaluations`` (which runs pair, their per-image correctness) and
``harness.results.bootstrap`` (the two-way bootstrap over seeds and test images, described there and in
``METHOD_TEXT``). Column order is fixed (``COLUMNS``) and rows follow the dataset order, Average last.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from harness.errors import HarnessError
from harness.results import bootstrap
from harness.results.aggregate import AVERAGE, NO_SEED
from harness.results.evaluations import PairedDataset, paired_dataset
from harness.results.reference import method_display

COLUMNS = ["protocol", "shots", "dataset", "measure", "method_a", "method_b", "a", "b", "diff", "ci_low",
           "ci_high", "verdict", "runs", "images", "interval", "note"]
SEEDS_AND_IMAGES, SEEDS_ONLY, MIXED = "seeds x images", "seeds only", "mixed"
METHOD_TEXT = (
    "Paired difference A − B (points), observed, with a 95% two-way bootstrap interval ({resamples} replicates, "
    "seed {seed}): each replicate resamples the paired runs (by seed, which fixes the same few-shot draw for "
    "both methods, and then by draw within a seed with --draws; a training-free method pairs with every seed) "
    "and the test images (the same resampled "
    "images for both methods and every seed), then recomputes every mean, H = 2BN/(B+N) and the Average "
    "from them. Interval \"seeds only\": a run without per-image predictions (made before they were saved); "
    "only its seeds are resampled, which with few seeds is crude. Verdict: a method is better when the whole "
    "interval is on its side of 0.")
MEASURE_NAMES = {"all": "accuracy", "base": "base", "new": "new", "hm": "H"}


@dataclass(frozen=True)
class CompareSettings:
    """How the bootstrap runs: replicates, its seed, the confidence level."""

    resamples: int = bootstrap.DEFAULT_RESAMPLES
    seed: int = 0
    confidence: float = bootstrap.CONFIDENCE


def _method_rows(evaluations: pd.DataFrame, method: str) -> pd.DataFrame:
    rows = evaluations[evaluations["method"] == method]
    if rows.empty:
        found = ", ".join(sorted(evaluations["method"].unique())) or "none"
        raise HarnessError(f"no finished runs of method {method!r}; methods found: {found}")
    variants = sorted(rows["variant"].unique())
    if len(variants) > 1:
        raise HarnessError(f"method {method!r} has runs of several variants ({', '.join(variants)}); "
                           "compare runs of one backbone and setting: point --runs at a folder holding one")
    return rows


def _shot_groups(a: pd.DataFrame, b: pd.DataFrame) -> list[tuple[int, int, int]]:
    """(shots shown, A's shots, B's shots): a training-free method (no shots) pairs with every shot count."""
    shots_a, shots_b = sorted(a["shots"].unique()), sorted(b["shots"].unique())
    if shots_a == [NO_SEED]:
        return [(int(k), NO_SEED, int(k)) for k in shots_b]
    if shots_b == [NO_SEED]:
        return [(int(k), int(k), NO_SEED) for k in shots_a]
    return [(int(k), int(k), int(k)) for k in sorted(set(shots_a) & set(shots_b))]


def compare_methods(evaluations: pd.DataFrame, protocol: str, method_a: str, method_b: str, *,
                    order: Sequence[str] = (), settings: CompareSettings | None = None) -> pd.DataFrame:
    """The paired comparison table of ``method_a`` − ``method_b`` on ``protocol`` (columns ``COLUMNS``).

    Args:
        evaluations: ``harness.results.evaluations.load_evaluations`` of the protocol.
        protocol: the protocol name (``base2new`` compares base, new and H).
        method_a: registry name of method A.
        method_b: registry name of method B.
        order: dataset order of the rows (others follow by name).
        settings: replicates, seed and confidence of the bootstrap.

    Raises:
        HarnessError: a method without runs or with several variants, or no dataset both methods ran.
    """
    settings = settings or CompareSettings()
    a, b = _method_rows(evaluations, method_a), _method_rows(evaluations, method_b)
    subsamples = ("base", "new") if protocol == "base2new" else ("all",)
    resampler = _Resampler(settings, np.random.default_rng(settings.seed))
    rows: list[dict[str, object]] = []
    for shots, shots_a, shots_b in _shot_groups(a, b):
        head = {"protocol": protocol, "shots": None if shots == NO_SEED else shots}
        rows += _group_rows(a[a["shots"] == shots_a], b[b["shots"] == shots_b], head, subsamples, order, resampler)
    if not rows:
        raise HarnessError(f"{method_a} and {method_b} have no dataset of {protocol} in common")
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    table["method_a"], table["method_b"] = method_a, method_b
    table["measure"] = table["measure"].map(lambda m: MEASURE_NAMES.get(str(m), m))
    return table


@dataclass
class _Resampler:
    """The bootstrap's generator, and one seed resample per set of paired runs, shared by datasets."""

    settings: CompareSettings
    rng: np.random.Generator
    weights: dict[tuple, np.ndarray] = field(default_factory=dict)

    def seeds_for(self, units: tuple) -> np.ndarray:
        if units not in self.weights:
            self.weights[units] = bootstrap.run_weights(self.rng, units, self.settings.resamples)
        return self.weights[units]


def _group_rows(a: pd.DataFrame, b: pd.DataFrame, head: dict[str, object], subsamples: Sequence[str],
                order: Sequence[str], resampler: _Resampler) -> list[dict[str, object]]:
    """The rows of one shot count: each dataset both methods ran, then the Average over the targets."""
    rows: list[dict[str, object]] = []
    pooled = []
    for dataset in _datasets(a, b, order):
        paired = paired_dataset(a[a["dataset"] == dataset], b[b["dataset"] == dataset], subsamples)
        if paired is None:
            rows.append({**head, "dataset": dataset, "measure": subsamples[0], "note": "no paired runs", "runs": 0})
            continue
        result = _dataset_rows(paired, resampler.seeds_for(paired.units), resampler.rng, resampler.settings)
        rows += [{**head, "dataset": dataset, **row} for row in result[0]]
        if _role(a, dataset) != "source":
            pooled.append((paired, result[1], result[2]))
    if pooled:
        rows += [{**head, "dataset": AVERAGE, **row} for row in _average_rows(pooled, resampler.settings)]
    return rows


def _datasets(a: pd.DataFrame, b: pd.DataFrame, order: Sequence[str]) -> list[str]:
    names = sorted(set(a["dataset"]) | set(b["dataset"]))
    rank = {name: i for i, name in enumerate(order)}
    return sorted(names, key=lambda name: (rank.get(name, len(rank)), name))


def _role(rows: pd.DataFrame, dataset: str) -> str:
    roles = rows.loc[rows["dataset"] == dataset, "role"]
    return str(roles.iloc[0]) if len(roles) else "target"


def _dataset_rows(paired: PairedDataset, seeds: np.ndarray, rng: np.random.Generator,
                  settings: CompareSettings) -> tuple[list[dict[str, object]], dict, dict]:
    observed = {part: bootstrap.observed_accuracies(c) for part, c in paired.parts.items()}
    replicates = bootstrap.dataset_replicates(paired.parts, seeds, rng)
    rows = bootstrap.summarize_measures(observed, replicates, settings.confidence)
    images = " / ".join(str(c.shape[2]) for c in paired.parts.values()) if paired.with_images else ""
    for row in rows:
        row.update(runs=len(paired.units), images=images, note=paired.note,
                   interval=SEEDS_AND_IMAGES if paired.with_images else SEEDS_ONLY)
        if not paired.with_images and len(paired.units) < 2:  # one run, nothing to resample
            row.update(ci_low=math.nan, ci_high=math.nan, verdict="no interval: one run without predictions")
    return rows, observed, replicates


def _average_rows(pooled: list[tuple[PairedDataset, dict, dict]], settings: CompareSettings) -> list[dict]:
    observed = bootstrap.average_of([p[1] for p in pooled])
    replicates = bootstrap.average_of([p[2] for p in pooled])
    kinds = {p[0].with_images for p in pooled}
    interval = MIXED if len(kinds) > 1 else (SEEDS_AND_IMAGES if kinds == {True} else SEEDS_ONLY)
    rows = bootstrap.summarize_measures(observed, replicates, settings.confidence)
    for row in rows:
        row.update(runs=min(len(p[0].units) for p in pooled), images="", interval=interval,
                   note=f"over {len(pooled)} datasets")
    return rows


def _verdict_text(verdict: object, a: str, b: str) -> str:
    text = str(verdict) if isinstance(verdict, str) else ""
    return text.replace(bootstrap.VERDICT_A, f"{a} better").replace(bootstrap.VERDICT_B, f"{b} better")


def _number(value: object, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):+.2f}" if signed else f"{float(value):.2f}"


def to_markdown(table: pd.DataFrame, display: Mapping[str, str], settings: CompareSettings) -> str:
    """The comparison as markdown: a header stating the method, then one row per dataset and measure."""
    a, b = (method_display(str(table[column].iloc[0])) for column in ("method_a", "method_b"))
    protocol = str(table["protocol"].iloc[0])
    lines = [f"### {protocol}: {a} − {b}, paired, top-1 accuracy (%)", "",
             METHOD_TEXT.format(resamples=settings.resamples, seed=settings.seed), "",
             f"| Dataset | Shots | Measure | {a} | {b} | {a} − {b} | 95% interval | Verdict | Runs | Interval | Note |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, row in table.iterrows():
        shots = "" if row["shots"] is None or pd.isna(row["shots"]) else str(int(row["shots"]))
        cells = [display.get(str(row["dataset"]), str(row["dataset"])), shots, str(row["measure"]),
                 _number(row["a"]), _number(row["b"]), _number(row["diff"], signed=True),
                 f"[{_number(row['ci_low'], True)}, {_number(row['ci_high'], True)}]",
                 _verdict_text(row["verdict"], a, b), str(int(row["runs"])), str(row["interval"] or ""),
                 str(row["note"] or "")]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: pd.DataFrame) -> str:
    """The comparison as CSV: the fixed ``COLUMNS``, numbers to 4 decimals."""
    buffer = io.StringIO()
    frame = table.copy()
    frame["shots"] = frame["shots"].astype("Int64")
    frame.to_csv(buffer, index=False, float_format="%.4f", lineterminator="\n")
    return buffer.getvalue()
