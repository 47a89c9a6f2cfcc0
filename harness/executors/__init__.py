"""Executors: where the runs of a plan execute (registered in ``EXECUTORS``; see ``harness.executors.base``)."""

from __future__ import annotations

from harness.executors.base import Executor, ProgressDisplay, build_executor, execute_with_retries
from harness.executors.local import LocalExecutor
from harness.registries import EXECUTORS

EXECUTORS.register("ray", "harness.executors.ray_executor:RayExecutor")  # lazy: Ray is an optional extra

__all__ = ["Executor", "LocalExecutor", "ProgressDisplay", "build_executor", "execute_with_retries"]
