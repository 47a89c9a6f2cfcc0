"""Aggregation against hand-computed values: seed statistics, H, the Average row, incomplete rows."""

from __future__ import annotations

import csv
import math

import pandas as pd
import pytest

from harness.results.aggregate import (
    base2new_summary,
    consistency_warnings,
    few_shot_summary,
    harmonic_mean,
    seed_stats,
    transfer_summary,
)
from harness.results.reference import reference_path


def record(method: str, dataset: str, subsample: str, seed: int | None, value: float, *, shots: int | None = 16,
           metric: str = "accuracy", train_dataset: str | None = None) -> dict[str, object]:
    return {"run_key": f"{method}-{dataset}-{seed}-{shots}", "method": method, "dataset": dataset,
            "train_dataset": train_dataset, "subsample": subsample, "split": "test", "shots": shots, "seed": seed,
            "metric": metric, "value": value}


def base2new_records(drop: tuple[str, str, int] | None = None) -> pd.DataFrame:
    values = {("A", "base"): [80, 82, 84], ("A", "new"): [60, 60, 63], ("B", "base"): [90, 90, 90],
              ("B", "new"): [70, 70, 70]}
    rows = []
    for (dataset, subsample), accs in values.items():
        for seed, acc in zip((1, 2, 3), accs):
            if (dataset, subsample, seed) != drop:
                rows.append(record("coop", dataset, subsample, seed, acc))
                rows.append(record("coop", dataset, subsample, seed, acc / 2, metric="macro_f1"))
    return pd.DataFrame(rows)


def test_seed_stats_are_population_std_and_parse_test_res_ci95() -> None:
    stats = seed_stats([80.0, 82.0, 84.0])
    assert stats["mean"] == 82.0
    assert stats["std"] == pytest.approx(math.sqrt(8 / 3))  # ddof 0, not the sample std 2.0
    assert stats["ci95"] == pytest.approx(1.96 * math.sqrt(8 / 3) / math.sqrt(3))
    assert stats["n"] == 3
    assert seed_stats([math.nan])["n"] == 0


def test_harmonic_mean() -> None:
    assert harmonic_mean(82.0, 61.0) == pytest.approx(10004 / 143)
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert math.isnan(harmonic_mean(80.0, math.nan))


def test_base2new_rows_and_average_by_hand() -> None:
    table = base2new_summary(base2new_records(), order=["A", "B"])
    assert list(table["dataset"]) == ["A", "B", "Average"]
    a, b, average = (table.iloc[i] for i in range(3))
    assert (a["base"], a["new"]) == (82.0, 61.0)
    assert a["base_std"] == pytest.approx(math.sqrt(8 / 3)) and a["new_std"] == pytest.approx(math.sqrt(2))
    assert a["hm"] == pytest.approx(2 * 82 * 61 / (82 + 61))  # 69.958
    assert b["hm"] == pytest.approx(78.75)
    assert a["n_seeds"] == 3 and a["complete"]
    # The Average row is H of the averaged base (86) and new (65.5): 74.3630, not the mean of H (74.3542).
    assert (average["base"], average["new"]) == (86.0, 65.5)
    assert average["hm"] == pytest.approx(2 * 86 * 65.5 / (86 + 65.5))
    assert average["hm"] != pytest.approx((a["hm"] + b["hm"]) / 2, abs=1e-3)
    assert average["complete"] and average["note"] == "over 2 datasets"


def test_missing_seed_marks_the_row_and_the_average_incomplete() -> None:
    table = base2new_summary(base2new_records(drop=("B", "new", 3)), order=["A", "B"])
    b, average = table.iloc[1], table.iloc[2]
    assert not b["complete"] and b["note"] == "new: missing seed 3"
    assert b["new"] == 70.0 and b["n_seeds"] == 2 and b["n_expected"] == 3
    assert not average["complete"] and "B" in average["note"]
    assert math.isnan(average["base"]) and math.isnan(average["hm"])
    assert table.iloc[0]["complete"]


def test_missing_dataset_for_one_method_is_an_incomplete_row() -> None:
    records = pd.concat([base2new_records(), pd.DataFrame([record("cocoop", "A", s, seed, 75.0)
                                                           for s in ("base", "new") for seed in (1, 2, 3)])])
    table = base2new_summary(records, order=["A", "B"])
    cocoop = table[table["method"] == "cocoop"]
    assert list(cocoop["dataset"]) == ["A", "B", "Average"]
    assert cocoop.iloc[1]["note"] == "base: missing seed 1, 2, 3; new: missing seed 1, 2, 3"
    assert not cocoop.iloc[2]["complete"]


