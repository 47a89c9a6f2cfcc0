"""``harness run`` as users run it: interrupted by a real SIGKILL and resumed, and ``--jobs 2`` == ``--jobs 1``.

The sweep is CoOp base-to-new on a tiny DTD folder in the official layout (4 classes: 2 base, 2 new) with a
random tiny backbone folder, 3 seeds, random context init (the small test vocabulary splits "photo").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clip_files import write_backbone_folder
from data_fixtures import build_dtd_fixture

from harness.cli import main
from harness.results.records import read_records

REPO = Path(__file__).resolve().parents[1]
TIMING_FIELDS = {"time", "duration_s"}


@pytest.fixture(scope="module")
def sweep_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sweep")
    data_root = build_dtd_fixture(root / "data", n_classes=4, per_split=(4, 2, 3), image_size=32)
    backbone = write_backbone_folder(root / "backbone")
    return data_root, backbone


def run_args(data_root: Path, backbone: Path, out: Path, *extra: str, epochs: int = 2) -> list[str]:
    return ["run", "--method", "coop", "--protocol", "base2new", "--datasets", "dtd", "--data-root", str(data_root),
            "--model", str(backbone), "--seeds", "1,2,3", "--out", str(out), "--set", f"max_epoch={epochs}",
            "--set", "ctx_init=", *extra]


def read_run_records(out: Path) -> dict[str, list[dict[str, object]]]:
    return {folder.name: read_records(folder / "records.jsonl")
            for folder in sorted((out / "base2new").iterdir()) if (folder / "DONE").is_file()}


def without_timing(records: dict[str, list[dict[str, object]]]) -> dict[str, list[dict[str, object]]]:
    return {key: [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]
            for key, rows in records.items()}


@pytest.mark.slow
def test_sigkill_mid_sweep_then_rerun_finishes_without_redoing_or_corrupting(
        sweep_inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    data_root, backbone = sweep_inputs
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "harness", *run_args(data_root, backbone, out, epochs=40)]
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "first.log"
    with open(log, "w") as handle:  # a file, not a pipe: a full pipe would stall the child
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    # Kill once the first run is DONE and the second has saved a training epoch (a real kill mid-training).
    while time.monotonic() < deadline and process.poll() is None:
        done = list(out.glob("base2new/*/DONE"))
        resumable = list(out.glob("train/*/prompt_learner/last.pt"))
        if len(done) == 1 and len(resumable) == 2:
            os.kill(process.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    if process.poll() is None and time.monotonic() >= deadline:
        process.kill()
        pytest.fail(f"the sweep never reached the kill point in 600 s:\n{log.read_text()[-2000:]}")
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    first = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("base2new/*/DONE")}
    assert len(first) == 1
    first_records = read_run_records(out)

    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "3 runs planned, 1 already done, 2 to run" in rerun.stderr
    assert "resumed from epoch" in rerun.stderr  # the killed run continued from its checkpoint
    records = read_run_records(out)
    assert len(records) == 3
    # The finished run was skipped: its DONE and records were not touched.
    assert {p.parent.name: p.stat().st_mtime_ns for p in out.glob("base2new/*/DONE")}.items() >= first.items()
    assert {k: records[k] for k in first_records} == first_records
    cells = [(r["run_key"], r["subsample"], r["metric"]) for rows in records.values() for r in rows]
    assert len(cells) == 3 * 2 * 2 and len(set(cells)) == len(cells)  # every run once, no duplicate record
    assert not list(out.rglob("*.tmp"))
    assert "| CoOp |" in rerun.stdout and "| Average |" in rerun.stdout.replace(" dtd ", " ")

    monkeypatch.setenv("HARNESS_CACHE", env["HARNESS_CACHE"])
    assert main(command[3:]) == 0  # a third time, in-process: nothing left to do
    assert "3 already done, 0 to run" in capsys.readouterr().err
    assert read_run_records(out) == records


@pytest.mark.slow
def test_jobs_2_gives_the_records_of_jobs_1(sweep_inputs: tuple[Path, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    data_root, backbone = sweep_inputs
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    assert main(run_args(data_root, backbone, tmp_path / "one", "--jobs", "1")) == 0
    assert main(run_args(data_root, backbone, tmp_path / "two", "--jobs", "2")) == 0
    one, two = read_run_records(tmp_path / "one"), read_run_records(tmp_path / "two")
    assert len(one) == 3 and sum(len(rows) for rows in one.values()) == 12
    first, second = without_timing(one), without_timing(two)
    differences = [(key, i, field, row[field], second[key][i].get(field))
                   for key, rows in first.items() for i, row in enumerate(rows)
                   for field in row if row[field] != second[key][i].get(field)]
    assert not differences, f"--jobs 2 records differ from --jobs 1 (run, line, field, jobs1, jobs2): {differences}"
    for rows in one.values():
        assert not any(isinstance(v, str) and v.startswith("/") for r in rows for v in r.values())
    assert json.loads((tmp_path / "two" / "base2new" / next(iter(two)) / "spec.json").read_text())["method"] == "coop"
