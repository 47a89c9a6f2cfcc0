"""One generic registry class, with one instance per plug-in kind.

Entries are registered under explicit names, either eagerly (the object itself, usually through the
``register`` decorator) or lazily as a ``"module:attr"`` string that is imported on first use, so that
listing plug-ins does not import heavy code.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from harness.errors import HarnessError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> object mapping for one kind of plug-in (methods, datasets, protocols, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, obj: T | str | None = None) -> Callable[[T], T] | None:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator that does so.

        Raises:
            HarnessError: if the name is already taken.
        """
        if obj is not None:
            self._add(name, obj)
            return None

        def decorator(target: T) -> T:
            self._add(name, target)
            return target

        return decorator

    def _add(self, name: str, obj: T | str) -> None:
        if name in self._entries:
            raise HarnessError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        """Return the entry for ``name``, importing a lazy entry on first use.

        Raises:
            HarnessError: naming the unknown entry, the closest names and all choices.
        """
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise HarnessError(
                f"unknown {self.kind} {name!r}.{hint} Choices: {', '.join(self.names())}"
            )
        entry = self._entries[name]
        if isinstance(entry, str):
            module_name, _, attr = entry.partition(":")
            entry = getattr(importlib.import_module(module_name), attr)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a glob pattern."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

