"""``harness run`` in-process on a tiny DTD folder: plan, skip finished runs, discard partial ones, --force,
--dry-run, and ``harness table`` / ``harness plot`` over the run folder (zero-shot: no training, fast)."""

from __future__ import annotations

from pathlib import Path

import pytest
from clip_files import write_backbone_folder
from data_fixtures import build_dtd_fixture

from harness.cli import main
from harness.engine.runner import execute_run
from harness.errors import HarnessError
from harness.protocols.build import make_plan
from harness.protocols.spec import RunContext
from harness.results.predictions import load_predictions
from harness.results.records import read_records


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runcli")
    return build_dtd_fixture(root / "data", n_classes=4, image_size=32), write_backbone_folder(root / "backbone")


def args(inputs: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    data_root, backbone = inputs
    return ["run", "--method", "zeroshot", "--protocol", "base2new", "--datasets", "dtd", "--data-root",
            str(data_root), "--model", str(backbone), "--out", str(out), *extra]


def test_run_then_rerun_skips_and_prints_the_table(inputs: tuple[Path, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    assert main(args(inputs, out)) == 0
    first = capsys.readouterr()
    assert "1 runs planned, 0 already done, 1 to run" in first.err
    assert "| CLIP | backbone | DTD |" in first.out and "| CLIP | backbone | Average |" in first.out
    folder = out / "base2new" / "zeroshot-backbone-dtd-base2new-allshots-noseed"
    records = read_records(folder / "records.jsonl")
    assert [(r["subsample"], r["metric"]) for r in records] == [
        ("base", "accuracy"), ("base", "macro_f1"), ("new", "accuracy"), ("new", "macro_f1")]
    assert records[0]["seed"] is None and records[0]["n_images"] == 2 * 3
    # per-image predictions beside the records, named by them (harness compare reads them)
    assert records[0]["predictions"] == "predictions-dtd-base-test.npz" and "draw" not in records[0]
    predictions = load_predictions(folder / records[2]["predictions"])
    assert len(predictions.labels) == 2 * 3
    assert 100.0 * predictions.correct.mean() == pytest.approx(records[2]["value"])
    stamp = (folder / "DONE").stat().st_mtime_ns
    assert main(args(inputs, out)) == 0
    assert "1 already done, 0 to run" in capsys.readouterr().err
    assert (folder / "DONE").stat().st_mtime_ns == stamp
    assert main(args(inputs, out, "--force")) == 0
    assert (folder / "DONE").stat().st_mtime_ns != stamp
    assert len(read_records(folder / "records.jsonl")) == 4
    capsys.readouterr()

    assert main(["table", "--runs", str(out), "--format", "csv"]) == 0
    csv_text = capsys.readouterr().out
    assert csv_text.splitlines()[0].startswith("method,model,shots,dataset,base,base_std")
    assert main(["plot", "--runs", str(out), "--out", str(tmp_path / "figures")]) == 0
    assert (tmp_path / "figures" / "base2new.png").stat().st_size > 1000


def test_unfinished_run_is_redone_and_its_partial_records_discarded(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    data_root, backbone = inputs
    context = RunContext(model=str(backbone), data_root=str(data_root))
    spec = make_plan("base2new", "zeroshot", datasets=["dtd"], seeds=[1], shots=None, context=context)[0]
    folder = tmp_path / "base2new" / spec.run_key
    folder.mkdir(parents=True)
    (folder / "records.jsonl").write_text('{"run_key": "half-writ')  # a killed attempt's leftovers
    (folder / ".records.jsonl.123.tmp").write_text("junk")
    outcome = execute_run(spec, tmp_path)
    assert outcome.status == "done" and outcome.n_records == 4
    assert len(read_records(folder / "records.jsonl")) == 4
    assert not list(folder.glob("*.tmp")) and (folder / "DONE").is_file()
    assert execute_run(spec, tmp_path).status == "skipped"


def test_dry_run_prints_the_plan(inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data_root, backbone = inputs
    assert main(["run", "--method", "coop", "--protocol", "few_shot", "--datasets", "dtd", "--data-root",
                 str(data_root), "--model", str(backbone), "--seeds", "1,2", "--out", str(tmp_path), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "todo  few_shot/coop-backbone-dtd-all-1shots-seed1  [coop_fewshot; train dtd:all 1 shots seed 1" in text
    assert text.splitlines()[-1].startswith("10 runs, 0 done, 10 to run")
    assert not (tmp_path / "few_shot").exists()


def test_bad_choices_are_clear_errors(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="unknown protocol 'base2nw'. Did you mean base2new"):
        make_plan("base2nw", "coop", datasets=None, seeds=[1], shots=None, context=RunContext(data_root=str(tmp_path)))
    with pytest.raises(HarnessError, match="imagenet_a not used by protocol base2new"):
        make_plan("base2new", "coop", datasets=["imagenet_a"], seeds=[1], shots=None,
                  context=RunContext(data_root=str(tmp_path)))
    with pytest.raises(SystemExit) as exit_info:  # a usage error, before anything is planned
        main(args(inputs, tmp_path, "--jobs", "0"))
    assert exit_info.value.code == 2


def test_planned_runs_that_never_ran_show_as_incomplete(inputs: tuple[Path, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from harness.engine.runner import register_plan

    data_root, backbone = inputs
    out = tmp_path / "runs"
    assert main(args(inputs, out)) == 0
    context = RunContext(model=str(backbone), data_root=str(data_root))
    register_plan(make_plan("base2new", "coop", datasets=["dtd"], seeds=[1, 2], shots=None, context=context), out)
    capsys.readouterr()
    assert main(["table", "--runs", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    clip = next(line for line in lines if line.startswith("| CLIP | backbone | Average |"))
    coop = next(line for line in lines if line.startswith("| CoOp | backbone | DTD |"))
    coop_average = next(line for line in lines if line.startswith("| CoOp | backbone | Average |"))
    assert clip.endswith("|  |")  # complete
    assert "| 0/2 |" in coop and "base: missing seed 1, 2; new: missing seed 1, 2" in coop
    assert "incomplete: dtd not complete" in coop_average


def test_finished_runs_from_other_weights_or_config_stop_the_run(inputs: tuple[Path, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    assert main(args(inputs, out)) == 0
    folder = out / "base2new" / "zeroshot-backbone-dtd-base2new-allshots-noseed"
    good = (folder / "records.jsonl").read_text()
    for field, value in (("config_hash", "0123456789ab"), ("backbone_sha256", "f" * 64)):
        lines = [line.replace(f'"{field}": "', f'"{field}": "{value}", "old_{field}": "') for line in good.splitlines()]
        (folder / "records.jsonl").write_text("\n".join(lines) + "\n")
        stamp = (folder / "DONE").stat().st_mtime_ns
        capsys.readouterr()
        assert main(args(inputs, out)) == 2
        message = capsys.readouterr().err
        assert "1 finished run(s)" in message and "zeroshot-backbone-dtd-base2new-allshots-noseed" in message
        assert value[:12] in message and "--force" in message
        assert (folder / "DONE").stat().st_mtime_ns == stamp  # nothing redone, nothing deleted
        assert main(args(inputs, out, "--dry-run")) == 0
        assert "stale  base2new/zeroshot-backbone" in capsys.readouterr().out
    assert main(args(inputs, out, "--force")) == 0
    assert read_records(folder / "records.jsonl")[0]["backbone_sha256"] != "f" * 64


def test_num_workers_reaches_every_evaluation(inputs: tuple[Path, Path], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """``--set num_workers=N`` feeds the evaluation loaders too (the official code uses its workers everywhere)."""
    import importlib

    # The module, not the function of the same name that harness.engine re-exports.
    evaluate_module = importlib.import_module("harness.engine.evaluate")
    seen = []
    original = evaluate_module.split_features

    def spy(*positional, **named):
        seen.append(named.get("num_workers", positional[4] if len(positional) > 4 else 0))
        return original(*positional, **named)

    monkeypatch.setattr(evaluate_module, "split_features", spy)
    assert main(args(inputs, tmp_path / "runs", "--set", "num_workers=1")) == 0
    assert seen == [1, 1]  # base and new test splits


def test_draws_train_one_model_per_draw_and_tables_count_them(inputs: tuple[Path, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    data_root, backbone = inputs
    out = tmp_path / "runs"
    assert main(["run", "--method", "coop", "--protocol", "base2new", "--datasets", "dtd", "--data-root",
                 str(data_root), "--model", str(backbone), "--seeds", "1,2", "--draws", "2", "--set", "max_epoch=1",
                 "--set", "ctx_init=", "--out", str(out)]) == 0  # the fixture tokenizer splits "a photo of a"
    folders = sorted(p.name.split("-seed")[1].split("-v")[0] for p in (out / "base2new").iterdir())
    assert folders == ["1", "1-draw1", "2", "2-draw1"]
    draw1 = next(out.glob("base2new/*seed1-draw1*"))
    records = read_records(draw1 / "records.jsonl")
    assert {r["draw"] for r in records} == {1} and all(r["predictions"] for r in records)
    official = next(p for p in (out / "base2new").iterdir() if "seed1" in p.name and "draw" not in p.name)
    assert all("draw" not in r for r in read_records(official / "records.jsonl"))
    assert len(list((out / "train").iterdir())) == 4  # one trained model per (seed, draw)
    table = capsys.readouterr().out
    assert "| CoOp | backbone-v" in table and "| 4 |" in table and "Std: draw / training" in table
