"""The ``open_clip`` backbone source: an open_clip model name with a pretrained tag, fetched through open_clip.

With internet the weights are downloaded once into the Hugging Face / open_clip cache. Offline (no
network, or ``HF_HUB_OFFLINE=1``), only tags already in that cache load; anything else is a
``CheckpointError`` that says how to get the file.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import CheckpointError
from harness.models.backbone import Preprocessing
from harness.models.files import sha256_file
from harness.models.sources import (
    LoadedModel,
    LoadRequest,
    clip_tokenizer,
    load_open_clip_file,
    open_clip_config,
    require_source,
)
from harness.registries import BACKBONES


def _download(name: str, tag: str, config: dict) -> Path:
    import open_clip

    try:
        target = open_clip.download_pretrained(config)
    except Exception as exc:  # noqa: BLE001 - hub and network errors come in many types; all mean "not available"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"cannot fetch open_clip weights {name} / {tag} ({reason}). The weights are not in the local cache and "
            "cannot be downloaded here. Either download them on a machine with internet (e.g. run "
            f"`python -c \"import open_clip; open_clip.create_model('{name}', pretrained='{tag}')\"`) and copy the "
            "Hugging Face cache (~/.cache/huggingface, or set HF_HOME / HF_HUB_CACHE to it), or pass the weights "
            f"file directly: --model {name} --pretrained /path/to/weights (or --model /path/to/ViT-B-16.pt for an "
            "OpenAI CLIP file)"
        ) from None
    if not target or not Path(target).is_file():
        raise CheckpointError(f"open_clip returned no weights file for {name} / {tag}")
    return Path(target)


def _preprocessing(model: object, name: str) -> Preprocessing:
    import open_clip

    config = open_clip.get_model_preprocess_cfg(model)
    size = config["size"]
    if isinstance(size, list | tuple):
        if len(set(size)) != 1:
            raise CheckpointError(f"open_clip model {name}: non-square input size {size} is not supported")
        size = size[0]
    if config.get("resize_mode", "shortest") != "shortest":
        raise CheckpointError(f"open_clip model {name}: resize mode {config['resize_mode']!r} is not supported")
    mean, std = tuple(config["mean"]), tuple(config["std"])
    return Preprocessing(int(size), mean, std, str(config.get("interpolation", "bicubic")))  # type: ignore[arg-type]


@BACKBONES.register("open_clip")
def load_open_clip(request: LoadRequest) -> LoadedModel:
    """An open_clip model by name and pretrained tag (``--model ViT-B-16 --pretrained openai``)."""
    import open_clip

    name = require_source(request, "open_clip", "name").replace("/", "-")
    config = open_clip_config(name)
    tags = open_clip.list_pretrained_tags_by_model(name)
    if request.pretrained is None:
        raise CheckpointError(
            f"open_clip model {name} needs --pretrained: one of {', '.join(tags) or '(no known tags)'}, or a "
            "weights file"
        )
    if Path(request.pretrained).is_file():
        return load_open_clip_file(LoadRequest(request.pretrained, None, name, request.precision))
    tag_config = open_clip.get_pretrained_cfg(name, request.pretrained)
    if not tag_config:
        raise CheckpointError(
            f"unknown pretrained tag {request.pretrained!r} for open_clip model {name} (and no such file); "
            f"known tags: {', '.join(tags) or 'none'}"
        )
    weights = _download(name, request.pretrained, tag_config)
    low_precision = request.precision if request.precision in ("fp16", "bf16") else "fp32"
    try:
        model = open_clip.create_model(
            name,
            pretrained=request.pretrained,
            precision=low_precision,
            device="cpu",
            # OpenAI's and some other tags were trained with QuickGELU; follow the tag, not the bare config.
            force_quick_gelu=bool(tag_config.get("quick_gelu", False)),
        )
    except Exception as exc:  # noqa: BLE001 - open_clip reports load problems as assorted exception types
        raise CheckpointError(f"open_clip could not load {name} / {request.pretrained} from {weights}: {exc}") from None
    text = config["text_cfg"]
    return LoadedModel(
        model=model,
        tokenizer=clip_tokenizer(int(text.get("context_length", 77)), int(text.get("vocab_size", 49408)), name),
        preprocessing=_preprocessing(model, name),
        name=f"{name}:{request.pretrained}",
        weights_sha256=sha256_file(weights),
    )
