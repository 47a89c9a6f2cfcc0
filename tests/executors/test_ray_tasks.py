"""The Ray executor without a Ray cluster: the install hint, task resources, and the task body (``run_task``)
called in-process: the shared-folder check, retries bounded by the attempt log, ``--force`` once per sweep."""

from __future__ import annotations

import errno
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from clip_files import write_backbone_folder
from data_fixtures import build_dtd_fixture

from harness.cli import main
from harness.engine.runner import RECORDS_NAME, run_dir
from harness.errors import HarnessError
from harness.executors import build_executor
from harness.executors.ray_executor import (
    INSTALL_HINT,
    describe_ray_error,
    read_attempts,
    run_task,
    sweep_file,
    task_resources,
)
from harness.protocols.build import make_plan
from harness.protocols.spec import RunContext, RunSpec


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("raytasks")
    return build_dtd_fixture(root / "data", n_classes=4, image_size=32), write_backbone_folder(root / "backbone")


@pytest.fixture()
def zeroshot_spec(inputs: tuple[Path, Path]) -> RunSpec:
    data_root, backbone = inputs
    context = RunContext(model=str(backbone), data_root=str(data_root), device="cpu")
    [spec] = make_plan("base2new", "zeroshot", datasets=["dtd"], seeds=[1], shots=None, context=context)
    return spec


def start_sweep(out: Path, sweep_id: str) -> str:
    sweep_file(out, sweep_id).parent.mkdir(parents=True, exist_ok=True)
    sweep_file(out, sweep_id).write_text("{}")
    return sweep_id


def test_missing_ray_says_how_to_install(monkeypatch: pytest.MonkeyPatch, inputs: tuple[Path, Path],
                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when Ray is not installed
    with pytest.raises(HarnessError, match=r"needs Ray, which is not installed; install it with "
                                           r"pip install 'harness\[ray\]'"):
        build_executor("ray")
    data_root, backbone = inputs
    code = main(["run", "--method", "zeroshot", "--protocol", "base2new", "--datasets", "dtd", "--data-root",
                 str(data_root), "--model", str(backbone), "--out", str(tmp_path / "runs"), "--executor", "ray"])
    assert code == 2
    assert f"error: --executor ray needs Ray, which is not installed; install it with {INSTALL_HINT}" \
        in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_jobs_belongs_to_the_local_executor() -> None:
    with pytest.raises(HarnessError, match="--jobs is for the local executor"):
        build_executor("ray", jobs=4)


def test_a_run_asks_for_a_gpu_only_where_it_uses_cuda(zeroshot_spec: RunSpec) -> None:
    auto = replace(zeroshot_spec, device="auto")
    assert task_resources(auto, cluster_gpus=0) == {"num_cpus": 1, "num_gpus": 0}
    assert task_resources(auto, cluster_gpus=8) == {"num_cpus": 1, "num_gpus": 1}
    assert task_resources(replace(auto, device="cuda"), cluster_gpus=0)["num_gpus"] == 1
    assert task_resources(replace(auto, device="cuda:1"), cluster_gpus=2)["num_gpus"] == 1
    assert task_resources(replace(auto, device="cpu"), cluster_gpus=8)["num_gpus"] == 0


def test_a_task_refuses_an_output_folder_the_driver_did_not_write(zeroshot_spec: RunSpec, tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match=r"is not the driver's: .*\.sweeps/s1\.json is missing; put --out on "
                                           r"a filesystem that every node mounts"):
        run_task(zeroshot_spec, str(tmp_path), False, 0, "s1")
    assert not (tmp_path / "base2new").exists()


def test_a_crash_is_retried_up_to_retries_then_reported(zeroshot_spec: RunSpec, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = run_dir(zeroshot_spec, tmp_path)

    def failing_publish(target: Path, records: object) -> None:
        # A transient I/O error (not one the user must fix, such as a read-only folder): worth retrying.
        raise OSError(errno.EIO, "Input/output error", str(target / RECORDS_NAME))

    monkeypatch.setattr("harness.engine.runner._publish", failing_publish)
    outcome = run_task(zeroshot_spec, str(tmp_path), False, 2, start_sweep(tmp_path, "s1"))
    assert outcome.status == "failed" and outcome.run_key == zeroshot_spec.run_key
    assert "OSError: [Errno 5] Input/output error" in outcome.error
    attempts = read_attempts(folder, "s1")
    assert [(a["attempt"], a["event"]) for a in attempts] == [(1, "start"), (1, "failed"), (2, "start"),
                                                              (2, "failed"), (3, "start"), (3, "failed")]
    assert "Input/output error" in attempts[-1]["error"]
    assert not (folder / ".lease.json").exists()

    monkeypatch.undo()  # fixed: a new sweep has its own budget and finishes the run
    outcome = run_task(zeroshot_spec, str(tmp_path), False, 2, start_sweep(tmp_path, "s2"))
    assert outcome.status == "done" and outcome.n_records == 4
    assert [a["event"] for a in read_attempts(folder, "s2")] == ["start", "done"]


def test_bad_input_is_not_retried(zeroshot_spec: RunSpec, tmp_path: Path) -> None:
    spec = replace(zeroshot_spec, data_root=str(tmp_path / "nowhere"))
    outcome = run_task(spec, str(tmp_path), False, 3, start_sweep(tmp_path, "s1"))
    assert outcome.status == "failed" and outcome.error.startswith("error: ")
    assert [a["event"] for a in read_attempts(run_dir(spec, tmp_path), "s1")] == ["start", "failed"]


def test_attempts_spent_by_dead_workers_count(zeroshot_spec: RunSpec, tmp_path: Path) -> None:
    folder = run_dir(zeroshot_spec, tmp_path)
    folder.mkdir(parents=True)
    dead = {"sweep": "s1", "event": "start", "task": "ray task 01", "pid": 4242, "host": "node-3"}
    (folder / "attempts.jsonl").write_text("".join(json.dumps({**dead, "attempt": n}) + "\n" for n in (1, 2)))
    outcome = run_task(zeroshot_spec, str(tmp_path), False, 1, start_sweep(tmp_path, "s1"))
    assert outcome.status == "failed"
    assert outcome.error == ("gave up after 2 attempts; the last one (ray task 01, pid 4242 on node-3) ended "
                             "without a result: its worker died")
    assert not (folder / RECORDS_NAME).exists()


def test_force_redoes_a_finished_run_once_per_sweep(zeroshot_spec: RunSpec, tmp_path: Path) -> None:
    folder = run_dir(zeroshot_spec, tmp_path)
    assert run_task(zeroshot_spec, str(tmp_path), False, 0, start_sweep(tmp_path, "s1")).status == "done"
    assert run_task(zeroshot_spec, str(tmp_path), False, 0, "s1").status == "skipped"
    first = (folder / RECORDS_NAME).stat().st_mtime_ns
    assert run_task(zeroshot_spec, str(tmp_path), True, 0, start_sweep(tmp_path, "s2")).status == "done"
    assert (folder / RECORDS_NAME).stat().st_mtime_ns != first
    # Ray re-running the same sweep's task (its result was lost) must not redo it again.
    assert run_task(zeroshot_spec, str(tmp_path), True, 0, "s2").status == "skipped"


def test_ray_errors_are_described() -> None:
    class TaskError(Exception):
        cause = HarnessError("dataset 'dtd': folder missing")

    assert describe_ray_error(TaskError("boom")) == "error: dataset 'dtd': folder missing"
    assert describe_ray_error(RuntimeError("worker died")) == "RuntimeError: worker died"
