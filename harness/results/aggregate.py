"""Aggregation of run records into per-dataset summaries: pure pandas, written down once and tested.

Conventions (spec section 10, and the papers):

- Over seeds: the mean, the **population** standard deviation (``np.std``, ddof 0) as the official
  ``parse_test_res.py`` prints it, and its 95% interval ``1.96 * std / sqrt(n)`` (``parse_test_res.py --ci95``).
- Base-to-new: ``H = 2BN / (B + N)`` of the seed-averaged base and new accuracies; the Average row is
  H of the averaged base and the averaged new accuracy (not the mean of per-dataset H).
- Cross-dataset and domain generalization: the Average is over the targets (the source is reported apart).
- Completeness: every row knows which (dataset, seed) cells it expected; a row missing one is marked
  incomplete, and an Average over incomplete rows is not computed (its values are NaN and its note says why).

Inputs are records as ``harness.results.records`` writes them, one row per (run, evaluation, metric), plus a
``variant`` column (the backbone and any non-default settings; ``""`` if absent). Training-free runs have
no seed and no shots; they are kept as seed/shots ``-1`` inside these tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from harness.results.spread import outlier_seeds, variance_components

GROUP = ["method", "variant"]
NO_SEED = -1
AVERAGE = "Average"
STD_LABEL = "std: population standard deviation over seeds (ddof=0), as parse_test_res.py"
CI95_LABEL = "ci95: 1.96 * std / sqrt(n seeds), as parse_test_res.py --ci95"


def harmonic_mean(base: float, new: float) -> float:
    """H = 2BN / (B + N); 0 when both are 0, NaN when either is NaN."""
    if math.isnan(base) or math.isnan(new):
        return math.nan
    return 0.0 if base + new == 0 else 2 * base * new / (base + new)


def seed_stats(values: Sequence[float]) -> dict[str, float]:
    """Mean, population std (ddof 0), ci95 and count of the non-NaN ``values``; NaN stats when there are none."""
    present = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    n = len(present)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "ci95": math.nan, "n": 0}
    std = float(np.std(present, ddof=0))
    return {"mean": float(np.mean(present)), "std": std, "ci95": 1.96 * std / math.sqrt(n), "n": n}


def accuracy_cells(records: pd.DataFrame) -> pd.DataFrame:
    """Test accuracies, one row per (method, variant, dataset, subsample, shots, seed), with -1 for no seed/shots.

    Raises:
        ValueError: if a cell has two values (a run counted twice).
    """
    frame = records[(records["metric"] == "accuracy") & (records["split"] == "test")].copy()
    if "variant" not in frame:
        frame["variant"] = ""
    for column in ("seed", "shots"):
        frame[column] = frame[column].apply(lambda v: NO_SEED if v is None or pd.isna(v) else int(v))
    frame["draw"] = _draws(frame)
    keys = [*GROUP, "dataset", "subsample", "shots", "seed", "draw"]
    duplicated = frame.duplicated(keys, keep=False)
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        raise ValueError(f"two accuracy records for the same cell: {dict(first[keys])} (runs counted twice?)")
    return frame[[*keys, "value"]].reset_index(drop=True)


def _draws(frame: pd.DataFrame) -> pd.Series | int:
    """The few-shot draw of each row: 0 (the official draw) where the records have none."""
    if "draw" not in frame:
        return 0
    return frame["draw"].apply(lambda v: 0 if v is None or pd.isna(v) else int(v))


def closure(cells: pd.DataFrame, by: Sequence[str], shared: Sequence[str], own: Sequence[str]) -> pd.DataFrame:
    """The expected cells when no plan is given.

    Per ``by`` group, every combination of the ``shared`` values seen anywhere in the table (e.g. the
    datasets any method ran) with the ``own`` values seen in that group (e.g. the seeds that method ran).
    """
    rows = []
    shared_values = cells[list(shared)].drop_duplicates()
    for key, group in cells.groupby(list(by), sort=False):
        combos = shared_values
        for column in own:
            combos = combos.merge(pd.DataFrame({column: sorted(group[column].unique())}), how="cross")
        combos = combos.copy()
        for column, value in zip(by, key if isinstance(key, tuple) else (key,)):
            combos[column] = value
        rows.append(combos)
    columns = [*by, *shared, *own]
    return pd.concat(rows, ignore_index=True)[columns] if rows else pd.DataFrame(columns=columns)


def fill_expected(cells: pd.DataFrame, expected: pd.DataFrame) -> pd.DataFrame:
    """Outer-join observed cells onto the expected ones: missing cells get NaN values."""
    keys = [c for c in expected.columns if c in cells.columns and c != "value"]
    merged = expected[keys].drop_duplicates().merge(cells, on=keys, how="outer")
    return merged


def summarize(cells: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per ``keys`` group: mean, std, ci95, runs present and expected, missing seeds, complete, and the spread.

    With ``--draws`` a group holds seeds x draws runs: ``n_seeds`` counts runs, the statistics are over all of
    them, and ``draw_std`` / ``train_std`` split the spread (``harness.results.spread``). ``outliers`` lists
    the outlier seeds (their values averaged over draws).
    """
    rows = []
    for key, group in cells.groupby(list(keys), sort=False, dropna=False):
        stats = seed_stats(group["value"].tolist())
        missing = sorted({int(s) for s in group.loc[group["value"].isna(), "seed"]})
        present = group.dropna(subset=["value"])
        per_seed = present.groupby("seed")["value"].mean().to_dict()
        draw_std, train_std = variance_components(
            {(int(s), int(d)): float(v) for s, d, v in zip(present["seed"], present["draw"], present["value"])})
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row.update(accuracy=stats["mean"], std=stats["std"], ci95=stats["ci95"], n_seeds=stats["n"],
                   n_expected=len(group), missing_seeds=tuple(missing), complete=not missing,
                   draw_std=draw_std, train_std=train_std,
                   outliers=tuple(outlier_seeds({int(k): float(v) for k, v in per_seed.items() if k != NO_SEED})))
        rows.append(row)
    return pd.DataFrame(rows)


