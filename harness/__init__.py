"""harness: a benchmark harness for prompt learning on CLIP-like vision-language models."""

from __future__ import annotations

__version__ = "0.1.0"
