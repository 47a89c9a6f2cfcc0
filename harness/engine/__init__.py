"""The engine: the loops that evaluate and train methods on a frozen backbone."""

from __future__ import annotations

from harness.engine.evaluate import EvalResult, evaluate, split_features

__all__ = ["EvalResult", "evaluate", "split_features"]
