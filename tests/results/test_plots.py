"""Figures: written as PNG, byte-identical when regenerated from the same records."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.results.plots import plot_base2new, plot_few_shot


def records() -> pd.DataFrame:
    rows = []
    for method in ("coop", "cocoop"):
        for dataset in ("a", "b"):
            for seed in (1, 2, 3):
                for shots in (1, 2, 4, 8, 16):
                    rows.append({"method": method, "dataset": dataset, "subsample": "all", "split": "test",
                                 "shots": shots, "seed": seed, "metric": "accuracy",
                                 "value": 40.0 + 3 * shots ** 0.5 + seed + (5 if method == "cocoop" else 0)})
                for subsample in ("base", "new"):
                    rows.append({"method": method, "dataset": dataset, "subsample": subsample, "split": "test",
                                 "shots": 16, "seed": seed, "metric": "accuracy",
                                 "value": 70.0 + seed + (10 if subsample == "base" else 0)})
    for dataset in ("a", "b"):
        rows.append({"method": "zeroshot", "dataset": dataset, "subsample": "all", "split": "test", "shots": None,
                     "seed": None, "metric": "accuracy", "value": 45.0})
    return pd.DataFrame(rows)


def test_plots_are_png_and_byte_identical_on_rerun(tmp_path: Path) -> None:
    frame = records()
    for name, plot in (("few_shot", plot_few_shot), ("base2new", plot_base2new)):
        first, second = tmp_path / f"{name}-1.png", tmp_path / f"{name}-2.png"
        plot(frame, first, display={"a": "A", "b": "B"}, order=["b", "a"])
        plot(frame.sample(frac=1.0, random_state=0), second, display={"a": "A", "b": "B"}, order=["b", "a"])
        data = first.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"Software" not in data and b"matplotlib" not in data.lower()
        assert data == second.read_bytes()
