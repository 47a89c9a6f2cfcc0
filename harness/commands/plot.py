"""``harness plot``: PNG figures of the runs in a folder (few-shot curves, base vs new per dataset)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import HarnessError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``plot`` verb."""
    parser = subparsers.add_parser("plot", help="PNG figures: few-shot curves and base vs new accuracy")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the output folder of harness run")
    parser.add_argument("--out", type=Path, default=Path("figures"), help="folder for the PNG files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write one figure per protocol that has a plot (few_shot, base2new) and print the paths."""
    from harness.protocols import PROTOCOLS
    from harness.results.collect import dataset_display_and_order, load_records, protocols_in
    from harness.results.plots import PLOTS

    found = [(p, PROTOCOLS.get(p).plot) for p in protocols_in(args.runs) if p in PROTOCOLS and PROTOCOLS.get(p).plot]
    if not found:
        raise HarnessError(f"no runs of a protocol with a figure (base2new, few_shot) under {args.runs}")
    display, order = dataset_display_and_order()
    args.out.mkdir(parents=True, exist_ok=True)
    for protocol, figure in found:
        path = args.out / f"{protocol}.png"
        PLOTS[figure](load_records(args.runs, protocol), path, display=display, order=order)
        print(path)
    return 0
