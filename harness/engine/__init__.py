"""The engine: the loops that evaluate and train methods on a frozen backbone."""

from __future__ import annotations

from harness.engine.evaluate import EvalResult, evaluate, split_features
from harness.engine.train import TrainProgress, TrainResult, train_method

__all__ = ["EvalResult", "TrainProgress", "TrainResult", "evaluate", "split_features", "train_method"]
