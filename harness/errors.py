"""Exceptions the harness raises for bad input; the CLI prints them without a traceback."""

from __future__ import annotations


class HarnessError(Exception):
    """A user-facing error: the message says what was wrong and what was expected."""


class ConfigError(HarnessError):
    """An unknown configuration key, a wrong type or an invalid value."""


class DataError(HarnessError):
    """A dataset folder, split file or image that is missing or malformed."""


class CheckpointError(HarnessError):
    """A weights file that is missing, unreadable or refused."""
