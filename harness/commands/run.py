"""``harness run --method M --protocol P``: plan the protocol's runs, run the unfinished ones, print the table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands import add_include_argument, argtypes
from harness.config import SELECTIONS, parse_set_options

DEFAULT_SEEDS = "1,2,3"
DEFAULT_OUT = "runs"


def _name_list(text: str) -> list[str] | None:
    names = [part.strip() for part in text.split(",") if part.strip()]
    return None if names == ["all"] else names


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``run`` verb."""
    parser = subparsers.add_parser(
        "run", help="run a protocol for a method (resumable), then print its table",
        description="Plan the runs of a protocol, run those not finished yet, and print the protocol's table. "
                    "Without --data-root the embedded world's datasets stand in for the real ones.")
    parser.add_argument("--method", required=True, help="method or preset name (harness ls methods)")
    parser.add_argument("--protocol", required=True, help="base2new, cross_dataset, domain_generalization, few_shot")
    parser.add_argument("--datasets", type=_name_list, default=None, help="comma-separated dataset names, or all")
    parser.add_argument("--seeds", type=argtypes.seed_list, default=argtypes.seed_list(DEFAULT_SEEDS),
                        help="default 1,2,3")
    parser.add_argument("--shots", type=argtypes.positive_int, default=None,
                        help="shots per class (default: the protocol's)")
    parser.add_argument("--draws", type=argtypes.positive_int, default=1,
                        help="few-shot draws per seed (few_shot, base2new; default 1 = the official draw only)")
    parser.add_argument("--data-root", type=Path, default=None, help="folder of the real datasets")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help=f"output folder (default {DEFAULT_OUT}/)")
    parser.add_argument("--model", default="embedded", help="backbone (default: the embedded tiny CLIP)")
    parser.add_argument("--pretrained", default=None, help="pretrained tag or weights file for --model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16", "amp"])
    parser.add_argument("--jobs", type=argtypes.positive_int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--executor", default="local", help="where runs execute (harness ls executors)")
    parser.add_argument("--address", default=None, help="cluster address, for executors that use one")
    parser.add_argument("--retries", type=argtypes.non_negative_int, default=0,
                        help="further attempts for a run that crashes")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a method config key (repeatable)")
    parser.add_argument("--force", action="store_true", help="redo finished runs")
    parser.add_argument("--selection", choices=SELECTIONS, default=None,
                        help="model selection: last, val (few-shot validation split) or none (fixed values); "
                             "the default is the preset's (same as --set selection=...)")
    add_include_argument(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Plan, execute, tabulate; exit status 1 if any run failed."""
    from harness.engine.runner import check_finished_runs, register_plan
    from harness.engine.staleness import format_plan
    from harness.executors import build_executor
    from harness.executors.failures import failure_summary
    from harness.plugins import load_includes
    from harness.protocols.build import make_plan
    from harness.protocols.spec import RunContext
    from harness.results.collect import protocol_table

    load_includes(args.includes)
    includes = tuple(str(Path(path).resolve()) for path in args.includes)
    sets = parse_set_options(args.sets)
    if args.selection is not None:
        sets["selection"] = args.selection
    overrides = tuple(sorted(sets.items()))
    data_root = str(args.data_root.resolve()) if args.data_root is not None else None
    context = RunContext(args.model, args.pretrained, data_root, args.device, args.precision, overrides, includes)
    specs = make_plan(args.protocol, args.method, datasets=args.datasets, seeds=args.seeds, shots=args.shots,
                      context=context, draws=args.draws)
    if args.dry_run:
        print(format_plan(specs, args.out), end="")
        return 0
    executor = build_executor(args.executor, jobs=args.jobs, retries=args.retries, address=args.address)
    if not args.force:
        check_finished_runs(specs, args.out)
    register_plan(specs, args.out)
    outcomes = executor.execute(specs, args.out, force=args.force)
    failed = [o for o in outcomes if o.status == "failed"]
    print(protocol_table(specs, args.out), end="")
    for outcome in failed:
        print(f"failed: {outcome.run_key}:\n{outcome.error}", file=sys.stderr)
    if failed:
        print(failure_summary(failed, len(outcomes)), file=sys.stderr)
        return 1
    return 0
