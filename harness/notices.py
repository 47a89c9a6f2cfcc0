"""One-time warnings for behaviour that follows the official code but surprises users.

``warn_once(key, message)`` issues a ``HarnessWarning`` the first time ``key`` is seen in this process and
stays silent afterwards, so a condition met for every image or every run is said once. The CLI prints
these warnings as ``warning: <message>`` lines (``format_warnings``) instead of Python's file-and-line form.
"""

from __future__ import annotations

import warnings
from typing import Any

_SEEN: set[str] = set()


class HarnessWarning(UserWarning):
    """Kept behaviour that deserves a word: the message says what happens and why."""


def warn_once(key: str, message: str) -> None:
    """Warn with ``message`` unless a warning with ``key`` was already issued in this process."""
    if key in _SEEN:
        return
    _SEEN.add(key)
    warnings.warn(message, HarnessWarning, stacklevel=3)


def forget() -> None:
    """Forget which warnings were issued (tests)."""
    _SEEN.clear()


def format_warnings() -> None:
    """Show ``HarnessWarning`` as ``warning: <message>``; other warnings keep Python's format."""
    default = warnings.formatwarning
    if getattr(default, "harness", False):  # already installed (main() runs many times in one test process)
        return

    def formatwarning(message: Any, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
        if issubclass(category, HarnessWarning):
            return f"warning: {message}\n"
        return default(message, category, filename, lineno, line)

    formatwarning.harness = True  # type: ignore[attr-defined]
    warnings.formatwarning = formatwarning  # type: ignore[assignment]
