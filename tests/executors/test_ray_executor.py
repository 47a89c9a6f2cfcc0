"""``harness run --executor ray`` on a real local Ray instance (2 CPUs): same records and table as the local
executor, and a SIGKILLed worker whose run is retried (resuming its training) without duplicate records.

The sweep is CoOp base-to-new on a tiny DTD folder in the official layout with a random tiny backbone folder
(random context init: the small test vocabulary splits "photo").
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clip_files import write_backbone_folder
from data_fixtures import build_dtd_fixture

from harness.cli import main
from harness.errors import HarnessError
from harness.executors.locking import LEASE_NAME
from harness.executors.ray_executor import read_attempts
from harness.results.records import read_records

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'harness[ray]' (tox installs it)")

REPO = Path(__file__).resolve().parents[2]
TIMING_FIELDS = {"time", "duration_s"}
EPOCHS = 20  # the kill test's training: long enough to be killed after a saved epoch and before its end


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory):
    """A local Ray instance with 2 CPUs for the module; yields its address. Workers inherit HARNESS_CACHE."""
    saved = os.environ.get("HARNESS_CACHE")
    os.environ["HARNESS_CACHE"] = str(tmp_path_factory.mktemp("ray-cache"))
    for attempt in range(2):  # a heavily loaded machine can time out Ray's first start; try once more
        try:
            context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=True)
            break
        except Exception as exc:
            ray.shutdown()
            if attempt == 1:
                pytest.fail(f"a local Ray instance did not start, twice (Ray waits 30 s for its processes; "
                            f"is the machine overloaded?): {exc}")
    yield context.address_info["gcs_address"]
    ray.shutdown()
    if saved is None:
        os.environ.pop("HARNESS_CACHE", None)
    else:
        os.environ["HARNESS_CACHE"] = saved


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("raysweep")
    return build_dtd_fixture(root / "data", n_classes=4, image_size=32), write_backbone_folder(root / "backbone")


def run_args(inputs: tuple[Path, Path], out: Path, *extra: str, seeds: str = "1,2", epochs: int = 2) -> list[str]:
    data_root, backbone = inputs
    return ["run", "--method", "coop", "--protocol", "base2new", "--datasets", "dtd", "--data-root", str(data_root),
            "--model", str(backbone), "--seeds", seeds, "--out", str(out), "--set", f"max_epoch={epochs}",
            "--set", "ctx_init=", *extra]


def run_records(out: Path) -> dict[str, list[dict[str, object]]]:
    return {folder.name: read_records(folder / "records.jsonl")
            for folder in sorted((out / "base2new").iterdir()) if (folder / "DONE").is_file()}


def without(fields: set[str], records: dict[str, list[dict[str, object]]]) -> dict[str, list[dict[str, object]]]:
    return {key: [{k: v for k, v in row.items() if k not in fields} for row in rows]
            for key, rows in records.items()}


def head_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()


def finished_lines(stderr: str) -> dict[str, list[str]]:
    """Run key -> the driver's ``[k/N] key: done|failed`` lines (one per run when nothing is counted twice)."""
    lines: dict[str, list[str]] = {}
    for match in re.finditer(r"^\[\d+/\d+\] (\S+): (done|failed|skipped) in .*$", stderr, re.MULTILINE):
        lines.setdefault(match.group(1), []).append(match.group(2))
    return lines


