"""``harness ls methods|datasets|protocols|backbones|executors [GLOB]``: list registered plug-ins.

``harness ls methods NAME`` (an exact method name) prints the method's config keys with their defaults and
meanings, and its presets.
"""

from __future__ import annotations

import argparse

from harness.commands import add_include_argument
from harness.registries import BACKBONES, DATASETS, EXECUTORS, METHODS, PROTOCOLS

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
    parser.add_argument("pattern", nargs="?", default="*",
                        help="glob filter, e.g. 'imagenet*'; an exact method name shows its config keys")
    add_include_argument(parser)
    parser.set_defaults(func=run)


def describe_method(name: str) -> str:
    """A method's config keys (type, default, meaning; speed-only keys marked) and its presets, as text."""
    from harness.methods.presets import load_preset, preset_names

    method_class = METHODS.get(name)
    lines = [f"{name}: {(method_class.__doc__ or '').strip().splitlines()[0]}",
             f"  trains: {'yes' if method_class.trainable else 'no'}; image input: {method_class.image_input}; "
             f"config: {method_class.config_class.__name__}", "  keys (speed-only keys never change a number):"]
    for key, kind, default, meaning, speed in method_class.config_class.describe():
        shown = list(default) if isinstance(default, tuple) else default
        lines.append(f"    {key} ({kind}, default {shown!r}){' [speed]' if speed else ''}: {meaning}")
    presets = [preset for preset in preset_names() if load_preset(preset).get("method") == name]
    lines.append(f"  presets: {', '.join(presets) or '(none)'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print one registered name per line (or one method's description)."""
    from harness.plugins import load_includes

    load_includes(args.includes)
    if args.kind == "methods" and args.pattern in METHODS:
        print(describe_method(args.pattern))
        return 0
    for name in KINDS[args.kind].names(args.pattern):
        print(name)
    return 0
