"""Forest plot of a paired comparison: per dataset, the difference A - B with its 95% interval.

One panel per measure (accuracy; or base, new and H in base-to-new), one row per dataset (and shot count in
few-shot), the Average last; a vertical line marks no difference. Rendered like the other figures
(``harness.results.plots``): Agg backend, fixed style, no timestamp, byte-identical on rerun.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from harness.results.aggregate import AVERAGE
from harness.results.bootstrap import VERDICT_NONE
from harness.results.plots import COLORS, STYLE, _save, plt
from harness.results.reference import method_display

NO_DIFFERENCE_COLOR, DIFFERENCE_COLOR = "#8c8c8c", COLORS[0]


def _labels(table: pd.DataFrame, display: Mapping[str, str]) -> list[str]:
    several_shots = table["shots"].dropna().nunique() > 1
    labels = []
    for dataset, shots in zip(table["dataset"], table["shots"]):
        name = AVERAGE if dataset == AVERAGE else display.get(str(dataset), str(dataset))
        labels.append(f"{name} ({int(shots)} shots)" if several_shots and not pd.isna(shots) else name)
    return labels


def plot_forest(table: pd.DataFrame, path: Path, *, display: Mapping[str, str] | None = None) -> None:
    """Draw ``harness.results.compare.compare_methods``'s table as a forest plot (PNG at ``path``).

    Rows without an interval (no paired runs) are left out. A grey interval contains 0 (no difference at 95%).
    """
    display = dict(display or {})
    table = table[table["ci_low"].notna()].reset_index(drop=True)
    measures = list(dict.fromkeys(table["measure"]))
    a, b = (method_display(str(table[c].iloc[0])) for c in ("method_a", "method_b")) if len(table) else ("A", "B")
    rows = max((table["measure"] == m).sum() for m in measures) if measures else 1
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, max(len(measures), 1), figsize=(3.2 * max(len(measures), 1), 0.8 + 0.3 * rows),
                                 squeeze=False, sharey=True)
        for ax, measure in zip(axes.flat, measures):
            part = table[table["measure"] == measure].reset_index(drop=True)
            positions = list(range(len(part)))[::-1]  # first dataset at the top
            for y, (_, row) in zip(positions, part.iterrows()):
                color = NO_DIFFERENCE_COLOR if row["verdict"] == VERDICT_NONE else DIFFERENCE_COLOR
                marker = "D" if row["dataset"] == AVERAGE else "o"
                ax.errorbar(row["diff"], y, xerr=[[row["diff"] - row["ci_low"]], [row["ci_high"] - row["diff"]]],
                            fmt=marker, color=color, capsize=2, markersize=4)
            ax.axvline(0.0, color="black", linewidth=0.8)
            ax.set_yticks(positions, _labels(part, display))
            ax.set_title(str(measure))
            ax.set_xlabel(f"{a} − {b} (points)")
            ax.grid(True, axis="x", alpha=0.3)
        fig.suptitle(f"{a} − {b}: paired difference, 95% interval (grey: contains 0)")
        fig.tight_layout()
        _save(fig, path)