@pytest.mark.slow
def test_ray_sweep_gives_the_records_and_table_of_the_local_executor(
        ray_address: str, inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    head = head_commit()
    with monkeypatch.context() as patch:  # a separate feature cache: the two sweeps share nothing
        patch.setenv("HARNESS_CACHE", str(tmp_path / "local-cache"))
        assert main(run_args(inputs, tmp_path / "local")) == 0
    local = capsys.readouterr()
    assert main(run_args(inputs, tmp_path / "ray", "--executor", "ray")) == 0
    distributed = capsys.readouterr()

    assert "2 runs planned, 0 already done, 2 to run" in distributed.err
    assert {key: states for key, states in finished_lines(distributed.err).items()} == {
        key: ["done"] for key in run_records(tmp_path / "local")}
    records_local, records_ray = run_records(tmp_path / "local"), run_records(tmp_path / "ray")
    assert len(records_ray) == 2 and sum(len(rows) for rows in records_ray.values()) == 8
    # git_commit is the checkout's HEAD when a record is made: compared unless a commit landed meanwhile.
    ignored = TIMING_FIELDS | (set() if head_commit() == head else {"git_commit"})
    assert without(ignored, records_ray) == without(ignored, records_local)
    assert distributed.out == local.out and "| CoOp |" in distributed.out
    for key in records_ray:
        folder = tmp_path / "ray" / "base2new" / key
        attempts = read_attempts(folder)
        assert [a["event"] for a in attempts] == ["start", "done"]
        assert attempts[0]["pid"] != os.getpid()  # executed in a Ray worker process
        assert not (folder / LEASE_NAME).exists()

    # Finished runs are skipped without submitting anything.
    assert main(run_args(inputs, tmp_path / "ray", "--executor", "ray")) == 0
    assert "2 runs planned, 2 already done, 0 to run" in capsys.readouterr().err
    assert run_records(tmp_path / "ray") == records_ray


def _starts(folder: Path) -> list[dict[str, object]]:
    try:
        return [a for a in read_attempts(folder) if a["event"] == "start"]
    except HarnessError:  # a line being written right now
        return []


def _kill_attempts(out: Path, process: subprocess.Popen, timeout_s: float = 240) -> dict[str, list[int]]:
    """Kill the worker of seed 1 once its training saved an epoch, and every attempt of seed 2 as it starts."""
    killed: dict[str, list[int]] = {"seed1": [], "seed2": []}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None and (len(killed["seed1"]) < 1
                                                                       or len(killed["seed2"]) < 2):
        for seed, wanted in (("seed1", 1), ("seed2", 2)):
            folders = list(out.glob(f"base2new/*-{seed}-*"))
            starts = _starts(folders[0]) if folders else []
            if len(killed[seed]) >= wanted or len(starts) <= len(killed[seed]):
                continue
            if seed == "seed1" and not list(out.glob("train/*-seed1-*/prompt_learner/last.pt")):
                continue  # kill seed 1 mid-training, after a resumable epoch
            pid = int(starts[len(killed[seed])]["pid"])
            os.kill(pid, signal.SIGKILL)
            killed[seed].append(pid)
        time.sleep(0.02)
    return killed


@pytest.mark.slow
def test_killed_workers_are_retried_and_the_sweep_completes_without_duplicates(
        ray_address: str, inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    command = [sys.executable, "-m", "harness", *run_args(inputs, out, "--executor", "ray", "--address",
                                                          ray_address, "--retries", "1", seeds="1,2", epochs=EPOCHS)]
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(stdout, "w") as out_file, open(stderr, "w") as err_file:
        process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "RAY_DEDUP_LOGS": "0"},
                                   stdout=out_file, stderr=err_file)
        try:
            killed = _kill_attempts(out, process)
            returncode = process.wait(timeout=240)
        finally:
            if process.poll() is None:  # never leave the driver running after a failed check
                process.kill()
                process.wait()
    err, table = stderr.read_text(), stdout.read_text()
    assert len(killed["seed1"]) == 1 and len(killed["seed2"]) == 2, (killed, err[-3000:])

    # Seed 2 was killed on both of its attempts (--retries 1): reported failed, with its key and the error.
    assert returncode == 1, err[-3000:]
    key1, key2 = (next(out.glob(f"base2new/*-seed{s}-*")).name for s in (1, 2))
    assert f"failed: {key2}:" in err and "(after 2 attempts)" in err
    assert "error: 1 of 2 runs failed" in err
    # Seed 1 was retried in another worker, resumed its training, and finished.
    seed1 = read_attempts(out / "base2new" / key1)
    assert [(a["attempt"], a["event"]) for a in seed1] == [(1, "start"), (2, "start"), (2, "done")]
    assert seed1[0]["pid"] == killed["seed1"][0] != seed1[1]["pid"]
    # The retry continued the killed attempt's training from its last saved epoch.
    assert any(stage.startswith("trained (resumed from epoch ") for stage in seed1[2]["stages"]), seed1[2]
    assert [a["event"] for a in read_attempts(out / "base2new" / key2)] == ["start", "start"]
    assert finished_lines(err) == {key1: ["done"], key2: ["failed"]}  # each run counted once

    records = run_records(out)
    assert sorted(records) == [key1]
    cells = [(r["run_key"], r["subsample"], r["metric"]) for rows in records.values() for r in rows]
    assert len(cells) == 2 * 2 and len(set(cells)) == len(cells)
    row = next(line for line in table.splitlines() if "| DTD |" in line)
    assert "| 1/2 |" in row  # the table marks the missing seed
    assert not list(out.rglob(LEASE_NAME))

    # The interrupted sweep resumes locally: only the failed run is executed.
    assert main(run_args(inputs, out, epochs=EPOCHS)) == 0
    assert "2 runs planned, 1 already done, 1 to run" in capsys.readouterr().err
    assert sorted(run_records(out)) == [key1, key2]
    assert {k: v for k, v in run_records(out).items() if k != key2} == records
