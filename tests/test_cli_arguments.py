"""Numeric command-line arguments are checked by argparse, before any planning or writing (issue 15, item 4)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from harness.cli import main
from harness.commands import argtypes


@pytest.mark.parametrize("argv", [
    ["run", "--method", "coop", "--protocol", "base2new", "--seeds=-1"],
    ["run", "--method", "coop", "--protocol", "base2new", "--seeds", "1,x"],
    ["run", "--method", "coop", "--protocol", "base2new", "--seeds", "1,1"],
    ["run", "--method", "coop", "--protocol", "base2new", "--seeds", str(2**32)],
    ["run", "--method", "coop", "--protocol", "base2new", "--seeds=-1", "--dry-run"],
    ["run", "--method", "coop", "--protocol", "base2new", "--jobs", "0"],
    ["run", "--method", "coop", "--protocol", "base2new", "--retries", "-1"],
    ["run", "--method", "coop", "--protocol", "few_shot", "--shots", "0"],
    ["train", "--preset", "coop_base2new", "--dataset", "world_shapes", "--seed", "-1"],
    ["train", "--preset", "coop_base2new", "--dataset", "world_shapes", "--shots", "0"],
    ["eval", "--method", "zeroshot", "--dataset", "world_shapes", "--seed", "-3"],
    ["eval", "--method", "zeroshot", "--dataset", "world_shapes", "--batch-size", "0"],
    ["data", "fewshot", "--data-root", ".", "--dataset", "dtd", "--shots", "-1", "--seed", "1"],
    ["data", "fewshot", "--data-root", ".", "--dataset", "dtd", "--shots", "1", "--seed", "-1"],
])
def test_bad_numbers_are_usage_errors_and_write_nothing(argv: list[str], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    extra = ["--out", str(out)] if argv[0] in ("run", "train", "eval") else []
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err
    assert not out.exists()  # no spec.json, no lock file, no folder


def test_argument_types() -> None:
    assert argtypes.seed("0") == 0 and argtypes.seed(str(2**32 - 1)) == 2**32 - 1
    assert argtypes.seed_list("1, 2,3") == [1, 2, 3]
    assert argtypes.shots("-1") == -1 and argtypes.shots("16") == 16
    assert argtypes.non_negative_int("0") == 0 and argtypes.positive_int("3") == 3
    for check, text in [(argtypes.seed, "-1"), (argtypes.seed, "1.5"), (argtypes.seed_list, ","),
                        (argtypes.shots, "0"), (argtypes.shots, "-2"), (argtypes.positive_int, "0")]:
        with pytest.raises(argparse.ArgumentTypeError):
            check(text)
