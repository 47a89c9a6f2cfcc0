"""Inferring a CLIP architecture from the tensor shapes of an OpenAI-layout state dict.

This follows the official ``clip.model.build_model`` (spec section 2): ViT when ``visual.proj`` exists, every
size read from a tensor shape, attention heads = width // 64, and QuickGELU as in OpenAI's models. The
result is an open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``, ``quick_gelu``).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from harness.errors import CheckpointError

# Non-weight entries of OpenAI's TorchScript archives, and attention masks that the model rebuilds itself.
METADATA_KEYS = ("input_resolution", "context_length", "vocab_size")


def strip_non_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict without OpenAI's metadata entries and stored attention masks."""
    return {k: v for k, v in state.items() if k not in METADATA_KEYS and k.rsplit(".", 1)[-1] != "attn_mask"}


def _shape(state: dict[str, torch.Tensor], key: str, source: str) -> torch.Size:
    if key not in state:
        raise CheckpointError(
            f"{source}: key {key!r} not found; expected a CLIP state dict in the OpenAI/open_clip layout "
            "(pass --model-config NAME for an open_clip model with another layout)"
        )
    return state[key].shape


def _count_layers(state: dict[str, torch.Tensor], prefix: str) -> int:
    return len({key[len(prefix) :].split(".")[0] for key in state if key.startswith(prefix)})


def _vision_config(state: dict[str, torch.Tensor], source: str) -> dict[str, Any]:
    if "visual.proj" in state:
        width, _, patch, _ = _shape(state, "visual.conv1.weight", source)
        grid = round(math.sqrt(_shape(state, "visual.positional_embedding", source)[0] - 1))
        return {
            "layers": _count_layers(state, "visual.transformer.resblocks."),
            "width": int(width),
            "patch_size": int(patch),
            "image_size": int(patch * grid),
            "head_width": 64,
        }
    # Modified ResNet (RN50, RN101, RN50x4, ...): layer counts per stage, resolution = attnpool grid x 32.
    layers = tuple(_count_layers(state, f"visual.layer{stage}.") for stage in (1, 2, 3, 4))
    positions = _shape(state, "visual.attnpool.positional_embedding", source)[0]
    grid = round(math.sqrt(positions - 1))
    if grid * grid + 1 != positions:
        raise CheckpointError(f"{source}: visual.attnpool.positional_embedding has {positions} rows, not grid^2 + 1")
    return {
        "layers": layers,
        "width": int(_shape(state, "visual.layer1.0.conv1.weight", source)[0]),
        "image_size": grid * 32,
        "head_width": 64,
    }


def openai_config_from_state_dict(state: dict[str, torch.Tensor], source: str) -> dict[str, Any]:
    """The open_clip model config of an OpenAI-layout CLIP state dict, inferred from tensor shapes.

    Args:
        state: the state dict (metadata keys may still be present).
        source: the file name, for error messages.

    Raises:
        CheckpointError: naming the missing key when the state dict is not in the OpenAI layout.
    """
    text_width = int(_shape(state, "ln_final.weight", source)[0])
    config = {
        "embed_dim": int(_shape(state, "text_projection", source)[1]),
        "vision_cfg": _vision_config(state, source),
        "text_cfg": {
            "context_length": int(_shape(state, "positional_embedding", source)[0]),
            "vocab_size": int(_shape(state, "token_embedding.weight", source)[0]),
            "width": text_width,
            "heads": text_width // 64,
            "layers": _count_layers(state, "transformer.resblocks."),
        },
        "quick_gelu": True,
    }
    if "input_resolution" in state and int(state["input_resolution"]) != config["vision_cfg"]["image_size"]:
        raise CheckpointError(
            f"{source}: input_resolution {int(state['input_resolution'])} disagrees with the "
            f"{config['vision_cfg']['image_size']} px implied by the positional embedding"
        )
    return config