def _missing_note(prefix: str, missing: tuple[int, ...]) -> str:
    if not missing:
        return ""
    shown = ", ".join("(no seed)" if s == NO_SEED else str(s) for s in missing)
    return f"{prefix}missing seed {shown}"


def _order(frame: pd.DataFrame, order: Sequence[str] | None) -> pd.DataFrame:
    names = list(order or [])
    rank = {name: i for i, name in enumerate(names)}
    key = frame["dataset"].map(lambda d: (rank.get(d, len(names)), d))
    return frame.assign(_rank=key).sort_values("_rank", kind="stable").drop(columns="_rank")


def _prepare(records: pd.DataFrame, expected: pd.DataFrame | None, subsamples: Sequence[str],
             by: Sequence[str], shared: Sequence[str], own: Sequence[str]) -> pd.DataFrame:
    cells = accuracy_cells(records)
    cells = cells[cells["subsample"].isin(subsamples)]
    if expected is None:
        expected = closure(cells, by, shared, own)
    else:
        expected = expected.copy()
        for column in ("seed", "shots"):
            expected[column] = expected[column].apply(lambda v: NO_SEED if v is None or pd.isna(v) else int(v))
        expected["draw"] = _draws(expected)
        expected = expected[expected["subsample"].isin(subsamples)]
    return fill_expected(cells, expected)


def base2new_summary(records: pd.DataFrame, expected: pd.DataFrame | None = None,
                     order: Sequence[str] | None = None) -> pd.DataFrame:
    """Base-to-new rows: per method, variant, shots and dataset, base/new mean, std, ci95, H; Average last.

    Args:
        records: accuracy records (``subsample`` ``base`` or ``new``).
        expected: the planned cells (columns method, variant, dataset, subsample, shots, seed); ``None``
            derives them from the records (see ``closure``).
        order: dataset order of the rows (others follow by name).
    """
    cells = _prepare(records, expected, ("base", "new"), [*GROUP, "shots"], ["dataset", "subsample"], ["seed", "draw"])
    stats = summarize(cells, [*GROUP, "shots", "dataset", "subsample"])
    rows = []
    for key, group in stats.groupby([*GROUP, "shots", "dataset"], sort=False):
        row = dict(zip([*GROUP, "shots", "dataset"], key))
        notes = []
        for part in ("base", "new"):
            match = group[group["subsample"] == part]
            found = match.iloc[0] if len(match) else None
            for stat in ("accuracy", "std", "ci95", "draw_std", "train_std"):
                row[part if stat == "accuracy" else f"{part}_{stat}"] = math.nan if found is None else found[stat]
            row[f"{part}_outliers"] = () if found is None else found["outliers"]
            row[f"{part}_seeds"] = 0 if found is None else int(found["n_seeds"])
            notes.append(f"no {part} results" if found is None else _missing_note(f"{part}: ", found["missing_seeds"]))
        row["hm"] = harmonic_mean(row["base"], row["new"])
        row["n_seeds"] = min(row["base_seeds"], row["new_seeds"])
        row["n_expected"] = int(group["n_expected"].max())
        row["note"] = "; ".join(n for n in notes if n)
        row["complete"] = not row["note"]
        rows.append(row)
    table = _order(pd.DataFrame(rows), order) if rows else pd.DataFrame(rows)
    return _with_averages(table, [*GROUP, "shots"], _base2new_average)


def _base2new_average(rows: pd.DataFrame) -> dict[str, object]:
    base, new = float(rows["base"].mean()), float(rows["new"].mean())
    return {"base": base, "new": new, "hm": harmonic_mean(base, new)}


