"""``harness eval`` as a user runs it: a subprocess on an OpenAI-format CLIP file and the DTD fixture."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from clip_files import make_openai_clip, save_openai_torchscript
from data_fixtures import build_dtd_fixture

from harness.cli import main
from harness.engine.evaluate import accuracy, macro_f1
from harness.paths import REPO_DIR
from harness.results.records import read_records


def run_harness(*args: str, cache) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_CACHE": str(cache), "PYTHONPATH": str(REPO_DIR), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], env=env, capture_output=True, text=True, timeout=240, check=False
    )


@pytest.mark.slow
def test_eval_zeroshot_on_openai_file(tmp_path):
    data_root = build_dtd_fixture(tmp_path / "data")
    model = save_openai_torchscript(make_openai_clip(seed=5), tmp_path / "ViT-T-8.pt")
    predictions, out = tmp_path / "p.jsonl", tmp_path / "out"
    completed = run_harness(
        "eval", "--method", "zeroshot", "--model", str(model), "--data-root", str(data_root), "--dataset", "dtd",
        "--save-predictions", str(predictions), "--out", str(out), cache=tmp_path / "cache",
    )
    assert completed.returncode == 0, completed.stderr
    assert "* accuracy: " in completed.stdout and "* macro_f1: " in completed.stdout

    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(rows) == 12
    for row in rows:
        assert set(row) == {"image", "label", "pred", "logits"}
        assert (data_root / "dtd" / "images" / row["image"]).is_file()  # relative to the image folder
        assert len(row["logits"]) == 4 and row["pred"] == max(range(4), key=row["logits"].__getitem__)
    split = json.loads((data_root / "dtd" / "split_zhou_DescribableTextures.json").read_text())
    assert [row["image"] for row in rows] == [entry[0] for entry in split["test"]]
    assert [row["label"] for row in rows] == [entry[1] for entry in split["test"]]

    records = {r["metric"]: r for r in read_records(out / "records.jsonl")}
    labels, preds = [r["label"] for r in rows], [r["pred"] for r in rows]
    assert records["accuracy"]["value"] == pytest.approx(accuracy(labels, preds))
    assert records["macro_f1"]["value"] == pytest.approx(macro_f1(labels, preds))
    record = records["accuracy"]
    assert (record["method"], record["dataset"], record["split"], record["subsample"]) == ("zeroshot", "dtd", "test",
                                                                                          "all")
    assert record["backbone"] == "ViT-T-8.pt" and record["n_images"] == 12 and record["precision"] == "fp32"


def test_eval_error_is_reported_without_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    data_root = build_dtd_fixture(tmp_path / "data")
    status = main(["eval", "--method", "zeroshot", "--model", str(tmp_path / "missing.pt"), "--data-root",
                   str(data_root), "--dataset", "dtd", "--out", str(tmp_path / "out")])
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "weights file not found" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "records.jsonl").exists()
