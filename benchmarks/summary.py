"""The end-of-session table: per case and workload, both times, the speed-up, peak memories, the logits check."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch
from pairs import PairBook, PairRow


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_description(device: torch.device) -> str:
    """One line: device, CPU model and cores, torch version and threads."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cpu_model()}, {cores} cores available, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        text = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}); host {text}"
    return f"device {device.type}: {text}"


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:.1f}"


def _cells(row: PairRow, reference: PairRow | None) -> list[str]:
    ref = reference.reference if reference is not None else None
    ours = row.ours
    speed = f"{ref.best / ours.best:.1f}x" if ref and ours else "n/a"
    memory = "n/a"
    if ref and ours and ref.peak_bytes and ours.peak_bytes:
        memory = f"{ref.peak_bytes / ours.peak_bytes:.1f}x"
    check = "not run" if row.max_rel_diff is None else f"{row.max_rel_diff:.1e}"
    return [
        row.case, row.workload,
        f"{ref.best:.3f}" if ref else "n/a", f"{ours.best:.3f}" if ours else "n/a", speed,
        _mib(ref.peak_bytes) if ref else "n/a", _mib(ours.peak_bytes) if ours else "n/a", memory,
        check, str(len(ours.times)) if ours else "0",
    ]


def summary_markdown(book: PairBook, workloads: dict[str, str], machine: str) -> str:
    """The summary as a markdown table (times are the best round, in seconds; memory is the peak in MiB)."""
    header = ["case", "workload", "reference s", "ours s", "speed-up", "reference MiB", "ours MiB",
              "memory ratio", "max rel. logits diff", "rounds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in book.rows.values():
        if row.ours is None:
            continue  # reference-only rows are shown through the cases that compare with them
        reference = book.rows.get((row.reference_case, row.workload))
        lines.append("| " + " | ".join(_cells(row, reference)) + " |")
    notes = [f"Machine: {machine}.", "Workloads:"]
    notes += [f"- `{key}`: {label}" for key, label in workloads.items()]
    return "\n".join(lines + [""] + notes)