def _with_averages(table: pd.DataFrame, by: list[str], average: object, pool: pd.Series | None = None) -> pd.DataFrame:
    """Append an Average row after each ``by`` group, computed only when every row in ``pool`` is complete."""
    if table.empty:
        return table
    pieces = []
    for key, group in table.groupby(by, sort=False):
        pooled = group if pool is None else group[pool.loc[group.index]]
        row: dict[str, object] = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row["dataset"] = AVERAGE
        incomplete = [str(d) for d in pooled.loc[~pooled["complete"], "dataset"]]
        if incomplete or pooled.empty:
            row.update(complete=False, note="incomplete: " + (", ".join(incomplete) or "no datasets") + " not complete")
        else:
            row.update(average(pooled))  # type: ignore[operator]
            row.update(complete=True, note=f"over {len(pooled)} datasets")
        row["n_seeds"] = int(pooled["n_seeds"].min()) if len(pooled) else 0
        row["n_expected"] = int(pooled["n_expected"].max()) if len(pooled) else 0
        pieces += [group, pd.DataFrame([row])]
    return pd.concat(pieces, ignore_index=True)


def transfer_summary(records: pd.DataFrame, source: str | None, expected: pd.DataFrame | None = None,
                     order: Sequence[str] | None = None) -> pd.DataFrame:
    """Cross-dataset / domain-generalization rows: per method, variant and evaluated dataset; Average of targets.

    Args:
        records: accuracy records of full test sets (``subsample`` ``all``).
        source: the dataset trained on; its row is kept (``role`` ``source``) but left out of the Average.
        expected: planned cells (method, variant, dataset, subsample, shots, seed), or ``None`` (``closure``).
        order: dataset order of the rows (others follow by name).
    """
    cells = _prepare(records, expected, ("all",), [*GROUP, "shots"], ["dataset"], ["seed", "draw"])
    table = summarize(cells, [*GROUP, "shots", "dataset"])
    if table.empty:
        return table
    table["role"] = np.where(table["dataset"] == source, "source", "target")
    table["note"] = [_missing_note("", m) for m in table["missing_seeds"]]
    table = _order(table, [*([source] if source else []), *(order or [])]).reset_index(drop=True)
    return _with_averages(table, [*GROUP, "shots"], _accuracy_average, pool=table["role"] == "target")


def _accuracy_average(rows: pd.DataFrame) -> dict[str, object]:
    return {"accuracy": float(rows["accuracy"].mean())}


def few_shot_summary(records: pd.DataFrame, expected: pd.DataFrame | None = None,
                     order: Sequence[str] | None = None) -> pd.DataFrame:
    """Few-shot rows: per method, variant, shots and dataset; an Average over datasets per shot count.

    Training-free methods (no shots) appear with ``shots`` 0.
    """
    cells = _prepare(records, expected, ("all",), GROUP, ["dataset"], ["shots", "seed", "draw"])
    cells["shots"] = cells["shots"].replace(NO_SEED, 0)
    table = summarize(cells, [*GROUP, "shots", "dataset"])
    if table.empty:
        return table
    table["note"] = [_missing_note("", m) for m in table["missing_seeds"]]
    table = _order(table, order).sort_values([*GROUP, "shots"], kind="stable").reset_index(drop=True)
    return _with_averages(table, [*GROUP, "shots"], _accuracy_average)


def consistency_warnings(records: pd.DataFrame) -> list[str]:
    """Warnings for records that should not be averaged together but share a leaderboard row.

    Runs are skipped by run key, so runs finished before the backbone's weights, a preset or a split file
    changed keep their old numbers. Within a method and variant, every record must come from the same
    backbone weights, and the seeds of one (dataset, subsample, shots) cell from the same config and split.
    """
    warnings = []
    frame = records.assign(variant=records["variant"] if "variant" in records else "")
    for (method, variant), group in frame.groupby(GROUP, sort=True):
        weights = sorted(group["backbone_sha256"].dropna().unique()) if "backbone_sha256" in group else []
        if len(weights) > 1:
            shown = ", ".join(w[:12] for w in weights)
            warnings.append(f"{method} {variant}: runs used different backbone weights ({shown}); "
                            "rerun the stale ones with --force")
        for column, what in (("config_hash", "configs"), ("split_sha256", "split files")):
            if column not in group:
                continue
            cells = group.groupby(["dataset", "subsample", group["shots"].fillna(NO_SEED)])[column].nunique()
            mixed = sorted({str(d) for (d, _, _), n in cells.items() if n > 1})
            if mixed:
                warnings.append(f"{method} {variant}: seeds of {', '.join(mixed)} ran with different {what}; "
                                "rerun the stale ones with --force")
    return warnings
