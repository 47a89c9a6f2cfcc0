"""Benchmark suite setup: options, workloads, the pair book and the summary table of ratios.

Run with ``tox -e bench`` (or ``python -m pytest benchmarks --benchmark-only``); on a GPU add ``--device
cuda``. ``--bench-report FILE`` also writes the summary table as markdown.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pairs import PairBook
from summary import machine_description, summary_markdown
from workloads import Workload, embedded_backbone, make_test_task, pick_classnames, vitb16_text_backbone

WORKLOADS = ("tiny", "vitb16-text")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness benchmarks")
    group.addoption("--device", default="cpu", choices=("cpu", "cuda"), help="device of the benchmarks")
    group.addoption("--bench-precision", default="fp32", choices=("fp32", "amp"),
                    help="backbone precision (the 1e-4 logits check applies to fp32; amp is checked at 2e-2)")
    group.addoption("--bench-classes", type=int, default=20, help="classes of the ViT-B/16 text-shape workload")
    group.addoption("--bench-test-images", type=int, default=1000,
                    help="images of the evaluation test set (official test batches of 100; default 1000, the size "
                         "of the protocols' smallest test splits: DTD's base half is 864 images)")
    group.addoption("--bench-rounds", type=int, default=0, help="timed rounds per benchmark (0: per workload)")
    group.addoption("--bench-report", default="", help="also write the summary table (markdown) to this file")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # pyproject's addopts skip benchmarks for the unit-test run; running this folder means running them.
    config.option.benchmark_skip = False


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> torch.device:
    name = pytestconfig.getoption("--device")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.exit("--device cuda: CUDA is not available on this machine", returncode=2)
    return torch.device(name)


@pytest.fixture(scope="session")
def book(pytestconfig: pytest.Config, device: torch.device) -> PairBook:
    tolerance = 1e-4 if pytestconfig.getoption("--bench-precision") == "fp32" else 2e-2
    pair_book = PairBook(device, tolerance)
    report = pytestconfig.getoption("--bench-report")
    if report:  # rewritten after every measurement, so an interrupted session still leaves its table
        pair_book.on_update = lambda: Path(report).write_text(report_text(pair_book) + "\n", encoding="utf-8")
    pytestconfig.stash[BOOK_KEY] = pair_book
    return pair_book


def report_text(pair_book: PairBook) -> str:
    workloads = {key: workload.label for key, workload in _WORKLOADS.items()}
    return summary_markdown(pair_book, workloads, machine_description(pair_book.device))


BOOK_KEY = pytest.StashKey[PairBook]()
_WORKLOADS: dict[str, Workload] = {}


@pytest.fixture(scope="session")
def bench_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="session", params=WORKLOADS)
def workload(request: pytest.FixtureRequest, device: torch.device, bench_dir: Path) -> Workload:
    key = request.param
    if key not in _WORKLOADS:
        _WORKLOADS[key] = build_workload(key, request.config, device, bench_dir)
    return _WORKLOADS[key]


def build_workload(key: str, config: pytest.Config, device: torch.device, bench_dir: Path) -> Workload:
    precision = config.getoption("--bench-precision")
    rounds = config.getoption("--bench-rounds")
    if key == "tiny":
        backbone, label, model_ref = embedded_backbone(bench_dir / "embedded_shape", device.type, precision)
        names = pick_classnames(backbone, 50)
        return Workload(key, label, backbone, names, rounds or 2, cocoop_images=25, model_ref=model_ref)
    backbone = vitb16_text_backbone(device.type, precision)
    names = pick_classnames(backbone, config.getoption("--bench-classes"))
    label = "ViT-B/16 text-tower shape (512 wide, 12 layers, 8 heads, 77 tokens), random weights"
    return Workload(key, label, backbone, names, rounds or (1 if device.type == "cpu" else 5),
                    cocoop_images=4 if device.type == "cpu" else 100)


@pytest.fixture(scope="session")
def test_task(workload: Workload, bench_dir: Path, pytestconfig: pytest.Config):
    """``--bench-test-images`` test images (default 1000: 10 official test batches of 100) over the classes."""
    n_images = pytestconfig.getoption("--bench-test-images")
    return make_test_task(bench_dir / f"data-{workload.key}-{n_images}", workload.classnames, n_images)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    pair_book = config.stash.get(BOOK_KEY, None)
    if pair_book is None or not pair_book.rows:
        return
    text = report_text(pair_book)
    terminalreporter.write_sep("=", "harness: ours vs the official computation (ratios)")
    terminalreporter.write_line(text)
    report = config.getoption("--bench-report")
    if report:
        Path(report).write_text(text + "\n", encoding="utf-8")
        terminalreporter.write_line(f"summary written to {report}")

