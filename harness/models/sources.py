"""The registered backbone sources: each turns a ``LoadRequest`` into a model, tokenizer and preprocessing.

Sources (``harness ls backbones``):
    embedded        the tiny CLIP shipped in ``harness/assets/embedded_clip/``.
    folder          any folder in the embedded asset format (``open_clip_config.json``, ``model.safetensors``,
                    ``tokenizer_bpe.txt.gz``, ``preprocess.json``).
    openai-file     an OpenAI CLIP checkpoint (TorchScript archive or state dict, any supported file format);
                    the architecture is inferred from tensor shapes as the official ``build_model`` does.
    open_clip-file  an open_clip state dict whose architecture is an open_clip config name (``--model-config``).
    open_clip       an open_clip model name with a pretrained tag, downloaded through open_clip's cache.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.errors import CheckpointError
from harness.models.architecture import openai_config_from_state_dict, strip_non_weights
from harness.models.backbone import Preprocessing
from harness.models.files import read_state_dict, sha256_file
from harness.paths import ASSETS_DIR
from harness.registries import BACKBONES

EMBEDDED_DIR = ASSETS_DIR / "embedded_clip"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
FOLDER_FILES = ("open_clip_config.json", "model.safetensors", "tokenizer_bpe.txt.gz", "preprocess.json")


@dataclass(frozen=True)
class LoadRequest:
    """What the user asked for: the source string, pretrained tag/file, config name and resolved precision."""

    source: str | None
    pretrained: str | None = None
    model_config: str | None = None
    precision: str = "fp32"


@dataclass
class LoadedModel:
    """A loaded CLIP in fp32 (or already in the requested low precision), before device placement."""

    model: nn.Module
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    preprocessing: Preprocessing
    name: str
    weights_sha256: str


def cast_dtype(precision: str) -> torch.dtype | None:
    """open_clip's ``cast_dtype`` for a precision: fp32 LayerNorms around fp16/bf16 weights, as OpenAI's model."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)


def build_clip(config: dict[str, Any], precision: str, source: str) -> nn.Module:
    """An open_clip ``CLIP`` from a model config dict; a bad config is a ``CheckpointError`` naming ``source``."""
    import open_clip

    try:
        return open_clip.model.CLIP(**config, cast_dtype=cast_dtype(precision))
    except (TypeError, ValueError, AssertionError, ZeroDivisionError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: cannot build a CLIP model from its config {config}: {exc}") from None


def load_weights_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every weight, requiring an exact key and shape match; mismatches name the keys."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        details = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                details.append(f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}")
        raise CheckpointError(f"{source}: weights do not match the architecture ({'; '.join(details)})")
    model.load_state_dict(state, strict=True)


def clip_with_weights(
    config: dict[str, Any], state: dict[str, torch.Tensor], precision: str, source: str
) -> nn.Module:
    """Build the model of ``config`` and load ``state`` into it strictly (non-weight entries dropped)."""
    model = build_clip(config, precision, source)
    load_weights_strict(model, strip_non_weights(state), source)
    return model


def clip_tokenizer(context_length: int, vocab_size: int, source: str, bpe_path: Path | None = None) -> Any:
    """open_clip's CLIP BPE tokenizer (the shipped vocabulary unless ``bpe_path``), checked against the model."""
    from open_clip.tokenizer import SimpleTokenizer

    kwargs = {"bpe_path": str(bpe_path)} if bpe_path is not None else {}
    tokenizer = SimpleTokenizer(context_length=context_length, **kwargs)
    if tokenizer.vocab_size > vocab_size:
        raise CheckpointError(
            f"{source}: the tokenizer has {tokenizer.vocab_size} tokens but the model's token embedding only "
            f"{vocab_size}"
        )
    return tokenizer


def require_source(request: LoadRequest, kind: str, what: str) -> str:
    """The request's source string; a bare ``--model KIND`` without one is an error saying the syntax."""
    if not request.source:
        raise CheckpointError(f"backbone source {kind!r} needs {what}: --model {kind}:<{what}>")
    return request.source


def _text_sizes(config: dict[str, Any]) -> tuple[int, int]:
    text = config["text_cfg"]
    return int(text.get("context_length", 77)), int(text.get("vocab_size", 49408))


@BACKBONES.register("openai-file")
def load_openai_file(request: LoadRequest) -> LoadedModel:
    """An OpenAI CLIP checkpoint file; architecture inferred from shapes, QuickGELU, OpenAI normalisation."""
    path = Path(require_source(request, "openai-file", "path"))
    state, _ = read_state_dict(path)
    config = openai_config_from_state_dict(state, str(path))
    model = clip_with_weights(config, state, request.precision, str(path))
    context_length, vocab_size = _text_sizes(config)
    return LoadedModel(
        model=model,
        tokenizer=clip_tokenizer(context_length, vocab_size, str(path)),
        preprocessing=Preprocessing(config["vision_cfg"]["image_size"], OPENAI_MEAN, OPENAI_STD, "bicubic"),
        name=path.name,
        weights_sha256=sha256_file(path),
    )


