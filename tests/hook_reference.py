"""An independent, step-by-step restatement of CLIP's towers with deep prompts and LoRA, for the hook tests.

Written from the transformer block's definition (pre-norm LayerNorm, multi-head attention from the packed
``in_proj_weight``, residuals, c_fc/GELU/c_proj MLP) and the spec's prompt semantics, not from the harness's
code: explicit matmuls, softmax and LayerNorm formulas, in-place position replacement on a copy. LoRA adds
``scaling * dropout(x) @ A.T @ B.T`` to a projection; dropout draws happen in the order q, k, v, out per block,
as in ``harness.models.hooked_towers``, so a seeded run draws the same masks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.hooks import TowerHooks


def layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def activation(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if type(module).__name__ == "QuickGELU":
        return x * torch.sigmoid(1.702 * x)
    assert isinstance(module, nn.GELU) and module.approximate == "none"
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def lora_delta(hooks: TowerHooks, layer: int, name: str, x: torch.Tensor) -> torch.Tensor:
    update = hooks.lora.get((layer, name))
    if update is None:
        return torch.zeros((), dtype=x.dtype)
    if update.dropout:
        x = F.dropout(x, update.dropout, training=True)
    return update.scaling * (x @ update.down.to(x.dtype).T @ update.up.to(x.dtype).T)


def block_forward(block: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, hooks: TowerHooks,
                  layer: int) -> torch.Tensor:
    assert isinstance(block.ls_1, nn.Identity) and isinstance(block.ls_2, nn.Identity)
    attn = block.attn
    width, heads = attn.embed_dim, attn.num_heads
    head_dim = width // heads
    h = layer_norm(x, block.ln_1)
    weight, bias = attn.in_proj_weight, attn.in_proj_bias
    q = h @ weight[:width].T + bias[:width] + lora_delta(hooks, layer, "q", h)
    k = h @ weight[width : 2 * width].T + bias[width : 2 * width] + lora_delta(hooks, layer, "k", h)
    v = h @ weight[2 * width :].T + bias[2 * width :] + lora_delta(hooks, layer, "v", h)
    batch, length, _ = x.shape

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(batch, length, heads, head_dim).permute(0, 2, 1, 3)

    scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(head_dim)
    if mask is not None:
        scores = scores + mask
    mixed = (torch.softmax(scores, dim=-1) @ split(v)).permute(0, 2, 1, 3).reshape(batch, length, width)
    out = mixed @ attn.out_proj.weight.T + attn.out_proj.bias + lora_delta(hooks, layer, "out", mixed)
    x = x + out
    hidden = activation(block.mlp.gelu, layer_norm(x, block.ln_2) @ block.mlp.c_fc.weight.T + block.mlp.c_fc.bias)
    return x + hidden @ block.mlp.c_proj.weight.T + block.mlp.c_proj.bias


def text_features(model: nn.Module, embeddings: torch.Tensor, eot: torch.Tensor, hooks: TowerHooks) -> torch.Tensor:
    """Unnormalised text features; prompts replace positions 1..n at the input of each listed layer >= 1."""
    length = embeddings.shape[1]
    x = embeddings + model.positional_embedding[:length]
    mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
    for layer, block in enumerate(model.transformer.resblocks):
        if layer in hooks.deep_prompts:
            x = x.clone()
            x[:, 1 : 1 + hooks.prompt_count] = hooks.deep_prompts[layer].to(x.dtype)
        x = block_forward(block, x, mask, hooks, layer)
    x = layer_norm(x, model.ln_final)
    return x[torch.arange(x.shape[0]), eot] @ model.text_projection


def image_features(model: nn.Module, images: torch.Tensor, hooks: TowerHooks) -> torch.Tensor:
    """L2-normalised image features; prompts appended before ln_pre, replacing the last n later."""
    visual = model.visual
    patch = visual.conv1.weight.shape[-1]
    x = F.conv2d(images, visual.conv1.weight, stride=patch).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding
    n = hooks.prompt_count
    if n:
        x = torch.cat([x, hooks.deep_prompts[0].to(x.dtype).expand(x.shape[0], -1, -1)], dim=1)
    x = layer_norm(x, visual.ln_pre)
    for layer, block in enumerate(visual.transformer.resblocks):
        if layer > 0 and layer in hooks.deep_prompts:
            x = x.clone()
            x[:, -n:] = hooks.deep_prompts[layer].to(x.dtype)
        x = block_forward(block, x, None, hooks, layer)
    pooled = layer_norm(x[:, 0], visual.ln_post) @ visual.proj
    return pooled / pooled.norm(dim=-1, keepdim=True)
