"""Figures from run records (matplotlib, Agg backend): few-shot curves and base vs new accuracy per dataset.

PNG output is byte-for-byte reproducible on the same machine: no timestamp or software version is written
into the file (``metadata={"Software": None}``), the backend, DPI, size and style are fixed, and the rows
come from the same deterministic aggregation as the tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # must precede pyplot: no display, deterministic raster output

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from harness.results.aggregate import AVERAGE, base2new_summary, few_shot_summary  # noqa: E402
from harness.results.reference import method_display  # noqa: E402
from harness.results.tables import method_rank  # noqa: E402

COLORS = ("#4c72b0", "#8172b3", "#dd8452", "#55a868", "#c44e52", "#937860", "#da8bc3", "#8c8c8c")
STYLE = {"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7, "figure.dpi": 100, "savefig.dpi": 100,
         "svg.hashsalt": "harness", "path.simplify": False}


def _label(method: str, variant: str, groups: list[tuple[str, str]]) -> str:
    """The method's name, plus its variant when the figure holds more than one variant."""
    if len({v for _, v in groups}) <= 1:
        return method_display(method)
    return f"{method_display(method)} ({variant})"


def _color(method: str, variant: str, groups: list[tuple[str, str]]) -> str:
    """A fixed colour per method (CLIP blue, CoOp orange, CoCoOp green) so figures agree with each other."""
    rank = method_rank(method)[0]
    index = rank if len({v for _, v in groups}) <= 1 else groups.index((method, variant))
    return COLORS[index % len(COLORS)]


def _grid(n: int) -> tuple[int, int]:
    cols = min(4, n)
    return math.ceil(n / cols), cols


def _save(fig: plt.Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def _legend(fig: plt.Figure, ax: plt.Axes) -> None:
    """One legend for the figure, above the panels."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=max(len(labels), 1), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / fig.get_figheight()))


def _groups(summary: pd.DataFrame) -> list[tuple[str, str]]:
    pairs = summary[["method", "variant"]].drop_duplicates().itertuples(index=False)
    return sorted(((str(m), str(v)) for m, v in pairs), key=lambda mv: (method_rank(mv[0]), mv[1]))


def plot_few_shot(records: pd.DataFrame, path: Path, *, display: Mapping[str, str] | None = None,
                  order: Sequence[str] = ()) -> None:
    """Accuracy vs shots per dataset (and Average), one line per method with a mean ± std band.

    Training-free methods (0 shots) are drawn as a dashed horizontal line.
    """
    display = dict(display or {})
    summary = few_shot_summary(records, order=order)
    datasets = list(dict.fromkeys(summary["dataset"]))
    groups = _groups(summary)
    rows, cols = _grid(len(datasets))
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
        for ax, dataset in zip(axes.flat, datasets):
            for method, variant in groups:
                part = summary[(summary["method"] == method) & (summary["variant"] == variant)
                               & (summary["dataset"] == dataset)].sort_values("shots")
                color, label = _color(method, variant, groups), _label(method, variant, groups)
                if part.empty:
                    continue
                if (part["shots"] == 0).all():
                    ax.axhline(float(part["accuracy"].iloc[0]), color=color, linestyle="--", label=label)
                    continue
                std = part["std"].fillna(0.0)
                ax.plot(part["shots"], part["accuracy"], marker="o", color=color, label=label)
                ax.fill_between(part["shots"], part["accuracy"] - std, part["accuracy"] + std, color=color,
                                alpha=0.2, linewidth=0)
            ax.set_xscale("log", base=2)
            ax.set_xticks([1, 2, 4, 8, 16], ["1", "2", "4", "8", "16"])
            ax.set_title(AVERAGE if dataset == AVERAGE else display.get(dataset, dataset))
            ax.set_xlabel("shots per class")
            ax.set_ylabel("accuracy (%)")
            ax.grid(True, alpha=0.3)
        for ax in list(axes.flat)[len(datasets):]:
            ax.axis("off")
        _legend(fig, axes.flat[0])
        _save(fig, path)


def plot_base2new(records: pd.DataFrame, path: Path, *, display: Mapping[str, str] | None = None,
                  order: Sequence[str] = ()) -> None:
    """Base and new accuracy per dataset (and Average): grouped bars per method, std over seeds as error bars."""
    display = dict(display or {})
    summary = base2new_summary(records, order=order)
    datasets = list(dict.fromkeys(summary["dataset"]))
    groups = _groups(summary)
    rows, cols = _grid(len(datasets))
    width = 0.8 / max(len(groups), 1)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
        for ax, dataset in zip(axes.flat, datasets):
            for index, (method, variant) in enumerate(groups):
                row = summary[(summary["method"] == method) & (summary["variant"] == variant)
                              & (summary["dataset"] == dataset)]
                if row.empty:
                    continue
                row = row.iloc[0]
                values = [row["base"], row["new"]]
                errors = None if dataset == AVERAGE else [row["base_std"], row["new_std"]]
                positions = [x - 0.4 + width * (index + 0.5) for x in (0, 1)]
                ax.bar(positions, values, width, yerr=errors, capsize=2, color=_color(method, variant, groups),
                       label=_label(method, variant, groups))
            ax.set_xticks([0, 1], ["base", "new"])
            ax.set_title(AVERAGE if dataset == AVERAGE else display.get(dataset, dataset))
            ax.set_ylabel("accuracy (%)")
            ax.set_ylim(0, 100)
            ax.grid(True, axis="y", alpha=0.3)
        for ax in list(axes.flat)[len(datasets):]:
            ax.axis("off")
        _legend(fig, axes.flat[0])
        _save(fig, path)


PLOTS: dict[str, Callable[..., None]] = {"few_shot": plot_few_shot, "base2new": plot_base2new}
