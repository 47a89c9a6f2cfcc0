"""What one run of a protocol is: a frozen, serialisable description (``RunSpec``) built by a planner.

A run trains at most one model (on ``train_dataset`` with ``shots`` per class and ``seed``) and then
evaluates that same model on each ``EvalSpec``. Training-free methods have ``trainable=False`` and no
seed. Specs are plain data: they are written to ``spec.json`` in the run folder, shipped to worker
processes, and compared, so every field is a string, number, ``None`` or a tuple of those.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

SUBSAMPLES = ("all", "base", "new")


@dataclass(frozen=True)
class EvalSpec:
    """One evaluation of a run's model.

    Attributes:
        dataset: registry name of the evaluated dataset.
        subsample: ``all``, ``base`` or ``new`` classes (official ``DATASET.SUBSAMPLE_CLASSES``).
        split: ``test`` (or ``val``).
        shots: few-shot sampling applied before subsampling, as the official evaluation config does
            (base-to-new tests with ``NUM_SHOTS 16``; cross-dataset tests with none). ``None``: no sampling.
    """

    dataset: str
    subsample: str = "all"
    split: str = "test"
    shots: int | None = None


@dataclass(frozen=True)
class RunContext:
    """Everything a run is executed with that is not part of the protocol's grid."""

    model: str = "embedded"
    pretrained: str | None = None
    data_root: str | None = None
    device: str = "auto"
    precision: str = "auto"
    overrides: tuple[tuple[str, Any], ...] = ()
    includes: tuple[str, ...] = ()  # --include paths, imported by every worker before it runs


@dataclass(frozen=True)
class MethodChoice:
    """The method a protocol runs: the name the user gave, the preset it resolves to, and whether it trains."""

    name: str
    preset: str
    trainable: bool


@dataclass(frozen=True)
class RunSpec:
    """One run: optional training, then the evaluations of that model (see the module docstring).

    ``draw`` numbers the few-shot draw of the seed: 0 is the official selection (``random.Random(seed)``),
    higher draws are the ``--draws`` extension (``harness.data.fewshot.draw_rng``).
    """

    protocol: str
    run_key: str
    method: str
    preset: str
    trainable: bool
    train_dataset: str | None
    shots: int | None
    seed: int | None
    train_subsample: str
    evals: tuple[EvalSpec, ...]
    overrides: tuple[tuple[str, Any], ...] = ()
    model: str = "embedded"
    pretrained: str | None = None
    data_root: str | None = None
    device: str = "auto"
    precision: str = "auto"
    includes: tuple[str, ...] = ()
    draw: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        """Rebuild a spec written by ``to_dict`` (e.g. read back from ``spec.json``)."""
        values = dict(data)
        values["evals"] = tuple(EvalSpec(**e) for e in values["evals"])
        values["overrides"] = tuple((str(k), v) for k, v in values.get("overrides", ()))
        values["includes"] = tuple(values.get("includes", ()))
        return cls(**values)

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys), identical for equal specs."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=1) + "\n"


def model_slug(model: str, pretrained: str | None) -> str:
    """A folder-safe name for a backbone: ``embedded``, ``ViT-B-16.openai``, or a path's last part."""
    base = model.rstrip("/").split("/")[-1] or "model"
    slug = base if pretrained is None else f"{base}.{pretrained.rstrip('/').split('/')[-1]}"
    return re.sub(r"[^A-Za-z0-9._+-]", "_", slug)


def variant_suffix(context: RunContext) -> str:
    """``""`` for the default settings, else ``-v<8 hex>`` hashing the precision and ``--set`` overrides.

    Runs that differ in these must not share a folder (a finished run is skipped by key). The preset is not
    part of it: it follows from the method and the protocol.
    """
    variant: dict[str, Any] = {}
    if context.precision != "auto":
        variant["precision"] = context.precision
    if context.overrides:
        variant["overrides"] = [list(item) for item in context.overrides]
    if not variant:
        return ""
    digest = hashlib.sha256(json.dumps(variant, sort_keys=True).encode()).hexdigest()[:8]
    return f"-v{digest}"


def build_run_key(method: MethodChoice, context: RunContext, dataset_part: str, shots: int | None,
                  seed: int | None, draw: int = 0) -> str:
    """The run key: ``<method>-<model>-<dataset part>-<K>shots-seed<S>[-draw<D>][-v<hash>]`` (readable, unique).

    The draw appears only for ``draw`` > 0, so the keys of the official draw (and of runs made before draws
    existed) are unchanged.
    """
    shots_part = "allshots" if shots is None else f"{shots}shots"
    seed_part = "noseed" if seed is None else f"seed{seed}"
    parts = [method.name, model_slug(context.model, context.pretrained), dataset_part, shots_part, seed_part]
    if draw:
        parts.append(f"draw{draw}")
    return "-".join(parts) + variant_suffix(context)
