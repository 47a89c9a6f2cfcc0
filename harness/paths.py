"""Where the harness keeps its files: the cache folder, the shipped assets and the repository's data folders."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
ASSETS_DIR = PACKAGE_DIR / "assets"


def cache_dir() -> Path:
    """The cache folder: ``$HARNESS_CACHE`` if set, else ``~/.cache/harness``."""
    env = os.environ.get("HARNESS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "harness"


def cards_dir() -> Path:
    """The folder of dataset cards (``datasets/*.yaml`` at the repository's top level)."""
    return REPO_DIR / "datasets"


def presets_dir() -> Path:
    """The folder of method presets (``methods/*.yaml`` at the repository's top level)."""
    return REPO_DIR / "methods"