def open_clip_config(name: str) -> dict[str, Any]:
    """The open_clip model config called ``name`` (``ViT-B/16`` is read as ``ViT-B-16``)."""
    import difflib

    import open_clip

    cleaned = name.replace("/", "-")
    config = open_clip.get_model_config(cleaned)
    if config is None:
        close = difflib.get_close_matches(cleaned, open_clip.list_models(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise CheckpointError(f"unknown open_clip model config {name!r}.{hint} See open_clip.list_models()")
    if config.get("custom_text") or "hf_model_name" in config.get("text_cfg", {}):
        raise CheckpointError(
            f"open_clip model {cleaned!r} has a custom text tower; the harness needs open_clip's standard CLIP "
            "text tower (token embedding, transformer, ln_final, text_projection)"
        )
    return config


@BACKBONES.register("open_clip-file")
def load_open_clip_file(request: LoadRequest) -> LoadedModel:
    """An open_clip state dict file (``--model FILE --model-config NAME`` or ``--model NAME --pretrained FILE``)."""
    path = Path(require_source(request, "open_clip-file", "path"))
    if not request.model_config:
        raise CheckpointError(f"{path}: an open_clip state dict needs its architecture: --model-config NAME")
    name = request.model_config
    config = open_clip_config(name)
    state, _ = read_state_dict(path)
    model = clip_with_weights(config, state, request.precision, str(path))
    context_length, vocab_size = _text_sizes(config)
    # As open_clip itself does for ``pretrained=<file>``: the config's resolution, OpenAI normalisation.
    return LoadedModel(
        model=model,
        tokenizer=clip_tokenizer(context_length, vocab_size, str(path)),
        preprocessing=Preprocessing(int(config["vision_cfg"]["image_size"]), OPENAI_MEAN, OPENAI_STD, "bicubic"),
        name=f"{name.replace('/', '-')}:{path.name}",
        weights_sha256=sha256_file(path),
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _folder_preprocessing(path: Path) -> Preprocessing:
    data = _read_json(path)
    try:
        mean, std = tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])
        image_size = int(data["image_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: expected {{'image_size': int, 'mean': [3 floats], 'std': [3 floats], 'interpolation': str}}: "
            f"{exc!r}"
        ) from None
    if len(mean) != 3 or len(std) != 3:
        raise CheckpointError(f"{path}: mean and std must have 3 values each")
    return Preprocessing(image_size, mean, std, str(data.get("interpolation", "bicubic")))  # type: ignore[arg-type]


@BACKBONES.register("folder")
def load_folder(request: LoadRequest) -> LoadedModel:
    """A folder in the embedded asset format (see the module docstring)."""
    folder = Path(require_source(request, "folder", "path"))
    missing = [name for name in FOLDER_FILES if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{folder}: not a backbone folder: missing {', '.join(missing)} (needs {FOLDER_FILES})")
    config = _read_json(folder / "open_clip_config.json")
    config = config.get("model_cfg", config)  # also accept open_clip's hub layout {"model_cfg": ...}
    if "text_cfg" not in config or "vision_cfg" not in config:
        raise CheckpointError(f"{folder / 'open_clip_config.json'}: expected keys embed_dim, vision_cfg, text_cfg")
    weights = folder / "model.safetensors"
    state, _ = read_state_dict(weights)
    model = clip_with_weights(config, state, request.precision, str(weights))
    context_length, vocab_size = _text_sizes(config)
    return LoadedModel(
        model=model,
        tokenizer=clip_tokenizer(context_length, vocab_size, str(folder), folder / "tokenizer_bpe.txt.gz"),
        preprocessing=_folder_preprocessing(folder / "preprocess.json"),
        name=folder.name,
        weights_sha256=sha256_file(weights),
    )


@BACKBONES.register("embedded")
def load_embedded(request: LoadRequest) -> LoadedModel:
    """The embedded tiny CLIP shipped with the harness (``harness/assets/embedded_clip/``)."""
    if not EMBEDDED_DIR.is_dir():
        raise CheckpointError(
            f"the embedded tiny CLIP is not in this installation ({EMBEDDED_DIR} does not exist); it is built by the "
            "embedded-world scripts. Meanwhile pass --model with a CLIP checkpoint file, a backbone folder, or an "
            "open_clip name with --pretrained"
        )
    loaded = load_folder(LoadRequest(str(EMBEDDED_DIR), precision=request.precision))
    loaded.name = "embedded"
    return loaded
