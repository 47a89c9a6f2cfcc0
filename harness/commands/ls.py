"""``harness ls methods|datasets|protocols|backbones|executors``: list registered plug-ins."""

from __future__ import annotations

import argparse

from harness.registries import BACKBONES, DATASETS, EXECUTORS, METHODS, PROTOCOLS, load_builtins

KINDS = {
    "methods": METHODS,
    "datasets": DATASETS,
    "protocols": PROTOCOLS,
    "backbones": BACKBONES,
    "executors": EXECUTORS,
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``ls`` verb."""
    parser = subparsers.add_parser("ls", help="list registered methods, datasets, protocols, backbones or executors")
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'imagenet*'")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print one registered name per line."""
    load_builtins()
    for name in KINDS[args.kind].names(args.pattern):
        print(name)
    return 0
