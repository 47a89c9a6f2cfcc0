"""Builders of tiny CLIP weights files in the real formats, for backbone loading tests.

- ``make_openai_clip``: a random tiny open_clip CLIP in OpenAI's architecture (QuickGELU, 64-wide heads,
  OpenAI tokenizer vocabulary), with weights rounded to fp16 like OpenAI's released files.
- ``save_openai_state_dict`` / ``save_openai_torchscript``: the two forms ``clip.load`` accepts (a plain
  ``torch.save`` state dict, and a TorchScript archive with ``input_resolution``, ``context_length`` and
  ``vocab_size`` entries and fp16 weights as in OpenAI's ``ViT-B-16.pt``).
- ``write_backbone_folder``: a folder in the embedded asset format.
"""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import open_clip
import torch
from open_clip.model import convert_weights_to_lp
from safetensors.torch import save_file

OPENAI_LAYOUT_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 2},
    "quick_gelu": True,
}
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def make_openai_clip(seed: int = 0) -> open_clip.model.CLIP:
    """A random tiny fp32 CLIP in OpenAI's architecture whose weights are exactly representable in fp16."""
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**OPENAI_LAYOUT_CONFIG).eval()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
        model.logit_scale.fill_(4.0)  # a non-default temperature, so that a wrong one shows
    return model


def openai_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights with OpenAI's dtype mix (``convert_weights``: matrices fp16, norms/embeddings fp32)."""
    half = open_clip.model.CLIP(**OPENAI_LAYOUT_CONFIG, cast_dtype=torch.float16)
    half.load_state_dict(model.state_dict())
    convert_weights_to_lp(half, dtype=torch.float16)
    return {k: v.clone() for k, v in half.state_dict().items() if not k.endswith("attn_mask")}


def save_openai_state_dict(model: torch.nn.Module, path: Path) -> Path:
    """``torch.save`` of the OpenAI-layout state dict (what ``clip.load`` falls back to)."""
    torch.save(openai_state_dict(model), path)
    return path


def save_openai_torchscript(model: torch.nn.Module, path: Path) -> Path:
    """A traced TorchScript archive in the layout of OpenAI's released ``.pt`` files."""
    half = open_clip.model.CLIP(**OPENAI_LAYOUT_CONFIG, cast_dtype=torch.float16).eval()
    half.load_state_dict(model.state_dict())
    convert_weights_to_lp(half, dtype=torch.float16)
    config = OPENAI_LAYOUT_CONFIG
    # OpenAI's archives hold these as tensors; open_clip keeps them as plain ints under the same names.
    del half.context_length, half.vocab_size
    half.register_buffer("input_resolution", torch.tensor(config["vision_cfg"]["image_size"]))
    half.register_buffer("context_length", torch.tensor(config["text_cfg"]["context_length"]))
    half.register_buffer("vocab_size", torch.tensor(config["text_cfg"]["vocab_size"]))
    size = config["vision_cfg"]["image_size"]
    inputs = {
        "encode_image": (torch.zeros(1, 3, size, size, dtype=torch.float16),),
        "encode_text": (torch.zeros(1, config["text_cfg"]["context_length"], dtype=torch.long),),
    }
    with warnings.catch_warnings():  # tracer and deprecation warnings are expected here
        warnings.simplefilter("ignore")
        traced = torch.jit.trace_module(half, inputs, check_trace=False)
        torch.jit.save(traced, str(path))
    return path


def truncated_bpe(path: Path, merges: int = 500) -> Path:
    """The first ``merges`` merges of open_clip's BPE file (a small vocabulary: 512 + merges + 2 tokens)."""
    with gzip.open(open_clip.tokenizer.default_bpe(), "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")[: merges + 1]  # the first line is a version header
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines))  # no trailing newline: it would add an empty merge to the vocabulary
    return path


def write_backbone_folder(folder: Path, seed: int = 0, merges: int = 500, image_size: int = 32) -> Path:
    """A backbone folder in the embedded asset format holding a random tiny CLIP with a small vocabulary."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab = 256 * 2 + merges + 2
    config = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": image_size, "layers": 1, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 24, "vocab_size": vocab, "width": 64, "heads": 2, "layers": 1},
    }
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**config).eval()
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.endswith("attn_mask")}
    save_file(state, str(folder / "model.safetensors"))
    truncated_bpe(folder / "tokenizer_bpe.txt.gz", merges)
    preprocess = {"image_size": image_size, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    (folder / "preprocess.json").write_text(json.dumps({**preprocess, "interpolation": "bicubic"}))
    (folder / "meta.json").write_text(json.dumps({"script": "tests/clip_files.py", "seed": seed}))
    return folder
