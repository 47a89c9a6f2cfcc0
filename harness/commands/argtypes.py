"""argparse types for the numeric options: a bad value is a usage error before anything is planned or written.

Each type raises ``argparse.ArgumentTypeError``, which argparse prints as one ``usage`` line plus
``error: argument --seed: ...`` with exit status 2, so a bad ``--seed`` never reaches the planner (which
would otherwise write ``spec.json`` and lock files for runs that cannot start).
"""

from __future__ import annotations

import argparse

# numpy's legacy seeding (np.random.seed, used by the training) takes 0 <= seed < 2**32; torch and
# random.Random take more, so the narrowest range is the one every seed must fit.
MAX_SEED = 2**32 - 1


def _integer(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def seed(text: str) -> int:
    """A seed: an integer from 0 to 2**32 - 1 (seed 0 is a real seed)."""
    value = _integer(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must be an integer from 0 to {MAX_SEED}, got {value}")
    return value


def seed_list(text: str) -> list[int]:
    """Comma-separated seeds (each as ``seed``), at least one, no repeats."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"expected comma-separated seeds such as 1,2,3, got {text!r}")
    values = [seed(part) for part in parts]
    repeated = sorted({value for value in values if values.count(value) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"seed {repeated[0]} is listed twice in {text!r}")
    return values


def positive_int(text: str) -> int:
    """An integer of at least 1 (``--jobs``, ``--batch-size``, ``--shots`` of an index)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer of at least 0 (``--retries``)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def shots(text: str) -> int:
    """Shots per class for training: at least 1, or -1 (every image, as the official ``NUM_SHOTS=-1``)."""
    value = _integer(text)
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"must be at least 1, or -1 for every image, got {value}")
    return value
