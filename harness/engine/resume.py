"""Per-epoch resume state of a training run: learned tensors, optimizer, scaler and every RNG state.

Written atomically after each finished epoch to ``<run_dir>/prompt_learner/last.pt`` as plain tensors and
Python values (readable with ``torch.load(weights_only=True)``), so that a killed training restarts from
its last finished epoch and ends exactly where an uninterrupted one would: the sampler's generator, the
global torch RNG (augmentation, DataLoader worker seeds), Python's ``random`` and numpy are restored.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import CheckpointError, HarnessError
from harness.methods.checkpoints import atomic_save

RESUME_FILE = "last.pt"
RESUME_VERSION = 1


@dataclass
class RunIdentity:
    """What a resume state must match: a different config, seed, method or class list is another run."""

    method: str
    config_digest: str
    seed: int
    classnames: list[str]

    def as_dict(self) -> dict[str, Any]:
        """Plain values for the state file."""
        return {"method": self.method, "config_digest": self.config_digest, "seed": self.seed,
                "classnames": list(self.classnames)}


def capture_rng(sampler_generator: torch.Generator) -> dict[str, Any]:
    """Every RNG state the training draws from, as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "sampler": sampler_generator.get_state(),
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], sampler_generator: torch.Generator) -> None:
    """Put back the RNG states saved by ``capture_rng``."""
    torch.set_rng_state(state["torch"])
    sampler_generator.set_state(state["sampler"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_resume_state(path: Path, *, epoch: int, identity: RunIdentity, learned: dict[str, torch.Tensor],
                      optimizer: dict[str, Any], scaler: dict[str, Any] | None, rng: dict[str, Any],
                      history: dict[str, list[float]]) -> None:
    """Write the state after ``epoch`` finished epochs (atomic: a crash never leaves half a file)."""
    atomic_save({"version": RESUME_VERSION, "epoch": epoch, "identity": identity.as_dict(), "learned": learned,
                 "optimizer": optimizer, "scaler": scaler, "rng": rng, "history": history}, path)


def load_resume_state(path: Path, identity: RunIdentity) -> dict[str, Any] | None:
    """The saved state if ``path`` exists, after checking it belongs to the same run.

    Raises:
        HarnessError: when the folder holds a training with another method, config, seed or class list.
        CheckpointError: for an unreadable file.
    """
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file: say which, never guess
        raise CheckpointError(f"{path}: unreadable resume state ({exc}); delete it to start over") from None
    if not isinstance(state, dict) or state.get("version") != RESUME_VERSION:
        raise CheckpointError(f"{path}: not a resume state of this harness version; delete it to start over")
    saved = state["identity"]
    for key, value in identity.as_dict().items():
        if saved.get(key) != value:
            raise HarnessError(
                f"{path.parent.parent}: holds a training with a different {key} "
                f"({saved.get(key)!r:.80} vs {value!r:.80}); use another output folder or delete it"
            )
    return state
