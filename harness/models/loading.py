"""``load_backbone``: from what the user typed (``--model``, ``--pretrained``, ``--model-config``) to a ``Backbone``.

How ``model`` is read, in order:
    1. an existing folder -> ``folder`` source; an existing file -> ``openai-file`` (architecture inferred),
       or ``open_clip-file`` when ``model_config`` names an open_clip config;
    2. ``KIND:ARG`` with a registered backbone source ``KIND`` -> that source with ``ARG``;
    3. a registered source name (``embedded``) -> that source;
    4. something that looks like a path (a separator or a weights suffix) -> "file not found";
    5. anything else -> an open_clip model name (``open_clip`` source, ``pretrained`` = tag or file).

Precision (``--precision``):
    fp32  float32 weights and compute.
    fp16  the official pure-fp16 model: Conv/Linear/attention weights and the projections in fp16,
          embeddings and LayerNorms in fp32 (LayerNorm computed in fp32), as OpenAI's ``convert_weights``.
    bf16  the same conversion with bfloat16.
    amp   float32 weights, autocast at forward (fp16 on CUDA, bf16 on CPU).
    auto  fp32 on CPU; amp on CUDA (fast, and without the fp16 overflow risks of pure-fp16 training; the
          official fp16 is one flag away, ``--precision fp16``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from harness.errors import CheckpointError, HarnessError
from harness.models.backbone import Backbone
from harness.models.files import check_readable_file
from harness.models.sources import LoadedModel, LoadRequest
from harness.registries import BACKBONES

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "amp")
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".tar")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; asking for CUDA without it is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HarnessError(f"--device {device}: CUDA is not available on this machine; use --device cpu or auto")
        return torch.device(device)
    raise HarnessError(f"--device {device!r}: expected one of {', '.join(DEVICES)}")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> fp32 on CPU, amp on CUDA (see the module docstring); other values are checked."""
    if precision not in PRECISIONS:
        raise HarnessError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "amp" if device.type == "cuda" else "fp32"
    return precision


def _is_open_clip_name(model: str) -> bool:
    import open_clip

    # The official names use a slash (ViT-B/16); open_clip's use a dash.
    return model.replace("/", "-") in open_clip.list_models()


def _looks_like_path(model: str) -> bool:
    return os.sep in model or model.startswith(".") or model.lower().endswith(WEIGHT_SUFFIXES)


def resolve_source(model: str, pretrained: str | None, model_config: str | None) -> tuple[str, LoadRequest]:
    """The registered source that handles ``model``, and the request to pass it (precision filled in later)."""
    path = Path(model).expanduser()
    if path.exists():
        if pretrained is not None:
            raise HarnessError(f"--pretrained applies to open_clip model names, not to the path {model}")
        if path.is_dir():
            return "folder", LoadRequest(str(path))
        if model_config is not None:
            return "open_clip-file", LoadRequest(str(path), model_config=model_config)
        return "openai-file", LoadRequest(str(path))
    kind, sep, argument = model.partition(":")
    if sep and kind in BACKBONES:
        return kind, LoadRequest(argument, pretrained, model_config)
    if model in BACKBONES and model != "open_clip":
        if pretrained is not None or model_config is not None:
            raise HarnessError(f"--pretrained and --model-config do not apply to --model {model}")
        return model, LoadRequest(None)
    if _looks_like_path(model) and not _is_open_clip_name(model):
        check_readable_file(path)  # raises the "not found" CheckpointError with what to pass instead
    if model_config is not None:
        raise HarnessError(f"--model-config applies to weights files; {model!r} is not an existing file")
    return "open_clip", LoadRequest(model, pretrained, None)


def _place(loaded: LoadedModel, precision: str, device: torch.device) -> Backbone:
    from open_clip.model import convert_weights_to_lp

    model = loaded.model
    if precision in _DTYPES:
        convert_weights_to_lp(model, dtype=_DTYPES[precision])  # idempotent for models already converted
    model.to(device)
    return Backbone(
        model,
        loaded.tokenizer,
        name=loaded.name,
        weights_sha256=loaded.weights_sha256,
        sot_token_id=int(loaded.tokenizer.sot_token_id),
        eot_token_id=int(loaded.tokenizer.eot_token_id),
        preprocessing=loaded.preprocessing,
        device=device,
        dtype=_DTYPES.get(precision, torch.float32),
        precision=precision,
    )


def load_backbone(
    model: str = "embedded",
    pretrained: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    *,
    model_config: str | None = None,
) -> Backbone:
    """Load a frozen CLIP backbone.

    Args:
        model: ``embedded``, a weights file, a backbone folder, an open_clip model name, or ``KIND:ARG``.
        pretrained: for open_clip names, a pretrained tag (``openai``, ``laion2b_s34b_b88k``) or a weights file.
        device: ``auto``, ``cpu`` or ``cuda``.
        precision: ``auto``, ``fp32``, ``bf16``, ``fp16`` or ``amp`` (see the module docstring).
        model_config: open_clip config name giving the architecture of a state dict file.

    Returns:
        The ``Backbone`` in eval mode with frozen parameters.

    Raises:
        CheckpointError: missing, unreadable or refused weights, or a tag that cannot be fetched.
        HarnessError: an invalid device, precision or combination of options.
    """
    torch_device = resolve_device(device)
    resolved_precision = resolve_precision(precision, torch_device)
    kind, request = resolve_source(model, pretrained, model_config)
    loader = BACKBONES.get(kind)
    loaded = loader(LoadRequest(request.source, request.pretrained, request.model_config, resolved_precision))
    if not isinstance(loaded, LoadedModel):
        raise CheckpointError(f"backbone source {kind!r} returned {type(loaded).__name__}, not a LoadedModel")
    return _place(loaded, resolved_precision, torch_device)
