"""Benchmark pairs: time ours and the reference in the same run, measure peak memory, check equal logits.

Each pair is two pytest-benchmark tests of one case (``impl`` = ``reference`` / ``ours``). ``PairBook.run``
times the target with ``benchmark.pedantic`` (rounds from the workload, no warm-up), measures the peak
memory of each round in pedantic's untimed ``setup``, keeps the first round's logits, and, once both sides
of a case ran, asserts that their logits agree (max |ours - reference| / max |reference| <= tolerance).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above what was allocated before the round. On CPU
the process's peak resident set (``VmHWM``) above its resident set before the round, after resetting the
peak (``/proc/self/clear_refs``) and with glibc's mmap threshold lowered to 64 KiB during the round so
that every tensor of real size is mapped on allocation and unmapped on free (otherwise freed memory is
reused silently and a peak would be invisible). None where the platform has neither.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
SMALL_MMAP_THRESHOLD = 64 << 10
DEFAULT_MMAP_THRESHOLD = 32 << 20  # glibc's upper bound of its dynamic threshold on 64-bit


def _status_bytes(field_name: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field_name}")


class PeakMemory:
    """Peak memory of a block of work on ``device`` (see the module docstring); ``stop`` returns bytes or None."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.baseline: int | None = None
        self.libc: Any = None
        if device.type == "cpu":
            try:
                self.libc = ctypes.CDLL("libc.so.6")
                _status_bytes("VmHWM")
            except OSError:
                self.libc = None

    def start(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
            return
        if self.libc is None:
            return
        self.libc.malloc_trim(0)
        self.libc.mallopt(M_MMAP_THRESHOLD, SMALL_MMAP_THRESHOLD)
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        except OSError:
            self.libc = None
            return
        self.baseline = _status_bytes("VmRSS")

    def stop(self) -> int | None:
        if self.baseline is None:
            return None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) - self.baseline
        else:
            peak = _status_bytes("VmHWM") - self.baseline
            self.libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD)
        self.baseline = None
        return max(peak, 0)


@dataclass
class Measurement:
    """One side of a pair: times of its rounds (seconds), its peak memory (bytes) and first-round logits."""

    times: list[float]
    peak_bytes: int | None
    logits: torch.Tensor | None

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


@dataclass
class PairRow:
    """A case on a workload: its two measurements, which reference it compares with, and the logits check."""

    case: str
    workload: str
    reference_case: str
    tolerance: float | None = None
    ours: Measurement | None = None
    reference: Measurement | None = None
    max_rel_diff: float | None = None


@dataclass
class PairBook:
    """Every measurement of the session, by (case, workload); read by the terminal summary."""

    device: torch.device
    tolerance: float = 1e-4
    rows: dict[tuple[str, str], PairRow] = field(default_factory=dict)
    on_update: Callable[[], None] | None = None  # called after each measurement (writes the partial report)

    def row(self, case: str, workload: str, reference_case: str | None = None,
            tolerance: float | None = None) -> PairRow:
        key = (case, workload)
        if key not in self.rows:
            self.rows[key] = PairRow(case, workload, reference_case or case, tolerance)
        return self.rows[key]

    def run(self, benchmark: Any, *, case: str, workload: str, impl: str, target: Callable[[], Any],
            rounds: int, setup: Callable[[], None] | None = None, reference_case: str | None = None,
            tolerance: float | None = None) -> Any:
        """Time ``target`` (``rounds`` rounds), record it as side ``impl`` of ``case`` and check the logits.

        ``target`` returns the logits (or, for whole runs, the metrics) compared between the two sides;
        ``tolerance`` overrides the book's relative tolerance for this case.
        """
        memory = PeakMemory(self.device)
        peaks: list[int | None] = []
        first: list[Any] = []

        def before_round() -> None:
            if memory.baseline is not None:
                peaks.append(memory.stop())
            if setup is not None:
                setup()
            memory.start()

        def timed() -> Any:
            result = target()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            if not first:
                first.append(result)
            return result

        benchmark.group = f"{case} [{workload}]"
        benchmark.pedantic(timed, setup=before_round, rounds=rounds, iterations=1, warmup_rounds=0)
        peaks.append(memory.stop())
        known = [peak for peak in peaks if peak is not None]
        logits = first[0] if isinstance(first[0], torch.Tensor) else None
        measurement = Measurement(list(benchmark.stats.stats.data), max(known) if known else None, logits)
        benchmark.extra_info["peak_bytes"] = measurement.peak_bytes
        row = self.row(case, workload, reference_case, tolerance)
        setattr(row, impl, measurement)
        if self.on_update is not None:
            self.on_update()
        self.check(row)
        return first[0]

    def check(self, row: PairRow) -> None:
        """Once both sides of ``row`` are known, assert that their logits agree within the tolerance."""
        reference = self.rows.get((row.reference_case, row.workload))
        if row.ours is None or reference is None or reference.reference is None:
            return
        ours, ref = row.ours.logits, reference.reference.logits
        if ours is None or ref is None:
            return
        assert ours.shape == ref.shape, f"{row.case}: logits {tuple(ours.shape)} vs reference {tuple(ref.shape)}"
        tolerance = self.tolerance if row.tolerance is None else row.tolerance
        row.max_rel_diff = float((ours.float() - ref.float()).abs().max() / ref.float().abs().max())
        assert row.max_rel_diff <= tolerance, (
            f"{row.case} [{row.workload}]: logits differ from the official computation by {row.max_rel_diff:.2e} "
            f"relative (tolerance {tolerance:.0e})"
        )
