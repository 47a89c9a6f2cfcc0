"""The backbone: a frozen open_clip CLIP model with its tokenizer, preprocessing and provenance.

Every loader (open_clip name + pretrained tag, OpenAI checkpoint file, open_clip state dict, safetensors,
the embedded tiny CLIP) returns a ``Backbone``. Methods use only this class's methods, never open_clip
internals, so the text side of prompt learning works on any CLIP whose text tower is a standard
transformer (token embedding, positional embedding, transformer, final LayerNorm, projection).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError
from harness.models.hooked_towers import encode_image_hooked, encode_text_hooked, image_tower_unsupported
from harness.models.hooks import TowerHooks, check_tower_hooks
from harness.models.shared_prefix import encode_with_shared_prefix, prefix_sharing_unsupported


@dataclass(frozen=True)
class Preprocessing:
    """Image preprocessing that belongs to the model (never a hard-coded 224)."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"


class Backbone:
    """A frozen CLIP-like model plus everything needed to use it.

    Attributes:
        model: the open_clip ``CLIP`` module (eval mode, parameters frozen).
        name: a readable name (model name or file name).
        weights_sha256: checksum of the weights file (or of the state dict for hub models).
        tokenizer: maps a list of strings to a ``LongTensor`` of shape ``(n, context_length)``.
        sot_token_id / eot_token_id: start- and end-of-text ids of that tokenizer.
        preprocessing: input resolution and normalisation of the model.
        device: where the model lives; ``dtype`` the dtype its weights compute in.
        precision: ``fp32``, ``fp16``, ``bf16`` (weights converted) or ``amp`` (fp32 weights, autocast).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Callable[[Sequence[str]], torch.Tensor],
        *,
        name: str,
        weights_sha256: str,
        sot_token_id: int,
        eot_token_id: int,
        preprocessing: Preprocessing,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        precision: str = "",
    ) -> None:
        self.model = model.eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.weights_sha256 = weights_sha256
        self.sot_token_id = sot_token_id
        self.eot_token_id = eot_token_id
        self.preprocessing = preprocessing
        self.device = torch.device(device)
        self.dtype = dtype
        self.precision = precision or {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")
        self._check_text_tower()
        self._causal_checked: tuple[torch.Tensor | None, bool] = (None, False)

    # -- structure -------------------------------------------------------------------------------
    def _check_text_tower(self) -> None:
        needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
        missing = [name for name in needed if not hasattr(self.model, name)]
        if missing:
            self.text_tower_error = (
                f"backbone {self.name!r} has no standard transformer text tower (missing {', '.join(missing)}); "
                "prompt learning needs token embedding, positional embedding, transformer, ln_final, text_projection"
            )
        else:
            self.text_tower_error = ""

    def require_text_tower(self) -> None:
        """Raise ``HarnessError`` if prompt learning cannot work with this model's text tower."""
        if self.text_tower_error:
            raise HarnessError(self.text_tower_error)

    @property
    def context_length(self) -> int:
        """Number of token positions of the text tower (77 for OpenAI CLIP)."""
        return int(self.model.positional_embedding.shape[0])

    @property
    def text_width(self) -> int:
        """Width of the text transformer (``ctx_dim`` of a prompt learner)."""
        return int(self.model.ln_final.weight.shape[0])

    @property
    def text_layers(self) -> int:
        """Number of residual blocks of the text transformer."""
        return len(self.model.transformer.resblocks)

    @property
    def text_heads(self) -> int:
        """Attention heads per text block."""
        return int(self.model.transformer.resblocks[0].attn.num_heads)

    def require_vit_image_tower(self, what: str) -> nn.Module:
        """The ViT image tower, or ``HarnessError`` naming ``what`` needs it and why this tower is not one."""
        visual = getattr(self.model, "visual", None)
        reason = image_tower_unsupported(visual) if visual is not None else "the model has no image tower"
        if reason:
            raise HarnessError(f"{what} needs a ViT image tower; backbone {self.name!r}: {reason}")
        return visual

    @property
    def image_width(self) -> int:
        """Width of the image transformer (the width of visual prompts); ``HarnessError`` for a non-ViT tower."""
        return int(self.require_vit_image_tower("the image width").class_embedding.shape[-1])

    @property
    def image_layers(self) -> int:
        """Number of residual blocks of the image transformer; ``HarnessError`` for a non-ViT tower."""
        return len(self.require_vit_image_tower("the image depth").transformer.resblocks)

    @property
    def embed_dim(self) -> int:
        """Dimension of the joint image-text embedding (``vis_dim`` of CoCoOp's meta-net)."""
        projection = self.model.text_projection
        return int(projection.weight.shape[0] if isinstance(projection, nn.Linear) else projection.shape[1])

    @property
    def text_is_causal(self) -> bool:
        """Whether the text attention mask is causal (then truncating after the end-of-text token is exact)."""
        mask = getattr(self.model, "attn_mask", None)
        if mask is None:
            return False
        # Checked once per mask tensor (prompt encoders ask on every call; on a GPU each check is a sync).
        if self._causal_checked[0] is not mask:
            upper = torch.triu(torch.ones_like(mask, dtype=torch.bool), diagonal=1)
            causal = bool(torch.isinf(mask[upper]).all()) and bool((mask[~upper] == 0).all())
            self._causal_checked = (mask, causal)
        return self._causal_checked[1]

    @property
    def shares_prompt_prefix(self) -> bool:
        """Whether prompts with a common prefix can have it encoded once (``encode_text_shared_prefix``)."""
        return not (self.text_tower_error or prefix_sharing_unsupported(self.model)) and self.text_is_causal

    def logit_scale(self) -> torch.Tensor:
        """``logit_scale.exp()`` as a float32 scalar."""
        return self.model.logit_scale.detach().float().exp()

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Autocast for ``amp`` precision (fp16 on CUDA, bf16 on CPU); does nothing otherwise."""
        if self.precision != "amp":
            yield
            return
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        with torch.autocast(device_type=self.device.type, dtype=dtype):
            yield

    # -- text ------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(n, context_length)`` on the backbone's device."""
        return self.tokenizer(list(texts)).to(self.device)

    def eot_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """Index of the first end-of-text token of each row, from the tokenizer's own end-of-text id."""
        is_eot = tokens == self.eot_token_id
        if not bool(is_eot.any(dim=-1).all()):
            raise HarnessError("a tokenized prompt has no end-of-text token (prompt longer than the context?)")
        return is_eot.int().argmax(dim=-1)

    def embed_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``(n, L, width)`` in the model's dtype."""
        return self.model.token_embedding(tokens.to(self.device)).to(self.dtype)

    def encode_text_embeddings(self, embeddings: torch.Tensor, eot_positions: torch.Tensor,
                               hooks: TowerHooks | None = None) -> torch.Tensor:
        """Text features (unnormalised) of prompt embeddings ``(n, L, width)``, read at ``eot_positions``.

        ``L`` may be shorter than ``context_length``: with a causal mask the features at position ``p``
        depend only on positions ``<= p``, so sequences truncated after their end-of-text token give the
        same features as full-length ones (see ``text_is_causal``). ``hooks`` (deep text prompts, LoRA; see
        ``harness.models.hooks``) change the inside of the text tower; without them this is today's path.
        """
        self.require_text_tower()
        length = embeddings.shape[1]
        if length < self.context_length and not self.text_is_causal:
            raise HarnessError(f"backbone {self.name!r}: truncated prompts need a causal text mask")
        model = self.model
        cast = self.dtype
        if hooks is not None and not hooks.is_empty:
            self.check_hooks(hooks, tower="text")
            with self.autocast():
                return encode_text_hooked(model, embeddings.to(cast), eot_positions, hooks)
        with self.autocast():
            x = embeddings.to(cast) + model.positional_embedding[:length].to(cast)
            mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
            if getattr(model.transformer, "batch_first", True):
                x = model.transformer(x, attn_mask=mask)
            else:  # older open_clip: sequence-first transformer
                x = model.transformer(x.permute(1, 0, 2), attn_mask=mask).permute(1, 0, 2)
            x = model.ln_final(x)
            x = x[torch.arange(x.shape[0], device=x.device), eot_positions.to(x.device)]
            projection = model.text_projection
            return projection(x) if isinstance(projection, nn.Linear) else x @ projection

    def encode_text_shared_prefix(self, prefix: torch.Tensor, suffix: torch.Tensor, eot_positions: torch.Tensor,
                                  hooks: TowerHooks | None = None) -> torch.Tensor:
        """Text features (unnormalised) ``(B, N, embed_dim)`` of the prompts ``prefix[b] + suffix[n]``.

        ``prefix`` ``(B, P, width)`` is encoded once per row instead of once per prompt; ``suffix`` ``(N, S,
        width)`` holds positions ``P .. P+S-1`` and ``eot_positions`` ``(N,)`` the end-of-text index of each
        prompt (from its start). Same features as ``encode_text_embeddings`` of the concatenated prompts, up to
        float rounding; needs ``shares_prompt_prefix`` (see ``harness.models.shared_prefix``). ``hooks`` may hold
        deep text prompts that fit in the prefix (``1 + n <= P``; per-row prompts ``(B, n, width)``), not LoRA.
        """
        if not self.shares_prompt_prefix:
            reason = self.text_tower_error or prefix_sharing_unsupported(self.model) or "its text mask is not causal"
            raise HarnessError(f"backbone {self.name!r} cannot encode a shared prompt prefix once: {reason}")
        length = prefix.shape[1] + suffix.shape[1]
        if length > self.context_length:
            raise HarnessError(f"prompts of {length} tokens exceed the text context ({self.context_length})")
        if eot_positions.numel() != suffix.shape[0] or not bool(
            ((eot_positions >= prefix.shape[1]) & (eot_positions < length)).all()
        ):
            raise HarnessError(
                f"end-of-text positions {eot_positions.tolist()} must fall in the suffix, positions "
                f"{prefix.shape[1]}..{length - 1}, one per suffix ({suffix.shape[0]})"
            )
        deep_prompts = self._shared_prefix_prompts(hooks, prefix.shape[1])
        allowed = self.model.attn_mask[:length, :length] == 0
        with self.autocast():
            return encode_with_shared_prefix(self.model, prefix.to(self.dtype), suffix.to(self.dtype),
                                             eot_positions, allowed.to(prefix.device), deep_prompts)

    def _shared_prefix_prompts(self, hooks: TowerHooks | None, prefix_length: int) -> dict[int, torch.Tensor]:
        if hooks is None or hooks.is_empty:
            return {}
        if hooks.lora:
            raise HarnessError(f"backbone {self.name!r}: LoRA hooks need whole prompts (encode_text_embeddings), "
                               "not a shared prefix")
        self.check_hooks(hooks, tower="text")
        if 1 + hooks.prompt_count > prefix_length:
            raise HarnessError(f"{hooks.prompt_count} deep text prompts (positions 1..{hooks.prompt_count}) do not "
                               f"fit in the shared prefix of {prefix_length} tokens; encode whole prompts")
        return dict(hooks.deep_prompts)

    def encode_text(self, tokens: torch.Tensor, truncate: bool = True, hooks: TowerHooks | None = None) -> torch.Tensor:
        """Text features (unnormalised, float32) of token ids, optionally truncated to the longest prompt.

        ``hooks`` change the inside of the text tower (e.g. LoRA on plain class prompts).
        """
        tokens = tokens.to(self.device)
        eot = self.eot_positions(tokens)
        if truncate and self.text_is_causal:
            tokens = tokens[:, : int(eot.max()) + 1]
        return self.encode_text_embeddings(self.embed_tokens(tokens), eot, hooks=hooks).float()

    def encode_prompts(self, texts: Sequence[str], truncate: bool = True) -> torch.Tensor:
        """L2-normalised float32 text features of strings."""
        return F.normalize(self.encode_text(self.tokenize(texts), truncate=truncate), dim=-1)

    # -- images ----------------------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor, hooks: TowerHooks | None = None) -> torch.Tensor:
        """L2-normalised float32 image features of a preprocessed batch ``(n, 3, H, W)``.

        ``hooks`` (deep or shallow visual prompts, LoRA; see ``harness.models.hooks``) change the inside of
        the image tower, which must then be a ViT; without them this is ``model.encode_image``.
        """
        if hooks is not None and not hooks.is_empty:
            self.check_hooks(hooks, tower="image")
            with self.autocast():
                features = encode_image_hooked(self.model.visual, images.to(self.device, self.dtype), hooks)
            return F.normalize(features.float(), dim=-1)
        with self.autocast():
            features = self.model.encode_image(images.to(self.device, self.dtype))
        return F.normalize(features.float(), dim=-1)

    def check_hooks(self, hooks: TowerHooks, tower: str) -> None:
        """Raise ``HarnessError`` if the ``text`` or ``image`` tower cannot take ``hooks`` (see ``hooks.py``)."""
        if tower == "text":
            self.require_text_tower()
            blocks, width = self.model.transformer.resblocks, self.text_width
        else:
            visual = getattr(self.model, "visual", None)
            reason = image_tower_unsupported(visual)
            if reason:
                kinds = " and ".join(kind for kind, given in (("deep prompts", hooks.deep_prompts),
                                                              ("LoRA", hooks.lora)) if given)
                raise HarnessError(f"{kinds} in the image tower of backbone {self.name!r}: {reason}")
            blocks, width = visual.transformer.resblocks, int(visual.class_embedding.shape[-1])
        check_tower_hooks(hooks, blocks, width, tower=tower, backbone_name=self.name)
