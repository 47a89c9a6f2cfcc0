"""Forward passes of open_clip's text and image towers with ``TowerHooks`` (deep prompts, LoRA) applied.

The backbone keeps its usual calls (``model.encode_image``, its text path) when there are no hooks; these
functions run only when a method changes the inside of a tower. Blocks without a LoRA update run as open_clip's
own modules; a block with one is restated (pre-norm attention with the update on the chosen projections,
then the MLP, as ``ResidualAttentionBlock.forward``). Semantics are in ``harness.models.hooks``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.hooks import LoRA, TowerHooks, place_prompts
from harness.models.shared_prefix import _heads, _merge

VIT_PARTS = ("conv1", "class_embedding", "positional_embedding", "ln_pre", "transformer", "ln_post", "proj")


def image_tower_unsupported(visual: nn.Module) -> str:
    """Why hooks cannot enter this image tower ("" when they can: open_clip's ViT with a class token)."""
    missing = [name for name in VIT_PARTS if not hasattr(visual, name)]
    if missing or not hasattr(getattr(visual, "transformer", None), "resblocks"):
        return f"the image tower is a {type(visual).__name__}, not a ViT (missing {', '.join(missing) or 'resblocks'})"
    if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
        return "the image tower does not pool its class token (attention or average pooling)"
    return ""


def _with_lora(output: torch.Tensor, inputs: torch.Tensor, update: LoRA | None) -> torch.Tensor:
    if update is None:
        return output
    if update.dropout:
        inputs = F.dropout(inputs, update.dropout, training=True)
    down, up = update.down.to(inputs.device, inputs.dtype), update.up.to(inputs.device, inputs.dtype)
    return output + update.scaling * ((inputs @ down.T) @ up.T)


def lora_block(block: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, updates: dict[str, LoRA]) -> torch.Tensor:
    """One open_clip ``ResidualAttentionBlock`` on batch-first ``x`` with LoRA on some projections."""
    attn = block.attn
    hidden = block.ln_1(x)
    width = attn.embed_dim
    heads = []
    for index, name in enumerate(("q", "k", "v")):
        rows = slice(index * width, (index + 1) * width)
        bias = attn.in_proj_bias[rows] if attn.in_proj_bias is not None else None
        projected = _with_lora(F.linear(hidden, attn.in_proj_weight[rows], bias), hidden, updates.get(name))
        heads.append(_heads(projected, attn.num_heads))
    mask = mask.to(hidden.dtype) if mask is not None else None
    attended = _merge(F.scaled_dot_product_attention(*heads, attn_mask=mask))
    out = _with_lora(F.linear(attended, attn.out_proj.weight, attn.out_proj.bias), attended, updates.get("out"))
    x = x + block.ls_1(out)
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def run_blocks(blocks: Sequence[nn.Module], x: torch.Tensor, mask: torch.Tensor | None, hooks: TowerHooks, *,
               text: bool, batch_first: bool = True) -> torch.Tensor:
    """The blocks on batch-first ``x``, with each layer's prompts placed at its input and its LoRA applied."""
    for index, block in enumerate(blocks):
        prompts = hooks.deep_prompts.get(index)
        if prompts is not None and (text or index > 0):  # image layer 0 is appended before ln_pre
            x = place_prompts(x, prompts, text=text)
        updates = hooks.lora_of_layer(index)
        if updates:  # checked by ``check_tower_hooks``: open_clip's standard block
            x = lora_block(block, x, mask, updates)
        elif batch_first:
            x = block(x, attn_mask=mask)
        else:  # older open_clip: sequence-first blocks
            x = block(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)
    return x


def encode_text_hooked(model: nn.Module, embeddings: torch.Tensor, eot_positions: torch.Tensor,
                       hooks: TowerHooks) -> torch.Tensor:
    """Unnormalised text features of prompt embeddings ``(n, L, width)`` (already in the tower's dtype)."""
    length = embeddings.shape[1]
    x = embeddings + model.positional_embedding[:length].to(embeddings.dtype)
    mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
    batch_first = getattr(model.transformer, "batch_first", True)
    x = run_blocks(model.transformer.resblocks, x, mask, hooks, text=True, batch_first=batch_first)
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), eot_positions.to(x.device)]
    projection = model.text_projection
    return projection(x) if isinstance(projection, nn.Linear) else x @ projection


def encode_image_hooked(visual: nn.Module, images: torch.Tensor, hooks: TowerHooks) -> torch.Tensor:
    """Unnormalised image features of a batch ``(B, 3, H, W)`` (already in the tower's dtype)."""
    x = visual.conv1(images)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # (B, patches, width)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    if hasattr(visual, "patch_dropout"):
        x = visual.patch_dropout(x)
    if 0 in hooks.deep_prompts:  # appended after the positional embedding, before ln_pre (spec 3.2)
        x = place_prompts(x, hooks.deep_prompts[0], text=False, append=True)
    x = visual.ln_pre(x)
    batch_first = getattr(visual.transformer, "batch_first", True)
    x = run_blocks(visual.transformer.resblocks, x, None, hooks, text=False, batch_first=batch_first)
    pooled, _ = visual._pool(x)  # the class token (``image_tower_unsupported`` refuses other pooling)
    return pooled @ visual.proj if visual.proj is not None else pooled
