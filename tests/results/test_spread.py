"""Outlier seeds, the draw / training variance split, and the leaderboard's best / within-noise marks."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.results.aggregate import base2new_summary
from harness.results.marks import noise_marks
from harness.results.spread import outlier_seeds, variance_components
from harness.results.tables import leaderboard, render


def test_a_collapsed_seed_is_an_outlier_and_scattered_seeds_are_not() -> None:
    assert outlier_seeds({1: 80.0, 2: 81.0, 3: 68.0}) == [(3, 68.0, 80.5)]
    assert outlier_seeds({1: 45.0, 2: 50.71, 3: 54.29}) == []  # all scatter: no seed stands apart
    assert outlier_seeds({1: 100.0, 2: 100.0, 3: 94.0}) == [(3, 94.0, 100.0)]
    assert outlier_seeds({1: 80.0, 2: 81.0, 3: 76.5}) == []  # within 5 points
    assert outlier_seeds({1: 80.0, 2: 60.0}) == []  # two seeds: no rule
    assert outlier_seeds({1: 80.0, 2: 81.0, 3: math.nan}) == []


def test_variance_components_by_hand() -> None:
    """Seed 1 draws 60, 62; seed 2 draws 70, 72. Within-seed variance (ddof 1): 2 and 2, so draw std
    sqrt(2); seed means 61 and 71 have variance 50, less 2 / 2 draws: training std 7."""
    draw, training = variance_components({(1, 0): 60.0, (1, 1): 62.0, (2, 0): 70.0, (2, 1): 72.0})
    assert draw == pytest.approx(math.sqrt(2)) and training == pytest.approx(7.0)
    assert variance_components({(1, 0): 60.0, (2, 0): 70.0}) == (pytest.approx(math.nan, nan_ok=True),) * 2
    unbalanced = variance_components({(1, 0): 60.0, (1, 1): 62.0, (2, 0): 70.0})
    assert all(math.isnan(v) for v in unbalanced)


def record(method: str, dataset: str, subsample: str, seed: int, draw: int, value: float) -> dict[str, object]:
    return {"method": method, "variant": "embedded", "dataset": dataset, "subsample": subsample, "split": "test",
            "shots": 16, "seed": seed, "draw": draw, "metric": "accuracy", "value": value}


def test_draws_are_counted_as_runs_and_split_in_the_summary() -> None:
    rows = [record("coop", "d", part, seed, draw, base + 10 * (seed - 1) + 2 * draw)
            for part, base in (("base", 60.0), ("new", 50.0)) for seed in (1, 2) for draw in (0, 1)]
    row = base2new_summary(pd.DataFrame(rows)).iloc[0]
    assert row["n_seeds"] == 4 and row["complete"] and row["base"] == 66.0
    assert row["base_draw_std"] == pytest.approx(math.sqrt(2)) and row["base_train_std"] == pytest.approx(7.0)
    text = render(leaderboard(pd.DataFrame(rows), "base2new"), "base2new", "markdown")
    assert "Std: draw / training" in text and "B 1.41 / 7.00; N 1.41 / 7.00" in text


def evaluations() -> pd.DataFrame:
    values = {"coop": (80.0, 81.0, 79.0), "cocoop": (80.0, 80.5, 79.5), "zeroshot": (60.0, 61.0, 59.0)}
    rows = [{"method": m, "variant": "embedded", "dataset": "d", "subsample": "all", "shots": 16, "seed": seed,
             "draw": 0, "value": v, "predictions": None, "role": "target"}
            for m, vs in values.items() for seed, v in zip((1, 2, 3), vs)]
    return pd.DataFrame(rows)


def test_marks_best_and_within_noise_and_render_them() -> None:
    marks = noise_marks(evaluations(), "few_shot")
    found = {(r.method, r.dataset): r.vs_best for r in marks.itertuples()}
    # coop and cocoop tie at 80.0; the tie goes to the first name in order (cocoop), coop is within noise.
    assert found == {("cocoop", "d"): "best", ("coop", "d"): "within noise", ("cocoop", "Average"): "best",
                     ("coop", "Average"): "within noise"}
    records = evaluations().assign(split="test", metric="accuracy")
    table = leaderboard(records, "few_shot", marks=marks)
    assert dict(zip(table["method"], table["vs_best"])) == {"CLIP": "", "CoOp": "within noise", "CoCoOp": "best"}
    text = render(table, "few_shot", "markdown")
    assert "| CoCoOp | embedded | d | **80.00 ± 0.41** |" in text and "80.00 ± 0.82 †" in text
    assert "outlier: a seed further from the median" in text
