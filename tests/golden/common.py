"""Shared inputs of the golden comparisons with official implementations: a tiny CLIP and a tiny dataset.

Both are what an official trainer and the harness read alike:

- ``golden_clip.pt`` (committed beside this file, made by ``write_golden_clip``): a random tiny CLIP in
  OpenAI's architecture (ViT, QuickGELU, 64-wide heads, the OpenAI tokenizer's 49408-token vocabulary), four
  blocks in each tower so that deep prompts of depth 1-4 can be compared, weights exactly representable in
  fp16 and stored as OpenAI's released state dicts are (``clip.load(path, jit=False)`` reads it, and so does
  ``harness --model path``).
- ``write_tiny_dtd(root)``: a DTD-layout dataset (``dtd/images/<class>/<n>.png`` and
  ``dtd/split_zhou_DescribableTextures.json``) of 6 classes, 8 train / 2 val / 3 test images per class, 32 px,
  deterministic from a seed (class-dependent colour plus noise, so that training learns something). The
  official DTD reader and the harness's ``dtd`` card read it unchanged.

Regenerate the CLIP with ``python -m tests.golden.common OUT.pt`` (it is committed so that a change of
open_clip's initialisation cannot silently change every golden file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import open_clip
import torch
from open_clip.model import convert_weights_to_lp
from PIL import Image

GOLDEN_DIR = Path(__file__).resolve().parent
GOLDEN_CLIP = GOLDEN_DIR / "golden_clip.pt"
GOLDEN_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 4, "width": 64, "patch_size": 8, "head_width": 64},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 4},
    "quick_gelu": True,
}
TINY_DTD_CLASSES = ("banded", "blotchy", "braided", "bubbly", "bumpy", "chequered")
TINY_DTD_COUNTS = {"train": 8, "val": 2, "test": 3}
SPLIT_FILE = "split_zhou_DescribableTextures.json"


def write_golden_clip(path: Path = GOLDEN_CLIP, seed: int = 0) -> Path:
    """Write the golden tiny CLIP as an OpenAI-layout state dict (matrices fp16, as OpenAI's files)."""
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**GOLDEN_CLIP_CONFIG).eval()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())
        model.logit_scale.fill_(4.0)
    half = open_clip.model.CLIP(**GOLDEN_CLIP_CONFIG, cast_dtype=torch.float16)
    half.load_state_dict(model.state_dict())
    convert_weights_to_lp(half, dtype=torch.float16)
    state = {k: v.clone() for k, v in half.state_dict().items() if not k.endswith("attn_mask")}
    torch.save(state, path)
    return path


def write_tiny_dtd(root: Path, seed: int = 0) -> Path:
    """Write the tiny DTD-layout dataset under ``root/dtd``; returns that folder."""
    folder = Path(root) / "dtd"
    rng = np.random.default_rng(seed)
    colours = rng.integers(30, 225, size=(len(TINY_DTD_CLASSES), 3))
    split: dict[str, list[list[object]]] = {name: [] for name in TINY_DTD_COUNTS}
    for label, classname in enumerate(TINY_DTD_CLASSES):
        (folder / "images" / classname).mkdir(parents=True, exist_ok=True)
        index = 0
        for split_name, count in TINY_DTD_COUNTS.items():
            for _ in range(count):
                noise = rng.normal(0, 40, size=(32, 32, 3))
                pixels = np.clip(colours[label] + noise, 0, 255).astype(np.uint8)
                impath = f"{classname}/{classname}_{index:04d}.png"
                Image.fromarray(pixels).save(folder / "images" / impath)
                split[split_name].append([impath, label, classname])
                index += 1
    (folder / SPLIT_FILE).write_text(json.dumps(split), encoding="utf-8")
    return folder


if __name__ == "__main__":
    print(write_golden_clip(Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDEN_CLIP))
