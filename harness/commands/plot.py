"""``harness plot``: PNG figures of the runs in a folder (few-shot curves, base vs new per dataset)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.compare import method_pair
from harness.errors import HarnessError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``plot`` verb."""
    parser = subparsers.add_parser("plot", help="PNG figures: few-shot curves and base vs new accuracy")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the output folder of harness run")
    parser.add_argument("--out", type=Path, default=Path("figures"), help="folder for the PNG files")
    parser.add_argument("--compare", type=method_pair, default=None, metavar="A,B",
                        help="instead: a forest plot of the paired differences A - B (harness compare), per protocol")
    parser.add_argument("--protocol", default=None, help="with --compare: one protocol (default: every one found)")
    parser.add_argument("--resamples", type=int, default=2000, help="with --compare: bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0, help="with --compare: seed of the bootstrap")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write one figure per protocol that has a plot (few_shot, base2new) and print the paths."""
    from harness.protocols import PROTOCOLS
    from harness.results.collect import dataset_display_and_order, load_records, protocols_in
    from harness.results.plots import PLOTS

    if args.compare is not None:
        return run_forest(args)
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


def run_forest(args: argparse.Namespace) -> int:
    """Write ``compare-<protocol>-<A>-<B>.png`` for each protocol where both methods ran, and print the paths."""
    from harness.results.collect import dataset_display_and_order, protocols_in
    from harness.results.compare import CompareSettings, compare_methods
    from harness.results.evaluations import load_evaluations
    from harness.results.forest import plot_forest

    first, second = args.compare
    display, order = dataset_display_and_order()
    settings = CompareSettings(args.resamples, args.seed)
    written = 0
    for protocol in [args.protocol] if args.protocol else protocols_in(args.runs):
        evaluations = load_evaluations(args.runs, protocol)
        if not {first, second} <= set(evaluations["method"]):
            continue
        table = compare_methods(evaluations, protocol, first, second, order=order, settings=settings)
        path = args.out / f"compare-{protocol}-{first}-{second}.png"
        plot_forest(table, path, display=display)
        print(path)
        written += 1
    if not written:
        raise HarnessError(f"no protocol under {args.runs} has finished runs of both {first} and {second}")
    return 0
