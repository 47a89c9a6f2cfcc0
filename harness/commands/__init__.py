"""CLI verbs, one module each (see ``harness.cli``), and the options several verbs share."""

from __future__ import annotations

import argparse


def add_include_argument(parser: argparse.ArgumentParser) -> None:
    """``--include PATH`` (repeatable): third-party code that registers methods and presets (``harness.plugins``)."""
    parser.add_argument("--include", dest="includes", action="append", default=[], metavar="PATH",
                        help="a Python file or folder that registers methods (and a folder's *.yaml presets); "
                             "repeatable")
