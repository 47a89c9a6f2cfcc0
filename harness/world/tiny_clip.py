"""The tiny CLIP of the embedded world: its open_clip config, its reduced BPE vocabulary and its asset folder.

The asset folder (``harness/assets/embedded_clip/``) is what ``--model embedded`` loads: the open_clip
config, fp16 safetensors weights, the BPE merges file, the preprocessing and ``meta.json``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors.torch import save_file

from harness.world.render import IMAGE_SIZE

# First N merges of open_clip's shipped BPE file: 512 byte tokens + 7,678 merges + SOT/EOT = 8,192 ids.
NUM_MERGES = 7678
CONTEXT_LENGTH = 24
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

MODEL_CONFIG: dict[str, Any] = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": IMAGE_SIZE, "layers": 4, "width": 128, "patch_size": 8, "head_width": 32},
    "text_cfg": {
        "context_length": CONTEXT_LENGTH,
        "vocab_size": 512 + NUM_MERGES + 2,
        "width": 128,
        "heads": 4,
        "layers": 3,
    },
}

PREPROCESS = {"image_size": IMAGE_SIZE, "mean": list(CLIP_MEAN), "std": list(CLIP_STD), "interpolation": "bicubic"}


def write_bpe_file(path: Path, num_merges: int = NUM_MERGES) -> Path:
    """Write the first ``num_merges`` merges of open_clip's shipped BPE file, in the same format.

    The output is byte-identical for a given open_clip vocabulary file (gzip with a fixed mtime).
    """
    source = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(source).read().decode("utf-8").split("\n")
    # No trailing newline: SimpleTokenizer would read it as an empty merge and shift the special ids.
    text = "\n".join(lines[: 1 + num_merges])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as handle:
        handle.write(text.encode("utf-8"))
    return path


def make_tokenizer(bpe_path: Path) -> open_clip.tokenizer.SimpleTokenizer:
    """open_clip's own tokenizer over the reduced vocabulary."""
    return open_clip.tokenizer.SimpleTokenizer(bpe_path=str(bpe_path), context_length=CONTEXT_LENGTH)


def build_model(seed: int) -> open_clip.model.CLIP:
    """A freshly initialised tiny CLIP (initialisation seeded)."""
    torch.manual_seed(seed)
    return open_clip.model.CLIP(**MODEL_CONFIG)


def export_asset(model: torch.nn.Module, bpe_path: Path, out_dir: Path, meta: dict[str, Any]) -> None:
    """Write the asset folder atomically: config, fp16 safetensors weights, BPE file, preprocessing, meta.

    Args:
        model: the trained CLIP.
        bpe_path: the reduced BPE file the model was trained with.
        out_dir: the asset folder to (re)write.
        meta: how the weights were made (command, seed, steps, images seen, wall time...).
    """
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / "model.safetensors"))
    (tmp / "tokenizer_bpe.txt.gz").write_bytes(bpe_path.read_bytes())
    (tmp / "open_clip_config.json").write_text(json.dumps(MODEL_CONFIG, indent=2) + "\n")
    (tmp / "preprocess.json").write_text(json.dumps(PREPROCESS, indent=2) + "\n")
    digest = hashlib.sha256((tmp / "model.safetensors").read_bytes()).hexdigest()
    (tmp / "meta.json").write_text(json.dumps({**meta, "weights_sha256": digest}, indent=2) + "\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    for item in tmp.iterdir():
        os.replace(item, out_dir / item.name)
    tmp.rmdir()
