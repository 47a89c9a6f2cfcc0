"""``harness compare`` end to end on tiny run folders written in the runner's layout (spec, records, predictions)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.engine.runner import DONE_NAME, RECORDS_NAME, SPEC_NAME
from harness.protocols.spec import EvalSpec, RunSpec
from harness.results.compare import COLUMNS
from harness.results.predictions import load_predictions, save_predictions
from harness.results.records import EvaluationInfo, append_records, make_records

DATASET = "world_textures"
N_IMAGES = 120


def write_run(out: Path, method: str, seed: int | None, accuracy: dict[str, float], *, predictions: bool = True,
              rng: np.random.Generator) -> None:
    """One finished base-to-new run whose predictions are right on the first ``accuracy`` share of images."""
    key = f"{method}-embedded-{DATASET}-base-16shots-seed{seed}"
    spec = RunSpec("base2new", key, method, method, seed is not None, DATASET, 16 if seed else None, seed, "base",
                   (EvalSpec(DATASET, "base", "test", 16), EvalSpec(DATASET, "new", "test", 16)))
    folder = out / "base2new" / key
    folder.mkdir(parents=True)
    (folder / SPEC_NAME).write_text(spec.to_json(), encoding="utf-8")
    records = []
    for part, value in accuracy.items():
        labels = rng.integers(0, 3, N_IMAGES)
        preds = np.where(np.arange(N_IMAGES) < round(value * N_IMAGES), labels, (labels + 1) % 3)
        info = EvaluationInfo(method, DATASET, "test", part, "embedded", "0" * 64, "1" * 64, "cfg",
                              16 if seed else None, seed, "base2new", key, DATASET)
        extra = {}
        if predictions:
            impaths = [f"{part}/{i}.png" for i in range(N_IMAGES)]
            extra["predictions"] = save_predictions(folder, DATASET, part, "test", labels=labels.tolist(),
                                                    preds=preds.tolist(), impaths=impaths)
        records += make_records(info, {"accuracy": 100.0 * float(np.mean(labels == preds))}, n_images=N_IMAGES,
                                duration_s=0.0, extra=extra)
    append_records(folder / RECORDS_NAME, records)
    (folder / DONE_NAME).write_text("done\n")


def runs(tmp_path: Path, predictions: bool = True) -> Path:
    rng = np.random.default_rng(0)
    for seed, shift in ((1, 0.0), (2, 0.02), (3, -0.02)):
        write_run(tmp_path, "coop", seed, {"base": 0.9 + shift, "new": 0.5 + shift}, predictions=predictions, rng=rng)
        write_run(tmp_path, "cocoop", seed, {"base": 0.6 + shift, "new": 0.5}, predictions=predictions, rng=rng)
    write_run(tmp_path, "zeroshot", None, {"base": 0.6, "new": 0.5}, predictions=predictions, rng=rng)
    return tmp_path


def test_compare_prints_the_paired_table_with_verdicts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = runs(tmp_path)
    assert main(["compare", "--runs", str(folder), "--protocol", "base2new", "--methods", "coop,cocoop",
                 "--resamples", "300"]) == 0
    text = capsys.readouterr().out
    assert "two-way bootstrap" in text and "the same resampled images for both methods" in text
    lines = {line.split(" | ")[2]: line for line in text.splitlines() if line.startswith("| WorldTextures")}
    assert "| 90.00 | 60.00 | +30.00 |" in lines["base"] and "CoOp better" in lines["base"]
    assert "| 3 | seeds x images |" in lines["base"]
    assert "no difference at 95%" in lines["new"]  # +0.00: the same share right, different images
    average = [line for line in text.splitlines() if line.startswith("| Average")]
    assert [line.split(" | ")[2] for line in average] == ["base", "new", "H"]


def test_compare_csv_has_fixed_columns_and_zero_shot_pairs_with_every_seed(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    out_file = tmp_path / "out" / "compare.csv"
    folder = runs(tmp_path / "runs")
    assert main(["compare", "--runs", str(folder), "--protocol", "base2new", "--methods", "coop,zeroshot",
                 "--format", "csv", "--out", str(out_file), "--resamples", "200", "--seed", "5"]) == 0
    rows = list(csv.DictReader(io.StringIO(out_file.read_text())))
    assert list(rows[0]) == COLUMNS
    assert [(r["dataset"], r["measure"]) for r in rows] == [
        (DATASET, "base"), (DATASET, "new"), (DATASET, "H"), ("Average", "base"), ("Average", "new"),
        ("Average", "H")]
    assert rows[0]["runs"] == "3" and rows[0]["diff"] == "30.0000" and rows[0]["verdict"] == "A better"
    again = tmp_path / "again.csv"
    main(["compare", "--runs", str(folder), "--protocol", "base2new", "--methods", "coop,zeroshot", "--format",
          "csv", "--out", str(again), "--resamples", "200", "--seed", "5"])
    assert again.read_text() == out_file.read_text()  # seeded: identical intervals


def test_runs_without_predictions_fall_back_to_seed_only_intervals(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    folder = runs(tmp_path, predictions=False)
    assert main(["compare", "--runs", str(folder), "--protocol", "base2new", "--methods", "coop,cocoop"]) == 0
    text = capsys.readouterr().out
    base = next(line for line in text.splitlines() if line.startswith("| WorldTextures | 16 | base"))
    assert "| seeds only |" in base and "no per-image predictions" in base


def test_compare_names_a_missing_method(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = runs(tmp_path)
    assert main(["compare", "--runs", str(folder), "--protocol", "base2new", "--methods", "coop,clipadapter"]) == 2
    assert "no finished runs of method 'clipadapter'; methods found: cocoop, coop, zeroshot" in capsys.readouterr().err


def test_predictions_file_round_trip(tmp_path: Path) -> None:
    name = save_predictions(tmp_path, "d", "new", "test", labels=[0, 1, 2], preds=[0, 2, 2], impaths=["a", "b", "c"])
    loaded = load_predictions(tmp_path / name)
    assert name == "predictions-d-new-test.npz" and loaded.correct.tolist() == [1.0, 0.0, 1.0]
    assert not list(tmp_path.glob("*.tmp"))


def test_forest_plot_is_written_and_byte_identical_on_rerun(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = runs(tmp_path / "runs")
    for name in ("one", "two"):
        assert main(["plot", "--runs", str(folder), "--out", str(tmp_path / name), "--compare", "coop,cocoop",
                     "--resamples", "200"]) == 0
    name = "compare-base2new-coop-cocoop.png"
    first = (tmp_path / "one" / name).read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and first == (tmp_path / "two" / name).read_bytes()
    assert main(["plot", "--runs", str(folder), "--out", str(tmp_path), "--compare", "coop,clipadapter"]) == 2
