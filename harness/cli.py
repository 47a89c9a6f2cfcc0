"""The command line: each verb parses its arguments, builds a config and calls one library function.

Verbs live in ``harness/commands/<verb>.py``; each module defines ``add_parser(subparsers)`` which
registers its parser and sets ``func`` to the function that runs it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from harness import __version__
from harness.errors import HarnessError
from harness.fs_errors import describe_os_error
from harness.notices import format_warnings

COMMAND_MODULES = (
    "harness.commands.run",
    "harness.commands.table",
    "harness.commands.compare",
    "harness.commands.plot",
    "harness.commands.eval",
    "harness.commands.train",
    "harness.commands.ls",
    "harness.commands.data",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per verb."""
    parser = argparse.ArgumentParser(
        prog="harness", description="Benchmark prompt learning (CoOp, CoCoOp, zero-shot CLIP) on CLIP-like models."
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; a ``HarnessError`` is printed as ``error: ...`` with exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    format_warnings()
    try:
        result = args.func(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        line = describe_os_error(exc)
        if line is None:  # not about a path the user chose: a real bug, keep the traceback
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished results are kept", file=sys.stderr)
        return 130
    return int(result or 0)
