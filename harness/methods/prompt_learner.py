"""The CoOp/CoCoOp prompt learner: learnable context vectors (+ CoCoOp's meta-net) and prompt assembly.

Faithful to ``CoOp:trainers/coop.py`` and ``cocoop.py`` (spec sections 3 and 6):

- Context from ``ctx_init`` words (``n_ctx`` becomes the number of words; the vectors are the token
  embeddings just after start-of-text) or ``normal(0, 0.02)``; generic ``(n_ctx, D)`` or class-specific
  ``(n_cls, n_ctx, D)``.
- Class prompts ``prefix + " " + name + "."`` are tokenized once; ``token_prefix`` (start-of-text) and
  ``token_suffix`` (class tokens, ".", end-of-text, padding) are buffers with the official names, so the
  state dict has the official keys (``ctx``, ``token_prefix``, ``token_suffix``, ``meta_net.linear1.*``...).
- The end-of-text index comes from the tokenizer's own end-of-text id of the "X .. X name." tokenization,
  for every class-token position (the total length is unchanged by moving the class tokens).

Speed without changing the numbers: with a causal text mask the feature at the end-of-text token does
not depend on later positions, so prompts are assembled only up to ``max(eot) + 1`` (``seq_len``) and
encoded at that length (``PromptConfig.truncate_prompts``). With the class token at the end and a generic
context, every class prompt starts with the same ``1 + n_ctx`` positions (start token and context; for
CoCoOp, one image's shifted context), which the same causal mask lets the text tower encode once per
context rather than once per class (``encode_contexts``, ``Backbone.encode_text_shared_prefix``); this
follows ``truncate_prompts`` too. Class-token positions other than ``end`` are one ``gather`` with a
per-class index built once, instead of the official per-class Python loop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import ConfigError, HarnessError
from harness.methods.prompt_config import (  # noqa: F401  (re-exported)
    CLASS_TOKEN_POSITIONS,
    EOT_POOL_TYPES,
    PromptConfig,
    check_backbone,
    parameter_dtype,
)
from harness.models.backbone import Backbone

CTX_INIT_STD = 0.02
# Buffers rebuilt from the class names; saved by the official trainer but deleted on load.
CLASS_BUFFERS = ("token_prefix", "token_suffix")


class PromptLearner(nn.Module):
    """Learnable context (``ctx``), optional meta-net, and the class-prompt buffers.

    The class-specific context is created by the first ``set_classnames`` (it needs ``n_cls``); the
    generic context and the meta-net are created here, in the official order (ctx, then meta-net), so
    that their random initialisation draws from the torch RNG in the same order.
    """

    def __init__(self, backbone: Backbone, config: PromptConfig, *, conditional: bool) -> None:
        super().__init__()
        self.backbone = [backbone]  # a list, so the frozen CLIP is not registered as a submodule
        self.dtype = parameter_dtype(backbone)
        self.class_token_position = "end" if conditional else config.class_token_position
        self.csc = bool(config.csc) and not conditional
        self.truncate = bool(config.truncate_prompts)
        self.ctx_dim = backbone.text_width
        self.ctx_init = config.ctx_init.replace("_", " ").strip()
        if conditional and (config.csc or config.class_token_position != "end"):
            raise ConfigError("cocoop has no csc or class_token_position option (always generic context, class at end)")
        if self.ctx_init and config.csc:
            # The official code silently ignores CSC on this path; say so instead.
            raise ConfigError("csc=true with ctx_init set: the official code ignores csc then; set ctx_init='' for csc")
        self.n_ctx, self.prefix_text = self._context_text(config)
        self.ctx: nn.Parameter | None = None
        if not self.csc:
            self.ctx = nn.Parameter(self._initial_context(None))
        self.meta_net: nn.Sequential | None = self._build_meta_net(backbone) if conditional else None
        self.register_buffer("token_prefix", None)
        self.register_buffer("token_suffix", None)
        self.classnames: list[str] = []
        self.eot: torch.Tensor = torch.empty(0, dtype=torch.long)
        self.seq_len = 0
        self.share_prefix = False
        self._gather_index: torch.Tensor | None = None

    # -- construction ------------------------------------------------------------------------------
    def _context_text(self, config: PromptConfig) -> tuple[int, str]:
        """``(n_ctx, prefix text)``; the prefix must tokenize into exactly ``n_ctx`` tokens (one per word)."""
        if self.ctx_init:
            n_ctx, text, what = len(self.ctx_init.split(" ")), self.ctx_init, f"ctx_init={config.ctx_init!r}"
        else:
            n_ctx, text, what = config.n_ctx, " ".join(["X"] * config.n_ctx), "the placeholder prefix 'X X .. X'"
        backbone = self.backbone[0]
        n_tokens = int(backbone.eot_positions(backbone.tokenize([text]))[0]) - 1
        if n_tokens != n_ctx:
            # Official pitfall 6: the prefix/suffix slicing would be misaligned; refuse instead.
            raise ConfigError(
                f"{what}: {n_ctx} words but {n_tokens} tokens with the tokenizer of {backbone.name!r}; "
                "each context word must be one token (the official slicing assumes it)"
            )
        return n_ctx, text

    def _initial_context(self, n_cls: int | None) -> torch.Tensor:
        backbone = self.backbone[0]
        if self.ctx_init:
            with torch.no_grad():
                embedding = backbone.embed_tokens(backbone.tokenize([self.ctx_init]))
            return embedding[0, 1 : 1 + self.n_ctx].detach().to(self.dtype).clone()
        shape = (n_cls, self.n_ctx, self.ctx_dim) if self.csc else (self.n_ctx, self.ctx_dim)
        # Drawn on the CPU generator so a seed gives the same context on every device.
        values = torch.empty(shape, dtype=self.dtype)
        nn.init.normal_(values, std=CTX_INIT_STD)
        return values.to(backbone.device)

    def _build_meta_net(self, backbone: Backbone) -> nn.Sequential:
        vis_dim = backbone.embed_dim
        if vis_dim // 16 < 1:
            raise HarnessError(f"backbone {backbone.name!r}: embed_dim {vis_dim} is too small for the meta-net")
        layers = OrderedDict(
            linear1=nn.Linear(vis_dim, vis_dim // 16),
            relu=nn.ReLU(inplace=True),
            linear2=nn.Linear(vis_dim // 16, self.ctx_dim),
        )
        return nn.Sequential(layers).to(backbone.device, self.dtype)

    def init_parameters(self) -> None:
        """Re-draw the learnable parameters from the current torch RNG, in the official order."""
        with torch.no_grad():
            if self.ctx is not None:
                n_cls = self.ctx.shape[0] if self.csc else None
                self.ctx.copy_(self._initial_context(n_cls))
            if self.meta_net is not None:
                self.meta_net.linear1.reset_parameters()
                self.meta_net.linear2.reset_parameters()

    def set_context(self, ctx: torch.Tensor) -> None:
        """Replace the context with loaded values (its shape fixes ``n_ctx`` and, for CSC, ``n_cls``)."""
        expected = 3 if self.csc else 2
        if ctx.dim() != expected or ctx.shape[-1] != self.ctx_dim or ctx.shape[-2] != self.n_ctx:
            raise HarnessError(
                f"context of shape {tuple(ctx.shape)} does not fit this prompt learner "
                f"(n_ctx={self.n_ctx}, width {self.ctx_dim}, csc={self.csc})"
            )
        if self.csc and self.classnames and ctx.shape[0] != len(self.classnames):
            raise HarnessError(f"class-specific context for {ctx.shape[0]} classes, {len(self.classnames)} set")
        self.ctx = nn.Parameter(ctx.detach().to(self.backbone[0].device, self.dtype).clone())

    # -- classes -----------------------------------------------------------------------------------
    def set_classnames(self, classnames: Sequence[str]) -> None:
        """Tokenize the class prompts and rebuild the prefix/suffix buffers for ``classnames``.

        Raises:
            HarnessError: for a class-specific context learned for a different number of classes.
        """
        backbone = self.backbone[0]
        names = [name.replace("_", " ") for name in classnames]
        if not names:
            raise HarnessError("no class names given")
        if self.csc:
            if self.ctx is None:
                self.ctx = nn.Parameter(self._initial_context(len(names)))
            elif self.ctx.shape[0] != len(names):
                raise HarnessError(
                    f"class-specific context was learned for {self.ctx.shape[0]} classes and cannot be used for "
                    f"{len(names)} classes (as in the official code, only a generic context transfers)"
                )
        tokens = backbone.tokenize([f"{self.prefix_text} {name}." for name in names])
        if not bool((tokens[:, 0] == backbone.sot_token_id).all()):
            raise HarnessError(f"backbone {backbone.name!r}: prompts do not start with the start-of-text token")
        name_lens = (backbone.eot_positions(backbone.tokenize(names)) - 1).tolist()
        self._check_lengths(names, name_lens)
        eot = backbone.eot_positions(tokens)
        with torch.no_grad():
            embedding = backbone.embed_tokens(tokens).to(self.dtype)
        self.token_prefix = embedding[:, :1].clone()
        self.token_suffix = embedding[:, 1 + self.n_ctx :].clone()
        self.classnames = list(classnames)
        self.eot = eot
        causal = backbone.text_is_causal
        self.seq_len = int(eot.max()) + 1 if (self.truncate and causal) else backbone.context_length
        self.share_prefix = (self.truncate and self.class_token_position == "end" and not self.csc
                             and backbone.shares_prompt_prefix)
        self._gather_index = self._position_index(name_lens)

    def _check_lengths(self, names: list[str], name_lens: list[int]) -> None:
        """Refuse prompts the tokenizer would cut (the official tokenizer raises for too long text)."""
        limit = self.backbone[0].context_length
        for name, name_len in zip(names, name_lens):
            needed = 1 + self.n_ctx + name_len + 2  # start, context, name, ".", end
            if needed > limit or name_len >= limit - 2:
                raise HarnessError(
                    f"the prompt of class {name!r} needs at least {needed} tokens with n_ctx={self.n_ctx}, "
                    f"but the text context of {self.backbone[0].name!r} holds {limit}"
                )

    def _position_index(self, name_lens: list[int]) -> torch.Tensor | None:
        """Per class, where each assembled position comes from in the ``end`` layout (prefix, ctx, suffix)."""
        if self.class_token_position == "end":
            return None
        n_ctx, length, half = self.n_ctx, self.seq_len, self.n_ctx // 2
        rows = []
        for name_len in name_lens:
            ctx = list(range(1, 1 + n_ctx))
            name = list(range(1 + n_ctx, 1 + n_ctx + name_len))
            rest = list(range(1 + n_ctx + name_len, length))
            if self.class_token_position == "middle":
                order = [0] + ctx[:half] + name + ctx[half:] + rest
            else:  # front
                order = [0] + name + ctx + rest
            rows.append(order[:length])
        return torch.tensor(rows, dtype=torch.long, device=self.token_prefix.device)

    # -- prompts -----------------------------------------------------------------------------------
    def _require_classes(self) -> None:
        if not self.classnames:
            raise HarnessError("call set_classes(classnames, template) before using the method")

    def assemble(self, ctx: torch.Tensor | None = None) -> torch.Tensor:
        """Prompt embeddings ``(n_cls, seq_len, D)`` for a context ``(n_ctx, D)`` or ``(n_cls, n_ctx, D)``."""
        self._require_classes()
        ctx = self.ctx if ctx is None else ctx
        n_cls = len(self.classnames)
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(n_cls, -1, -1)
        suffix = self.token_suffix[:, : self.seq_len - 1 - self.n_ctx]
        prompts = torch.cat([self.token_prefix, ctx, suffix], dim=1)
        if self._gather_index is None:
            return prompts
        index = self._gather_index.unsqueeze(-1).expand(-1, -1, prompts.shape[-1])
        return torch.gather(prompts, 1, index)

    def assemble_conditional(self, ctx_shifted: torch.Tensor) -> torch.Tensor:
        """CoCoOp prompts ``(B, n_cls, seq_len, D)`` for per-image contexts ``(B, n_ctx, D)`` (class at the end)."""
        self._require_classes()
        batch, n_cls = ctx_shifted.shape[0], len(self.classnames)
        suffix = self.token_suffix[:, : self.seq_len - 1 - self.n_ctx]
        return torch.cat(
            [
                self.token_prefix.unsqueeze(0).expand(batch, -1, -1, -1),
                ctx_shifted.unsqueeze(1).expand(-1, n_cls, -1, -1),
                suffix.unsqueeze(0).expand(batch, -1, -1, -1),
            ],
            dim=2,
        )

    def encode_contexts(self, ctx: torch.Tensor) -> torch.Tensor:
        """L2-normalised text features ``(B, n_cls, embed_dim)`` of every class prompt for each context.

        ``ctx`` is ``(B, n_ctx, D)``: one generic context per row (CoOp's, or CoCoOp's per-image shifted
        ones); the class token is at the end. With ``share_prefix`` the start token and context are encoded
        once per row; otherwise the ``B x n_cls`` prompts are assembled and encoded whole.
        """
        self._require_classes()
        batch, n_cls = ctx.shape[0], len(self.classnames)
        if not self.share_prefix:
            prompts = self.assemble_conditional(ctx).flatten(0, 1)
            return self.encode(prompts, self.eot.repeat(batch)).view(batch, n_cls, -1)
        prefix = torch.cat([self.token_prefix[:1].expand(batch, -1, -1), ctx], dim=1)
        suffix = self.token_suffix[:, : self.seq_len - 1 - self.n_ctx]
        features = self.backbone[0].encode_text_shared_prefix(prefix, suffix, self.eot)
        return F.normalize(features.to(self.compute_dtype), dim=-1)

    def encode(self, prompts: torch.Tensor, eot: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised text features ``(n, embed_dim)`` of prompt embeddings ``(n, seq_len, D)``."""
        eot = self.eot if eot is None else eot
        features = self.backbone[0].encode_text_embeddings(prompts, eot)
        return F.normalize(features.to(self.compute_dtype), dim=-1)

    @property
    def compute_dtype(self) -> torch.dtype:
        """float16 in the official pure-fp16 mode (as the official logits), float32 otherwise."""
        return torch.float16 if self.dtype == torch.float16 else torch.float32