def test_expected_plan_decides_completeness() -> None:
    expected = pd.DataFrame([{"method": "coop", "variant": "", "dataset": d, "subsample": s, "shots": 16, "seed": k}
                             for d in ("A", "B") for s in ("base", "new") for k in (1, 2, 3, 4)])
    table = base2new_summary(base2new_records(), expected=expected, order=["A", "B"])
    assert table.iloc[0]["note"] == "base: missing seed 4; new: missing seed 4"


def test_zero_shot_single_run_has_one_seed_and_zero_std() -> None:
    records = pd.DataFrame([record("zeroshot", "A", "base", None, 70.0, shots=None),
                            record("zeroshot", "A", "new", None, 75.0, shots=None)])
    row = base2new_summary(records).iloc[0]
    assert row["n_seeds"] == 1 and row["base_std"] == 0.0 and row["complete"]


def test_duplicate_records_are_refused() -> None:
    records = base2new_records()
    with pytest.raises(ValueError, match="counted twice"):
        base2new_summary(pd.concat([records, records.iloc[:1]]))


def test_transfer_average_is_over_targets_only() -> None:
    rows = [record("coop", d, "all", seed, v + seed, train_dataset="S")
            for d, v in (("S", 70), ("T1", 50), ("T2", 40)) for seed in (1, 2)]
    table = transfer_summary(pd.DataFrame(rows), source="S", order=["T2", "T1"])
    assert list(table["dataset"]) == ["S", "T2", "T1", "Average"]
    assert list(table["role"][:3]) == ["source", "target", "target"]
    assert table.iloc[3]["accuracy"] == pytest.approx((51.5 + 41.5) / 2)
    incomplete = transfer_summary(pd.DataFrame(rows[:-1]), source="S")
    assert not incomplete.iloc[-1]["complete"] and "T2" in incomplete.iloc[-1]["note"]


def test_few_shot_average_per_shot_count_and_zero_shot_at_zero() -> None:
    rows = [record("coop", d, "all", seed, 10.0 * k + seed + (5 if d == "B" else 0), shots=k)
            for d in ("A", "B") for k in (1, 2) for seed in (1, 2)]
    rows += [record("zeroshot", d, "all", None, 33.0, shots=None) for d in ("A", "B")]
    table = few_shot_summary(pd.DataFrame(rows), order=["A", "B"])
    coop = table[(table["method"] == "coop") & (table["dataset"] == "Average")]
    assert list(coop["shots"]) == [1, 2]
    assert list(coop["accuracy"]) == [pytest.approx(10 + 1.5 + 2.5), pytest.approx(20 + 1.5 + 2.5)]
    zeroshot = table[table["method"] == "zeroshot"]
    assert set(zeroshot["shots"]) == {0} and zeroshot.iloc[-1]["accuracy"] == 33.0


def test_published_cocoop_average_row_is_h_of_averages() -> None:
    """The papers' arithmetic: CoCoOp's 11 published rows give the published Average 80.47 / 71.69 / 75.83."""
    with open(reference_path("base2new")) as handle:
        published = [r for r in csv.DictReader(handle) if r["method"] == "CoCoOp" and r["dataset"] != "Average"]
    rows = [record("cocoop", r["dataset"], part, 1, float(r[part])) for r in published for part in ("base", "new")]
    average = base2new_summary(pd.DataFrame(rows)).iloc[-1]
    assert len(published) == 11
    assert (round(average["base"], 2), round(average["new"], 2), round(average["hm"], 2)) == (80.47, 71.69, 75.83)


def test_records_from_different_weights_or_configs_are_flagged() -> None:
    records = base2new_records().assign(variant="embedded", backbone_sha256="a" * 64, config_hash="c1",
                                        split_sha256="s")
    assert consistency_warnings(records) == []
    records.loc[records["seed"] == 3, "backbone_sha256"] = "b" * 64
    records.loc[(records["dataset"] == "B") & (records["seed"] == 2), "config_hash"] = "c2"
    warnings = consistency_warnings(records)
    assert warnings[0].startswith("coop embedded: runs used different backbone weights (aaaaaaaaaaaa, bbbbbbbbbbbb)")
    assert warnings[1].startswith("coop embedded: seeds of B ran with different configs")
