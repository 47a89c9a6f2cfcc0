"""Result records: one JSON line per (evaluation, metric), with the provenance needed to trust and redo it.

Records are the only way results leave an evaluation: tables and plots are built from them, never from logs.
Each line is written with a single ``write`` on a file opened for appending, then flushed to disk, so a killed
process leaves whole lines only. ``read_records`` reads them back and treats a malformed line as an error
naming the file and line, never skipping it.

Fields (in this order): ``run_key, protocol, method, dataset`` (the evaluated one), ``train_dataset, subsample,
split, shots, seed, metric`` (``accuracy`` | ``macro_f1``), ``value`` (percent), ``n_images, backbone,
backbone_sha256, split_sha256, config_hash, harness_version, git_commit`` (null outside a git checkout),
``time`` (ISO 8601, UTC), ``duration_s``; callers may add further keys (``extra``). The runner adds
``predictions`` (the file of per-image predictions in the run folder, ``harness.results.predictions``) and,
for a few-shot draw beyond the official one (``--draws``), ``draw``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import __version__
from harness.errors import HarnessError
from harness.paths import REPO_DIR

RECORD_FIELDS = (
    "run_key", "protocol", "method", "dataset", "train_dataset", "subsample", "split", "shots", "seed",
    "metric", "value", "n_images", "backbone", "backbone_sha256", "split_sha256", "config_hash",
    "harness_version", "git_commit", "time", "duration_s",
)
METRICS = ("accuracy", "macro_f1")
RECORDS_FILE = "records.jsonl"


@dataclass(frozen=True)
class EvaluationInfo:
    """What was evaluated, and with what: everything in a record except the metric, value and timing.

    ``run_key`` defaults to a stable key derived from the other fields (see ``default_run_key``).
    """

    method: str
    dataset: str
    split: str
    subsample: str
    backbone: str
    backbone_sha256: str
    split_sha256: str
    config_hash: str
    shots: int | None = None
    seed: int | None = None
    protocol: str | None = None
    run_key: str | None = None
    train_dataset: str | None = None


def default_run_key(info: EvaluationInfo) -> str:
    """``eval-<method>-<dataset>-<hash>``: the hash covers every field, so reruns of the same thing share it."""
    payload = json.dumps(dataclasses.asdict(info), sort_keys=True)
    return f"eval-{info.method}-{info.dataset}-{hashlib.sha256(payload.encode()).hexdigest()[:10]}"


@functools.lru_cache(maxsize=1)
def git_commit(repo: Path = REPO_DIR) -> str | None:
    """The commit of the harness checkout, or None when it is not a git checkout or git is unavailable."""
    if not (repo / ".git").exists():
        return None
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def utc_now() -> str:
    """The current time as ISO 8601 in UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def make_records(
    info: EvaluationInfo,
    metrics: Mapping[str, float],
    *,
    n_images: int,
    duration_s: float,
    extra: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One record per metric of one evaluation.

    Args:
        info: what was evaluated.
        metrics: metric name (``accuracy``, ``macro_f1``) -> value in percent.
        n_images: number of evaluated images.
        duration_s: wall time of the evaluation in seconds.
        extra: further keys to add to every record (they may not replace a standard field).

    Raises:
        HarnessError: for an unknown metric, a non-finite value or an extra key that clashes.
    """
    clashes = sorted(set(extra or {}) & set(RECORD_FIELDS))
    if clashes:
        raise HarnessError(f"extra record keys {clashes} would replace standard fields")
    base = {
        "run_key": info.run_key or default_run_key(info),
        "protocol": info.protocol,
        "method": info.method,
        "dataset": info.dataset,
        "train_dataset": info.train_dataset,
        "subsample": info.subsample,
        "split": info.split,
        "shots": info.shots,
        "seed": info.seed,
    }
    provenance = {
        "n_images": int(n_images),
        "backbone": info.backbone,
        "backbone_sha256": info.backbone_sha256,
        "split_sha256": info.split_sha256,
        "config_hash": info.config_hash,
        "harness_version": __version__,
        "git_commit": git_commit(),
        "time": utc_now(),
        "duration_s": round(float(duration_s), 3),
    }
    records = []
    for metric, value in metrics.items():
        if metric not in METRICS:
            raise HarnessError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
        if not math.isfinite(value):
            raise HarnessError(f"metric {metric} of {info.method} on {info.dataset} is not finite: {value}")
        records.append({**base, "metric": metric, "value": float(value), **provenance, **(extra or {})})
    return records


def append_records(path: Path | str, records: Sequence[Mapping[str, Any]]) -> None:
    """Append records as JSON lines; each line goes out in one ``write`` and is flushed to disk (fsync).

    Raises:
        HarnessError: if a record cannot be written as strict JSON or the file ends with a partial line.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for record in records:
        try:
            lines.append((json.dumps(dict(record), allow_nan=False) + "\n").encode("utf-8"))
        except (TypeError, ValueError) as exc:
            raise HarnessError(f"record for {path} is not JSON-serialisable: {exc}") from None
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)  # read: to check the last byte
    try:
        _check_line_end(fd, path)
        for line in lines:
            view = memoryview(line)
            while view:  # os.write may write less than asked; finish the same line before anything else
                view = view[os.write(fd, view) :]
            os.fsync(fd)
    finally:
        os.close(fd)


def _check_line_end(fd: int, path: Path) -> None:
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        raise HarnessError(f"{path}: the file ends with an incomplete line; fix or remove it before appending")


def record_files(path: Path | str) -> list[Path]:
    """``path`` itself if it is a file, else every ``records.jsonl`` below the folder, sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(path.rglob(RECORDS_FILE))
    raise HarnessError(f"{path}: no such records file or folder")


def _parse_line(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{path}:{number}: corrupt record line ({exc.msg}): {line[:80]!r}") from None
    if not isinstance(record, dict):
        raise HarnessError(f"{path}:{number}: a record must be a JSON object, got {type(record).__name__}")
    missing = [field for field in RECORD_FIELDS if field not in record]
    if missing:
        raise HarnessError(f"{path}:{number}: record lacks fields {', '.join(missing)}")
    return record


def read_records(path: Path | str) -> list[dict[str, Any]]:
    """Every record of a records file, or of all ``records.jsonl`` files below a folder.

    Blank lines are allowed; any other line that is not a complete record is an error.

    Raises:
        HarnessError: naming the file and line of the first malformed record.
    """
    records = []
    for file in record_files(path):
        with open(file, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    records.append(_parse_line(line, file, number))
    return records
