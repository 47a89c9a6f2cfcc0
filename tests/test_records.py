"""Result records: fields and provenance, whole-line appends, and a reader that never skips a bad line."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime

import pytest

from harness import __version__
from harness.errors import HarnessError
from harness.results import records as records_module
from harness.results.records import (
    RECORD_FIELDS,
    EvaluationInfo,
    append_records,
    default_run_key,
    make_records,
    read_records,
)

INFO = EvaluationInfo(
    method="coop",
    dataset="dtd",
    split="test",
    subsample="new",
    backbone="ViT-B-16.pt",
    backbone_sha256="ab" * 32,
    split_sha256="cd" * 32,
    config_hash="0123456789ab",
    shots=16,
    seed=0,
    protocol="base2new",
    run_key="coop-vitb16-dtd-16shots-seed0",
    train_dataset="dtd",
)


def test_one_record_per_metric_with_every_field():
    records = make_records(INFO, {"accuracy": 55.5, "macro_f1": 50.25}, n_images=12, duration_s=1.23456)
    assert [r["metric"] for r in records] == ["accuracy", "macro_f1"]
    assert [r["value"] for r in records] == [55.5, 50.25]
    record = records[0]
    assert tuple(record) == RECORD_FIELDS  # the documented order
    assert record["seed"] == 0  # seed 0 is a seed, never dropped
    assert record["shots"] == 16 and record["subsample"] == "new" and record["train_dataset"] == "dtd"
    assert record["n_images"] == 12 and record["duration_s"] == 1.235
    assert record["backbone_sha256"] == "ab" * 32 and record["split_sha256"] == "cd" * 32
    assert record["config_hash"] == "0123456789ab" and record["harness_version"] == __version__
    assert record["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}", record["git_commit"])
    assert datetime.fromisoformat(record["time"]).utcoffset().total_seconds() == 0


def test_default_run_key_is_stable_and_distinguishes():
    plain = EvaluationInfo("zeroshot", "dtd", "test", "all", "embedded", "0" * 64, "1" * 64, "abc")
    assert default_run_key(plain) == default_run_key(plain)
    assert default_run_key(plain) != default_run_key(EvaluationInfo(**{**plain.__dict__, "split": "val"}))
    record = make_records(plain, {"accuracy": 1.0}, n_images=1, duration_s=0)[0]
    assert record["run_key"].startswith("eval-zeroshot-dtd-") and record["seed"] is None


def test_git_commit_outside_a_checkout_is_none(tmp_path):
    assert records_module.git_commit.__wrapped__(tmp_path) is None


def test_bad_metrics_and_extras():
    with pytest.raises(HarnessError, match="unknown metric 'top5'"):
        make_records(INFO, {"top5": 1.0}, n_images=1, duration_s=0)
    with pytest.raises(HarnessError, match="not finite"):
        make_records(INFO, {"accuracy": math.nan}, n_images=1, duration_s=0)
    with pytest.raises(HarnessError, match=r"\['seed'\] would replace standard fields"):
        make_records(INFO, {"accuracy": 1.0}, n_images=1, duration_s=0, extra={"seed": 3})
    extra = make_records(INFO, {"accuracy": 1.0}, n_images=1, duration_s=0, extra={"variant": "fp16"})
    assert extra[0]["variant"] == "fp16"


def test_append_and_read_back(tmp_path):
    path = tmp_path / "runs" / "a" / "records.jsonl"
    first = make_records(INFO, {"accuracy": 70.0, "macro_f1": 69.0}, n_images=5, duration_s=0.1)
    append_records(path, first)
    append_records(path, make_records(INFO, {"accuracy": 71.0}, n_images=5, duration_s=0.1))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["method"] == "coop" for line in lines)
    assert [r["value"] for r in read_records(path)] == [70.0, 69.0, 71.0]
    # A folder is read recursively (every records.jsonl below it).
    append_records(tmp_path / "runs" / "b" / "records.jsonl", first[:1])
    assert len(read_records(tmp_path / "runs")) == 4


def test_corrupt_line_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "records.jsonl"
    append_records(path, make_records(INFO, {"accuracy": 70.0}, n_images=5, duration_s=0.1))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"run_key": "x", "metric": "accur\n')  # what a torn write would leave
    with pytest.raises(HarnessError, match=rf"{re.escape(str(path))}:2: corrupt record line"):
        read_records(path)


def test_record_missing_fields_is_an_error(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"metric": "accuracy", "value": 1.0}\n')
    with pytest.raises(HarnessError, match=r"records.jsonl:1: record lacks fields run_key, protocol"):
        read_records(path)


def test_append_refuses_a_file_ending_mid_line(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"partial": ')
    with pytest.raises(HarnessError, match="ends with an incomplete line"):
        append_records(path, make_records(INFO, {"accuracy": 1.0}, n_images=1, duration_s=0))
    assert path.read_text() == '{"partial": '


def test_missing_records_path(tmp_path):
    with pytest.raises(HarnessError, match="no such records file or folder"):
        read_records(tmp_path / "nothing")
