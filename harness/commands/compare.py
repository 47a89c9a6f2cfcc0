"""``harness compare``: the paired difference between two methods, per dataset and on the Average, with intervals."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import HarnessError


def method_pair(text: str) -> tuple[str, str]:
    """``A,B`` -> ``(A, B)``: exactly two different method names."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if len(names) != 2 or names[0] == names[1]:
        raise argparse.ArgumentTypeError(f"expected two different methods as A,B, got {text!r}")
    return names[0], names[1]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``compare`` verb."""
    parser = subparsers.add_parser(
        "compare", help="paired difference A - B per dataset with a 95% interval over seeds and test images",
        description="Pair the runs of two methods by seed and bootstrap seeds and test images together "
                    "(the same resampled images for both methods) to give A - B with a 95% interval.")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the output folder of harness run")
    parser.add_argument("--protocol", required=True, help="base2new, cross_dataset, domain_generalization, few_shot")
    parser.add_argument("--methods", type=method_pair, required=True, metavar="A,B", help="e.g. cocoop,coop")
    parser.add_argument("--metric", default="accuracy", choices=["accuracy"],
                        help="the compared metric (accuracy; the bootstrap does not recompute macro-F1)")
    parser.add_argument("--format", dest="fmt", choices=["markdown", "csv"], default="markdown")
    parser.add_argument("--out", type=Path, default=None, help="write to this file instead of stdout")
    parser.add_argument("--resamples", type=int, default=None, help="bootstrap replicates (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print or write the comparison table."""
    from harness.results.collect import dataset_display_and_order
    from harness.results.compare import CompareSettings, compare_methods, to_csv, to_markdown
    from harness.results.evaluations import load_evaluations

    settings = CompareSettings(seed=args.seed) if args.resamples is None else CompareSettings(args.resamples, args.seed)
    if settings.resamples < 100:
        raise HarnessError(f"--resamples {settings.resamples}: use at least 100 for a 95% interval")
    evaluations = load_evaluations(args.runs, args.protocol)
    if evaluations.empty:
        raise HarnessError(f"no finished runs of protocol {args.protocol} under {args.runs}")
    display, order = dataset_display_and_order()
    table = compare_methods(evaluations, args.protocol, *args.methods, order=order, settings=settings)
    text = to_markdown(table, display, settings) if args.fmt == "markdown" else to_csv(table)
    if args.out is None:
        print(text, end="")
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0
