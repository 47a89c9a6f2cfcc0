"""Small random float64 CLIP towers of several shapes, and random hooks, for the encoder-hook tests."""

from __future__ import annotations

from collections.abc import Iterable

import open_clip
import torch

from harness.models.backbone import Backbone, Preprocessing
from harness.models.hooks import LoRA

EOT = 99
SHAPES = {
    "b32": ({"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
            {"width": 32, "heads": 2, "layers": 2}),
    "b16": ({"image_size": 32, "layers": 3, "width": 96, "patch_size": 4, "head_width": 32},
            {"width": 64, "heads": 2, "layers": 3}),
    "l14": ({"image_size": 42, "layers": 4, "width": 128, "patch_size": 7, "head_width": 32},
            {"width": 96, "heads": 3, "layers": 4}),
}


def make_backbone(shape: str, seed: int = 0, dtype: torch.dtype = torch.float64) -> Backbone:
    vision, text = SHAPES[shape]
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(embed_dim=32, vision_cfg=vision,
                                 text_cfg={**text, "context_length": 12, "vocab_size": 100}).to(dtype)
    with torch.no_grad():  # non-trivial biases and norms, so that a misplaced term shows
        for name, tensor in model.named_parameters():
            if name.endswith("bias") or ".ln" in name or name.startswith("ln"):
                tensor.add_(0.1 * torch.randn_like(tensor))
    return Backbone(model, lambda texts: torch.zeros(len(texts), 12, dtype=torch.long), name=f"random-{shape}",
                    weights_sha256="0" * 64, sot_token_id=98, eot_token_id=EOT,
                    preprocessing=Preprocessing(vision["image_size"], (0.5,) * 3, (0.25,) * 3), dtype=dtype)


def make_tokens(count: int, length: int = 12, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 98, (count, length), generator=generator)
    tokens[:, 0] = 98
    for row in range(count):
        end = 5 + row % (length - 5)
        tokens[row, end], tokens[row, end + 1 :] = EOT, 0
    return tokens


def make_images(backbone: Backbone, count: int = 3) -> torch.Tensor:
    size = backbone.preprocessing.image_size
    return torch.randn(count, 3, size, size, generator=torch.Generator().manual_seed(2), dtype=backbone.dtype)


def random_prompts(layers: Iterable[int], count: int, width: int, batch: int | None = None,
                   dtype: torch.dtype = torch.float64) -> dict[int, torch.Tensor]:
    shape = (count, width) if batch is None else (batch, count, width)
    return {layer: torch.randn(shape, dtype=dtype).requires_grad_() for layer in layers}


def random_lora(layers: Iterable[int], names: Iterable[str], width: int, rank: int = 2, dropout: float = 0.0,
                dtype: torch.dtype = torch.float64) -> dict[tuple[int, str], LoRA]:
    return {(layer, name): LoRA(torch.randn(rank, width, dtype=dtype).requires_grad_(),
                                (0.3 * torch.randn(width, rank, dtype=dtype)).requires_grad_(),
                                scaling=rank ** -0.5, dropout=dropout)
            for layer in layers for name in names}
