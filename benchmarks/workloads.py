"""The two benchmark backbones, their class names and a small on-disk test set.

- ``tiny``: the embedded tiny CLIP (``--model embedded``). If its asset is not built in this checkout, the
  same architecture with random weights is written in the asset format and loaded through the same loader;
  the workload's label says so (speed does not depend on the weight values).
- ``vitb16-text``: ViT-B/16's text tower shape (width 512, 12 layers, 8 heads, context 77, OpenAI BPE
  tokenizer, embed_dim 512), random weights; the image tower is a small ViT (32 px) so that the measured
  differences are the text side's, which is what the speed-ups change.

Class names are real ImageNet class names (open_clip's list), spread over the list so that their token
lengths vary as in a real dataset; prompts are the official "a photo of a {class}.".
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
from PIL import Image

from harness.data import Datum, TaskData
from harness.engine.feature_cache import FeatureCache
from harness.errors import CheckpointError
from harness.models import load_backbone
from harness.models.backbone import Backbone, Preprocessing

TEMPLATE = "a photo of a {}."
CTX_INIT = "a photo of a"
MAX_CTX = 16  # CoOp's context length, the longest of the benchmarks' prompts
VITB16_TEXT_CONFIG = {
    "embed_dim": 512,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12},
}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class Workload:
    """A backbone with its benchmark sizes.

    Attributes:
        key: short name used in test ids and the summary (``tiny``, ``vitb16-text``).
        label: what the backbone is, for the summary table.
        backbone: the frozen backbone.
        classnames: the class names of the benchmarks.
        rounds: timed rounds per benchmark (few: the reference side is slow on CPU).
        cocoop_images: images per CoCoOp evaluation batch.
        model_ref: what ``--model`` loads this backbone from (empty if it cannot be loaded by name or path).
    """

    key: str
    label: str
    backbone: Backbone
    classnames: list[str]
    rounds: int
    cocoop_images: int
    model_ref: str = ""


def pick_classnames(backbone: Backbone, count: int, offset: int = 0, at_most: bool = False) -> list[str]:
    """``count`` ImageNet class names spread over the list whose CoOp prompts (16 context words) fit the context.

    With ``at_most``, fewer names are returned when fewer fit (the embedded tokenizer's 24-token context).
    """
    step = max(1, len(IMAGENET_CLASSNAMES) // count)
    candidates = list(IMAGENET_CLASSNAMES[offset::step]) + list(IMAGENET_CLASSNAMES)
    chosen: list[str] = []
    for name in candidates:
        if name in chosen:
            continue
        tokens = backbone.tokenize([name])
        fits = bool((tokens == backbone.eot_token_id).any())
        # Start, 16 context words, the name, ".", end: the longest prompt of the benchmarks (CoOp's).
        if fits and 1 + MAX_CTX + int(backbone.eot_positions(tokens)[0]) - 1 + 2 <= backbone.context_length:
            chosen.append(name)
        if len(chosen) == count:
            return chosen
    if at_most:
        return chosen
    raise ValueError(f"only {len(chosen)} class names fit the context of {backbone.name}")


def embedded_backbone(folder: Path, device: str, precision: str) -> tuple[Backbone, str, str]:
    """The embedded tiny CLIP, or its architecture with random weights when the asset is not built.

    Returns:
        The backbone, a label for the summary, and the ``--model`` value that loads it.
    """
    try:
        return load_backbone("embedded", device=device, precision=precision), "embedded tiny CLIP", "embedded"
    except CheckpointError:
        pass
    from harness.world.tiny_clip import build_model, export_asset, write_bpe_file

    if not (folder / "model.safetensors").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        bpe = write_bpe_file(folder.parent / "embedded_bpe.txt.gz")
        export_asset(build_model(seed=0), bpe, folder, {"made_by": "benchmarks (random weights)"})
    backbone = load_backbone(str(folder), device=device, precision=precision)
    return backbone, "embedded tiny CLIP shape, random weights (asset not built)", str(folder)


def vitb16_text_backbone(device: str, precision: str) -> Backbone:
    """Random CLIP with ViT-B/16's text tower shape (see the module docstring), fp32 or amp."""
    if precision not in ("fp32", "amp"):
        raise ValueError(f"the ViT-B/16 text-shape workload runs in fp32 or amp, not {precision}")
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**VITB16_TEXT_CONFIG).to(device)
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=77)
    digest = hashlib.sha256(json.dumps(VITB16_TEXT_CONFIG, sort_keys=True).encode()).hexdigest()
    return Backbone(
        model, tokenizer, name="vitb16-text-shape-random", weights_sha256=digest,
        sot_token_id=tokenizer.sot_token_id, eot_token_id=tokenizer.eot_token_id,
        preprocessing=Preprocessing(32, CLIP_MEAN, CLIP_STD), device=device,
        precision=precision,
    )


def make_test_task(folder: Path, classnames: list[str], n_images: int) -> TaskData:
    """A test split of ``n_images`` random 40x36 PNG images (resized and centre-cropped by the test transform)."""
    image_dir = folder / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    test = []
    for index in range(n_images):
        label = index % len(classnames)
        impath = f"{label:03d}/{index:05d}.png"
        (image_dir / impath).parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)).save(image_dir / impath)
        test.append(Datum(impath, label, classnames[label]))
    return TaskData(dataset="bench", image_dir=image_dir, train=[], val=[], test=test, classnames=list(classnames),
                    template=TEMPLATE, split_sha256=hashlib.sha256(repr(test).encode()).hexdigest(),
                    fewshot_index=None)


def image_features(backbone: Backbone, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` L2-normalised random image features on the backbone's device (for training steps)."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(count, backbone.embed_dim, generator=generator)
    return torch.nn.functional.normalize(features, dim=-1).to(backbone.device)


def fresh_caches(root: Path) -> tuple[list[FeatureCache], Callable[[], None]]:
    """A list of caches and a setup that appends a new empty one (every benchmark round starts cold)."""
    caches: list[FeatureCache] = []

    def setup() -> None:  # an empty cache per round: every round is cold
        caches.append(FeatureCache(Path(tempfile.mkdtemp(dir=root))))

    return caches, setup
