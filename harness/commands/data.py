"""``harness data check|fewshot|make-embedded``: check dataset folders, record few-shot selections, make the world."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands import argtypes
from harness.errors import DataError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``data`` verb and its sub-verbs."""
    parser = subparsers.add_parser("data", help="check datasets, write few-shot indexes, make the embedded world")
    verbs = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    verbs.required = True

    check = verbs.add_parser("check", help="report per dataset whether the layout is complete and the split sizes")
    check.add_argument("--data-root", type=Path, required=True, help="folder holding the dataset folders")
    check.add_argument("--dataset", action="append", help="dataset to check (repeatable; default: every real one)")
    check.add_argument("--verify-images", action="store_true", help="also decode every image (slow on real data)")
    check.set_defaults(func=run_check)

    fewshot = verbs.add_parser("fewshot", help="write (or reuse) the few-shot index of a dataset, shots and seed")
    fewshot.add_argument("--data-root", type=Path, required=True, help="folder holding the dataset folders")
    fewshot.add_argument("--dataset", required=True)
    fewshot.add_argument("--shots", type=argtypes.positive_int, required=True)
    fewshot.add_argument("--seed", type=argtypes.seed, required=True)
    fewshot.add_argument(
        "--generate-split", action="store_true",
        help="if the official split file is missing, generate a fresh random one (numbers not comparable)",
    )
    fewshot.add_argument("--split-seed", type=argtypes.seed, default=1, help="seed of a generated split (default 1)")
    fewshot.add_argument(
        "--from-official", nargs="?", const="", default=None, metavar="PKL",
        help="record the selection of an official split_fewshot/shot_K-seed_S.pkl (read without running code; "
        "default path: <dataset folder>/split_fewshot/shot_K-seed_S.pkl)",
    )
    fewshot.set_defaults(func=run_fewshot)

    embedded = verbs.add_parser(
        "make-embedded", help="generate the embedded world's datasets, or regenerate its missing or damaged files")
    embedded.add_argument("--root", type=Path, default=None, help="where to write it (default: <cache>/embedded)")
    embedded.add_argument("--force", action="store_true", help="rebuild even if it exists")
    embedded.set_defaults(func=run_make_embedded)


def run_check(args: argparse.Namespace) -> int:
    """Print one report block per dataset; exit 1 if any layout is incomplete."""
    from harness.data.cards import load_card
    from harness.data.check import check_dataset, format_check
    from harness.registries import DATASETS

    names = args.dataset or [n for n in DATASETS.names() if not load_card(n).embedded]
    cards = [load_card(name) for name in names]
    reports = [check_dataset(card, args.data_root, args.verify_images) for card in cards]
    print("\n".join(format_check(report) for report in reports))
    incomplete = [r.card.name for r in reports if not r.complete]
    print(f"\n{len(reports) - len(incomplete)}/{len(reports)} complete" + (
        f"; incomplete: {', '.join(incomplete)}" if incomplete else ""))
    return 1 if incomplete else 0


def run_fewshot(args: argparse.Namespace) -> int:
    """Write or reuse the index and print its path."""
    from harness.data.cards import load_card
    from harness.data.task import prepare_task_data

    card = load_card(args.dataset)
    if card.test_only:
        raise DataError(f"{card.name} is test-only: it has no few-shot sampling (shots are ignored)")
    if args.shots < 1:
        raise DataError(f"--shots must be at least 1, got {args.shots}")
    if args.from_official is not None:
        from harness.data.official_pickle import import_official_fewshot

        pickle_path = Path(args.from_official) if args.from_official else None
        print(import_official_fewshot(card, args.data_root, args.shots, args.seed, pickle_path))
        return 0
    task = prepare_task_data(
        args.dataset, args.data_root, shots=args.shots, seed=args.seed,
        generate_split=args.generate_split, split_seed=args.split_seed,
    )
    print(task.fewshot_index)
    return 0


def run_make_embedded(args: argparse.Namespace) -> int:
    """Generate the embedded world, or check an existing one and regenerate what is missing or damaged."""
    from harness.paths import cache_dir

    try:
        from harness.world.verify import make_or_repair
    except ImportError as exc:
        raise DataError("the embedded world generator (harness.world) is not available") from exc
    root = args.root if args.root is not None else cache_dir() / "embedded"
    print(make_or_repair(Path(root), bool(args.force)))
    return 0
