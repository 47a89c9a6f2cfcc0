"""Which methods are within noise of the best one, per dataset: the leaderboards' "best" and dagger marks.

Per dataset (and the Average) of a leaderboard, the best method is the one with the highest H (base-to-new)
or accuracy; every other method is paired with it by ``harness.results.compare`` (the two-way bootstrap over
seeds and test images) and marked ``within noise`` when the 95% interval of its difference to the best
includes 0. Few-shot ranks each shot count separately (zero-shot, at 0 shots, is not ranked). Methods are told
apart by method and variant (backbone and settings), as the leaderboard rows are.
"""

from __future__ import annotations

import pandas as pd

from harness.errors import HarnessError
from harness.results.aggregate import AVERAGE, NO_SEED, harmonic_mean
from harness.results.bootstrap import VERDICT_NONE
from harness.results.compare import CompareSettings, compare_methods

BEST, WITHIN_NOISE = "best", "within noise"
MARK_COLUMNS = ["method", "variant", "dataset", "shots", "vs_best"]
MARKS_RULE = ("**bold**: the best method on that dataset (by H in base-to-new, else accuracy; per shot count in "
              "few-shot); †: not distinguishable from the best at 95% (paired bootstrap over seeds and test "
              "images, as harness compare)")
SEPARATOR = "\x1f"  # joins method and variant into one comparison key; never part of a name
MARK_SETTINGS = CompareSettings(resamples=1000, seed=0)


def _observed(rows: pd.DataFrame, protocol: str) -> dict[str, float]:
    """Dataset -> the ranked measure of one method (H or accuracy, means over runs); the Average too."""
    means = rows.groupby(["dataset", "subsample"])["value"].mean()
    datasets = sorted(set(rows.loc[rows["role"] != "source", "dataset"]))
    if protocol == "base2new":
        parts = {d: (means.get((d, "base"), float("nan")), means.get((d, "new"), float("nan")))
                 for d in sorted(set(rows["dataset"]))}
        values = {d: harmonic_mean(*bn) for d, bn in parts.items()}
        if datasets:
            base = sum(parts[d][0] for d in datasets) / len(datasets)
            values[AVERAGE] = harmonic_mean(base, sum(parts[d][1] for d in datasets) / len(datasets))
        return values
    values = {d: float(means[(d, "all")]) for d in sorted(set(rows["dataset"]))}
    if datasets:
        values[AVERAGE] = sum(values[d] for d in datasets) / len(datasets)
    return values


def _best_per_dataset(group: pd.DataFrame, protocol: str) -> dict[str, tuple[str, dict[str, float]]]:
    """Dataset -> (best key, key -> value); the Average only among keys that ran every dataset."""
    values = {key: _observed(rows, protocol) for key, rows in group.groupby("method", sort=True)}
    everything = set().union(*(set(v) - {AVERAGE} for v in values.values())) if values else set()
    ranked: dict[str, tuple[str, dict[str, float]]] = {}
    for dataset in sorted(set().union(*(set(v) for v in values.values()))):
        candidates = {k: v[dataset] for k, v in values.items() if dataset in v and v[dataset] == v[dataset]}
        if dataset == AVERAGE:
            candidates = {k: x for k, x in candidates.items() if set(values[k]) - {AVERAGE} == everything}
        if len(candidates) > 1:
            ranked[dataset] = (max(sorted(candidates), key=lambda k: candidates[k]), candidates)
    return ranked


def noise_marks(evaluations: pd.DataFrame, protocol: str, settings: CompareSettings = MARK_SETTINGS) -> pd.DataFrame:
    """``MARK_COLUMNS`` rows: ``best`` or ``within noise`` per (method, variant, dataset[, shots]).

    ``shots`` is the shot count for few_shot and None otherwise (one ranking per dataset).
    """
    if evaluations.empty:
        return pd.DataFrame(columns=MARK_COLUMNS)
    frame = evaluations.assign(method=evaluations["method"] + SEPARATOR + evaluations["variant"])
    groups = ([(int(k), frame[frame["shots"] == k]) for k in sorted(frame["shots"].unique()) if k != NO_SEED]
              if protocol == "few_shot" else [(None, frame)])
    measure = "H" if protocol == "base2new" else "accuracy"
    rows = []
    for shots, group in groups:
        compared: dict[tuple[str, str], pd.DataFrame] = {}
        for dataset, (best, candidates) in _best_per_dataset(group, protocol).items():
            rows.append(_mark_row(best, dataset, shots, BEST))
            for other in sorted(candidates):
                if other == best:
                    continue
                if (best, other) not in compared:
                    compared[(best, other)] = _compare(group, protocol, best, other, settings)
                table = compared[(best, other)]
                match = table[(table["dataset"] == dataset) & (table["measure"] == measure)]
                if len(match) and match.iloc[0]["verdict"] == VERDICT_NONE:
                    rows.append(_mark_row(other, dataset, shots, WITHIN_NOISE))
    return pd.DataFrame(rows, columns=MARK_COLUMNS)


def _compare(group: pd.DataFrame, protocol: str, best: str, other: str, settings: CompareSettings) -> pd.DataFrame:
    """The paired comparison, or an empty table when the runs cannot be paired.

    Unpairable runs get no mark rather than an error: a leaderboard must still print, and ``harness compare``
    names the reason.
    """
    try:
        return compare_methods(group, protocol, best, other, settings=settings)
    except HarnessError:
        return pd.DataFrame(columns=["dataset", "measure", "verdict"])


def _mark_row(key: str, dataset: str, shots: int | None, mark: str) -> dict[str, object]:
    method, variant = key.split(SEPARATOR, 1)
    return {"method": method, "variant": variant, "dataset": dataset, "shots": shots, "vs_best": mark}
