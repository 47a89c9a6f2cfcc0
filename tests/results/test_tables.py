"""Leaderboard rendering: fixed columns, deterministic order, published values and differences."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from harness.results.tables import COLUMNS, leaderboard, render


def rec(method: str, variant: str, dataset: str, subsample: str, seed: int | None, value: float,
        shots: int | None = 16, train_dataset: str | None = None) -> dict[str, object]:
    return {"method": method, "variant": variant, "dataset": dataset, "subsample": subsample, "split": "test",
            "shots": shots, "seed": seed, "metric": "accuracy", "value": value, "train_dataset": train_dataset}


DISPLAY = {"dtd": "DTD", "eurosat": "EuroSAT", "imagenet": "ImageNet"}


def base2new_records() -> pd.DataFrame:
    rows = [rec("cocoop", "ViT-B-16.openai", d, s, k, v + k)
            for d, v in (("eurosat", 80.0), ("dtd", 70.0)) for s in ("base", "new") for k in (1, 2, 3)]
    rows += [rec("zeroshot", "ViT-B-16.openai", d, s, None, 50.0, shots=None)
             for d in ("eurosat", "dtd") for s in ("base", "new")]
    return pd.DataFrame(rows)


def test_base2new_leaderboard_order_columns_and_published_difference() -> None:
    table = leaderboard(base2new_records(), "base2new", display=DISPLAY, order=["dtd", "eurosat"])
    assert list(table.columns) == COLUMNS["base2new"]
    assert list(zip(table["method"], table["dataset"])) == [
        ("CLIP", "DTD"), ("CLIP", "EuroSAT"), ("CLIP", "Average"),
        ("CoCoOp", "DTD"), ("CoCoOp", "EuroSAT"), ("CoCoOp", "Average")]
    dtd = table.iloc[3]
    assert dtd["base"] == 72.0 and dtd["published_base"] == 77.01
    assert dtd["diff_base"] == pytest.approx(72.0 - 77.01)
    assert table.iloc[5]["published_hm"] == 75.83  # CoCoOp's published Average H
    assert table.iloc[0]["published_new"] == 59.90  # CLIP on DTD


def test_markdown_shows_mean_std_seeds_and_status() -> None:
    records = base2new_records()
    records = records[~((records["dataset"] == "dtd") & (records["seed"] == 3) & (records["subsample"] == "new"))]
    text = render(leaderboard(records, "base2new", display=DISPLAY, order=["dtd", "eurosat"]), "base2new",
                  "markdown")
    lines = text.splitlines()
    assert lines[0] == "### base2new: top-1 accuracy (%)"
    assert "ddof=0" in lines[2] and "H of the averaged base and new" in lines[3]
    dtd = next(line for line in lines if line.startswith("| CoCoOp | ViT-B-16.openai | DTD"))
    assert "72.00 ± 0.82" in dtd and "| 2/3 |" in dtd and "new: missing seed 3" in dtd
    average = next(line for line in lines if line.startswith("| CoCoOp | ViT-B-16.openai | Average"))
    assert "incomplete: dtd not complete" in average and "| - |" in average


def test_no_published_comparison_for_other_backbones() -> None:
    records = base2new_records().assign(variant="embedded")
    table = leaderboard(records, "base2new", display=DISPLAY)
    assert table["published_base"].isna().all()


def test_csv_is_deterministic_with_fixed_columns() -> None:
    first = render(leaderboard(base2new_records(), "base2new", display=DISPLAY), "base2new", "csv")
    shuffled = base2new_records().sample(frac=1.0, random_state=3)
    second = render(leaderboard(shuffled, "base2new", display=DISPLAY, order=[]), "base2new", "csv")
    rows = list(csv.DictReader(io.StringIO(first)))
    assert list(rows[0]) == COLUMNS["base2new"]
    assert rows[0]["seeds"] == "1" and rows[3]["base_std"] == "0.8165"
    assert sorted(first.splitlines()) == sorted(second.splitlines())


def test_transfer_leaderboard_marks_the_source() -> None:
    rows = [rec("coop", "ViT-B-16.openai", d, "all", k, 60.0, train_dataset="imagenet")
            for d in ("imagenet", "dtd", "eurosat") for k in (1, 2)]
    table = leaderboard(pd.DataFrame(rows), "cross_dataset", display=DISPLAY, order=["dtd", "eurosat"])
    assert list(table["dataset"]) == ["ImageNet", "DTD", "EuroSAT", "Average"]
    assert table.iloc[0]["role"] == "source" and table.iloc[0]["published"] == 71.51
    text = render(table, "cross_dataset", "markdown")
    assert "| CoOp | ViT-B-16.openai | ImageNet (source) | 60.00 ± 0.00 | 2 | 71.51 | -11.51 |" in text


def test_few_shot_markdown_is_one_row_per_dataset_with_a_column_per_shot_count() -> None:
    rows = [rec("coop", "ViT-B-16.openai", "dtd", "all", seed, 50.0 + shots, shots=shots)
            for shots in (1, 2, 4, 8, 16) for seed in (1, 2, 3)]
    rows += [rec("zeroshot", "ViT-B-16.openai", "dtd", "all", None, 44.0, shots=None)]
    table = leaderboard(pd.DataFrame(rows[:-2] + rows[-1:]), "few_shot", display=DISPLAY)
    text = render(table, "few_shot", "markdown")
    assert "| Method | Model | Dataset | 0 shots | 1 shots | 2 shots | 4 shots | 8 shots | 16 shots | Seeds |" in text
    assert "| CLIP | ViT-B-16.openai | DTD | 44.00 ± 0.00 |  |  |  |  |  | 1 |  |" in text
    coop = next(line for line in text.splitlines() if line.startswith("| CoOp | ViT-B-16.openai | DTD |"))
    assert "| 51.00 ± 0.00 [50.23, +0.77] |" in coop  # published CoOp 1-shot DTD (PromptSRC supplementary)
    assert "| 2/3 | 16 shots: missing seed 3 |" in coop
