"""``harness table``: the leaderboards of the runs in a folder, as markdown or CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import HarnessError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``table`` verb."""
    parser = subparsers.add_parser("table", help="leaderboards of finished runs, beside the published numbers")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the output folder of harness run")
    parser.add_argument("--protocol", default=None, help="one protocol (default: every protocol found)")
    parser.add_argument("--format", dest="fmt", choices=["markdown", "csv"], default="markdown")
    parser.add_argument("--out", type=Path, default=None, help="write to this file instead of stdout")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Render the leaderboards of ``--runs``."""
    from harness.results.collect import folder_table, protocols_in

    protocols = [args.protocol] if args.protocol else protocols_in(args.runs)
    if not protocols:
        raise HarnessError(f"no runs under {args.runs}")
    if args.fmt == "csv" and len(protocols) > 1:
        raise HarnessError(f"CSV holds one protocol; found {', '.join(protocols)}: pass --protocol")
    text = "\n".join(folder_table(args.runs, protocol, args.fmt) for protocol in protocols)
    if args.out is None:
        print(text, end="")
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0
