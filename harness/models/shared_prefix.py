"""Text features of prompts that start with a shared prefix, the prefix encoded once (exact with a causal mask).

CoOp's class prompts are ``[start] ctx_1 .. ctx_M name_tokens . [end]``: every class has the same first
``1 + M`` tokens. CoCoOp's prompts for one image share them too (the context shifted by that image's
meta-net bias). Under a causal mask the hidden states of those positions depend only on them, so they are
the same in every prompt: they are computed once per distinct prefix, and each class's own tokens (its
suffix) attend to the prefix's keys and values and to the earlier suffix tokens. The features read at the
end-of-text token are those of the full computation up to float rounding (the attention sums the same
terms in another order).

This needs the text tower's blocks to be open_clip's standard ``ResidualAttentionBlock`` (pre-norm,
``nn.MultiheadAttention`` with packed q/k/v, optional LayerScale), whose arithmetic is restated here;
``prefix_sharing_unsupported`` says why another tower cannot, and callers then encode full prompts.
Deep text prompts (MaPLe, IVLP, PromptSRC) replace positions ``1..n`` at each layer's input; when those lie
inside the prefix they are the same for every suffix, so the sharing stays exact. LoRA hooks need whole prompts.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from torch import nn

from harness.models.hooks import place_prompts


def prefix_sharing_unsupported(model: nn.Module) -> str:
    """Why ``encode_with_shared_prefix`` cannot run this model's text tower ("" when it can)."""
    blocks = getattr(getattr(model, "transformer", None), "resblocks", None)
    if blocks is None:
        return "the text transformer has no resblocks"
    for index, block in enumerate(blocks):
        if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv"):
            return f"text block {index} is a {type(block).__name__}, not open_clip's ResidualAttentionBlock"
        attn = block.attn
        if not isinstance(attn, nn.MultiheadAttention) or not attn._qkv_same_embed_dim:
            return f"text block {index} does not use nn.MultiheadAttention with packed q/k/v"
        if attn.bias_k is not None or attn.add_zero_attn:
            return f"text block {index}'s attention has extra key/value biases"
    return ""


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(N, L, W)`` to ``(N, heads, L, W / heads)``."""
    n, length, width = x.shape
    return x.view(n, length, heads, width // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    """``(N, heads, L, d)`` to ``(N, L, heads * d)``."""
    n, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(n, length, heads * dim)


def _qkv(block: ResidualAttentionBlock, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    attn = block.attn
    q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    return _heads(q, attn.num_heads), _heads(k, attn.num_heads), _heads(v, attn.num_heads)


def _finish(block: ResidualAttentionBlock, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """The rest of the block after attention: output projection, residuals, MLP (as ``block.forward``)."""
    x = x + block.ls_1(block.attn.out_proj(_merge(attended)))
    return x + block.ls_2(block.mlp(block.ln_2(x)))


def encode_with_shared_prefix(model: nn.Module, prefix: torch.Tensor, suffix: torch.Tensor,
                              eot_positions: torch.Tensor, allowed: torch.Tensor,
                              deep_prompts: Mapping[int, torch.Tensor] | None = None) -> torch.Tensor:
    """Unnormalised text features ``(B, N, embed_dim)`` of the prompts ``prefix[b] + suffix[n]``.

    Args:
        model: the open_clip CLIP (checked with ``prefix_sharing_unsupported`` by the caller).
        prefix: token embeddings ``(B, P, width)``: the first ``P`` positions, one prefix per group.
        suffix: token embeddings ``(N, S, width)`` of positions ``P .. P+S-1``, the same for every prefix.
        eot_positions: ``(N,)`` end-of-text index of each suffix's prompt, counted from the prompt's start
            (so at least ``P``).
        allowed: ``(P+S, P+S)`` boolean attention mask of the full prompt (True where a query may attend).
        deep_prompts: deep text prompts (``harness.models.hooks``), layer -> ``(n, width)`` or ``(B, n, width)``,
            replacing prefix positions ``1..n`` at that layer's input (the caller checks ``1 + n <= P``).
    """
    batch, length_p, _ = prefix.shape
    n_suffix, length_s, width = suffix.shape
    positional = model.positional_embedding.to(prefix.dtype)
    hidden_p = prefix + positional[:length_p]
    hidden_s = (suffix + positional[length_p : length_p + length_s]).unsqueeze(0).expand(batch, -1, -1, -1)
    hidden_s = hidden_s.reshape(batch * n_suffix, length_s, width)
    mask_p, mask_s = allowed[:length_p, :length_p], allowed[length_p:, :]
    blocks = list(model.transformer.resblocks)
    for index, block in enumerate(blocks):
        if deep_prompts and index in deep_prompts:  # they sit inside the prefix, shared by every suffix
            hidden_p = place_prompts(hidden_p, deep_prompts[index], text=True)
        q_p, k_p, v_p = _qkv(block, hidden_p)  # (B, h, P, d)
        q_s, k_s, v_s = _qkv(block, hidden_s)  # (B*N, h, S, d)
        shape = (batch, n_suffix, *k_p.shape[1:])
        keys = torch.cat([k_p.unsqueeze(1).expand(shape).flatten(0, 1), k_s], dim=2)
        values = torch.cat([v_p.unsqueeze(1).expand(shape).flatten(0, 1), v_s], dim=2)
        attended_s = F.scaled_dot_product_attention(q_s, keys, values, attn_mask=mask_s)
        hidden_s = _finish(block, hidden_s, attended_s)
        if index < len(blocks) - 1:  # the last block's prefix output is never read
            attended_p = F.scaled_dot_product_attention(q_p, k_p, v_p, attn_mask=mask_p)
            hidden_p = _finish(block, hidden_p, attended_p)
    rows = (eot_positions.to(hidden_s.device) - length_p).repeat(batch)
    out = model.ln_final(hidden_s[torch.arange(hidden_s.shape[0], device=hidden_s.device), rows])
    projection = model.text_projection
    out = projection(out) if isinstance(projection, nn.Linear) else out @ projection
    return out.view(batch, n_suffix, -1)
