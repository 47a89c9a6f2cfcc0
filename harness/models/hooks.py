"""What a method changes inside one CLIP tower: deep prompts and LoRA updates, as frozen descriptions.

MaPLe, IVLP and PromptSRC insert prompt tokens at several depths of both towers, VPT does so in the image
tower, and CLIP-LoRA adds low-rank updates to the attention projections. The method owns those tensors
(its parameters, or tensors computed from them, such as MaPLe's coupled vision prompts); the backbone
stays frozen and owns none. A method describes them in a ``TowerHooks`` per tower and passes it to
``Backbone.encode_images(images, hooks=...)``, ``Backbone.encode_text_embeddings(embeddings, eot, hooks=...)``
or ``Backbone.encode_text(tokens, hooks=...)``; gradients flow from the features into those tensors.

Semantics (``prompt_methods_spec.md`` section 3.2, ``adapters_spec.md`` section 5.3; blocks 0-indexed):

- Text prompts at layer ``i >= 1`` replace positions ``1 .. n`` (right after start-of-text) of block ``i``'s
  input. Layer 0's text prompts are the context inside the prompt embeddings the method assembles (they get
  the positional embedding, as in CoOp), so layer 0 is refused here.
- Image prompts at layer 0 are appended after ``[class token, patches]`` once the positional embedding has
  been added, before ``ln_pre`` (they get no positional embedding); at layer ``i >= 1`` they replace the last
  ``n`` positions of block ``i``'s input. Layers not listed carry the previous block's outputs at those
  positions (MaPLe's blocks ``J..``). The class token is read, so the tower must pool it.
- Prompts are ``(n, width)``, shared by the batch, or ``(B, n, width)``, one set per sequence.
- ``LoRA`` on projection ``q``, ``k``, ``v`` or ``out`` of block ``i``: ``y = W x + b + scaling *
  dropout(x) A^T B^T`` with ``A`` ``(r, width)`` and ``B`` ``(width, r)``; the packed ``in_proj_weight`` of
  ``nn.MultiheadAttention`` is used slice by slice. CLIP-LoRA's ``scaling`` is ``alpha / sqrt(r)`` and its
  dropout acts in training only: pass ``dropout=0.0`` when evaluating.

Example (IVLP-like deep prompts in both towers plus LoRA on the image tower's queries)::

    text_deep = {i: self.text_prompts[i - 1] for i in range(1, depth)}      # (n_ctx, text_width) each
    image_deep = {i: self.image_prompts[i] for i in range(depth)}           # layer 0 = shallow prompts
    image_lora = {(i, "q"): LoRA(self.lora_a[i], self.lora_b[i], scaling=2 ** -0.5,
                                 dropout=0.25 if self.training else 0.0) for i in range(layers)}
    image_hooks = TowerHooks(deep_prompts=image_deep, lora=image_lora)
    text_hooks = TowerHooks(deep_prompts=text_deep)
    image_features = backbone.encode_images(images, hooks=image_hooks)         # L2-normalised
    text_features = backbone.encode_text_embeddings(prompts, eot, hooks=text_hooks)
    logits = backbone.logit_scale() * image_features @ F.normalize(text_features, dim=-1).T

``check_tower_hooks`` (called by the backbone) refuses, with a ``HarnessError`` naming the hook, the tower
and the backbone, what a tower cannot take: prompts on a ResNet image tower, a layer beyond the tower's
depth, a width that is not the tower's, LoRA on a block that is not open_clip's standard block.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from open_clip.transformer import ResidualAttentionBlock
from torch import nn

from harness.errors import HarnessError

PROJECTIONS = ("q", "k", "v", "out")


@dataclass(frozen=True, eq=False)
class LoRA:
    """A low-rank update ``scaling * B A`` of one projection, applied to ``dropout(x)``.

    Attributes:
        down: ``A``, ``(r, width)`` (CLIP-LoRA's ``lora_A``).
        up: ``B``, ``(width, r)`` (CLIP-LoRA's ``lora_B``, zero at initialisation).
        scaling: the factor of the update (CLIP-LoRA: ``alpha / sqrt(r)``).
        dropout: dropout probability on the update's input; 0 in evaluation.
    """

    down: torch.Tensor
    up: torch.Tensor
    scaling: float = 1.0
    dropout: float = 0.0


@dataclass(frozen=True, eq=False)
class TowerHooks:
    """Everything a method changes inside one tower (see the module docstring for the semantics).

    Attributes:
        deep_prompts: layer index -> prompts ``(n, width)`` or ``(B, n, width)``; the same ``n`` at every layer.
        lora: ``(layer index, projection)`` -> ``LoRA``, projection one of ``q``, ``k``, ``v``, ``out``.
    """

    deep_prompts: Mapping[int, torch.Tensor] = field(default_factory=dict)
    lora: Mapping[tuple[int, str], LoRA] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        """Whether the hooks change nothing (the backbone then takes its usual path)."""
        return not self.deep_prompts and not self.lora

    @property
    def prompt_count(self) -> int:
        """``n``, the number of prompt tokens per layer (0 without prompts)."""
        first = next(iter(self.deep_prompts.values()), None)
        return int(first.shape[-2]) if first is not None and first.dim() >= 2 else 0

    def lora_of_layer(self, layer: int) -> dict[str, LoRA]:
        """The updates of one block, by projection name."""
        return {name: update for (index, name), update in self.lora.items() if index == layer}


def _where(tower: str, backbone_name: str) -> str:
    return f"{tower} tower of backbone {backbone_name!r}"


def check_tower_hooks(hooks: TowerHooks, blocks: Sequence[nn.Module], width: int, *, tower: str,
                      backbone_name: str) -> None:
    """Raise ``HarnessError`` if a tower (``text`` or ``image``) with these blocks cannot take the hooks."""
    _check_prompts(hooks, len(blocks), width, tower, backbone_name)
    for (layer, name), update in hooks.lora.items():
        what = f"LoRA on {name!r} of layer {layer}"
        if name not in PROJECTIONS:
            raise HarnessError(f"{what} ({_where(tower, backbone_name)}): projection must be one of {PROJECTIONS}")
        if not 0 <= layer < len(blocks):
            raise HarnessError(
                f"{what}: the {_where(tower, backbone_name)} has {len(blocks)} layers (indices 0..{len(blocks) - 1})"
            )
        reason = lora_unsupported(blocks[layer])
        if reason:
            raise HarnessError(f"{what} ({_where(tower, backbone_name)}): {reason}")
        rank = update.down.shape[0] if update.down.dim() == 2 else -1
        if update.down.shape != (rank, width) or update.up.shape != (width, rank):
            raise HarnessError(
                f"{what} ({_where(tower, backbone_name)}): A {tuple(update.down.shape)} and B "
                f"{tuple(update.up.shape)} must be (r, {width}) and ({width}, r)"
            )
        if not 0.0 <= update.dropout < 1.0:
            raise HarnessError(f"{what}: dropout {update.dropout} must be in [0, 1)")


def _check_prompts(hooks: TowerHooks, depth: int, width: int, tower: str, backbone_name: str) -> None:
    if not hooks.deep_prompts:
        return
    count = hooks.prompt_count
    for layer, prompts in hooks.deep_prompts.items():
        what = f"deep {tower} prompts at layer {layer}"
        if layer >= depth:
            raise HarnessError(
                f"{what}: prompt depth {layer + 1} > {depth} layers of backbone {backbone_name!r}'s {tower} tower"
            )
        if layer < 0 or (tower == "text" and layer == 0):
            expected = "1.." if tower == "text" else "0.."
            raise HarnessError(
                f"{what} ({_where(tower, backbone_name)}): layers must be {expected}{depth - 1}"
                + ("; layer 0's text prompts belong in the prompt embeddings" if tower == "text" else "")
            )
        if prompts.dim() not in (2, 3) or prompts.shape[-1] != width or prompts.shape[-2] != count:
            raise HarnessError(
                f"{what}: shape {tuple(prompts.shape)}, expected ({count}, {width}) or (B, {count}, {width}) "
                f"({_where(tower, backbone_name)} is {width} wide; every layer has the same number of prompts)"
            )
    if tower == "image" and 0 not in hooks.deep_prompts:
        raise HarnessError(
            f"deep image prompts at layers {sorted(hooks.deep_prompts)} ({_where(tower, backbone_name)}): "
            "layer 0 (the shallow prompts appended to the patches) is needed to create the prompt positions"
        )


def place_prompts(x: torch.Tensor, prompts: torch.Tensor, *, text: bool, append: bool = False) -> torch.Tensor:
    """Text: replace positions ``1..n``; image: replace (or, at layer 0, append) the last ``n`` positions."""
    batch, count = x.shape[0], prompts.shape[-2]
    if prompts.dim() == 3 and prompts.shape[0] != batch:
        raise HarnessError(f"per-sequence prompts for {prompts.shape[0]} sequences, but the batch has {batch}")
    prompts = prompts.to(x.device, x.dtype).expand(batch, -1, -1)
    if text:
        if 1 + count > x.shape[1]:
            raise HarnessError(f"{count} deep text prompts do not fit in sequences of {x.shape[1]} tokens")
        return torch.cat([x[:, :1], prompts, x[:, 1 + count :]], dim=1)
    return torch.cat([x if append else x[:, :-count], prompts], dim=1)


def lora_unsupported(block: nn.Module) -> str:
    """Why LoRA cannot be added to this block's attention ("" when it can)."""
    if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv"):
        return f"the block is a {type(block).__name__}, not open_clip's standard ResidualAttentionBlock"
    attn = block.attn
    if not isinstance(attn, nn.MultiheadAttention) or not attn._qkv_same_embed_dim:
        return "its attention is not nn.MultiheadAttention with packed q/k/v"
    if attn.bias_k is not None or attn.add_zero_attn or attn.dropout:
        return "its attention has extra key/value biases or attention dropout"
    return ""
