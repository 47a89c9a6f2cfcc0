"""MaPLe's configuration and prompt learner (``MP:trainers/maple.py:69-176``, ``MP:train.py`` ``extend_cfg``).

The text input is CoOp's prompt learner (``harness.methods.prompt_learner``) with MaPLe's context rule; the
module adds the coupling layers and deep text prompts under the official names, so that ``state_dict()``
has the official keys without the ``prompt_learner.`` prefix. See ``harness.methods.maple`` for the method,
what is faithful and every deliberate difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from harness.config import MethodConfig, option
from harness.errors import ConfigError, HarnessError
from harness.methods.prompt_learner import PromptConfig, PromptLearner
from harness.models.backbone import Backbone
from harness.models.hooks import TowerHooks

MAX_CTX_WITH_WORDS = 4  # official: ctx_init is used only when N_CTX <= 4


@dataclass(frozen=True)
class MapleConfig(MethodConfig):
    """MaPLe's keys (official ``TRAINER.MAPLE.*``) and its speed path."""

    n_ctx: int = option(2, "prompt tokens per layer in each tower (N_CTX)")
    ctx_init: str = option("a photo of a", "prompt words; the first n_ctx tokens are learned (CTX_INIT, n_ctx<=4)")
    prompt_depth: int = option(9, "layers with coupled prompts in both towers, 1 = input only (PROMPT_DEPTH)")
    truncate_prompts: bool = option(
        True, "encode prompts up to the last end-of-text token, start + context once for all classes (exact)",
        speed=True)

    def validate(self, source: str) -> None:
        """The shared checks, then MaPLe's keys."""
        super().validate(source)
        for key in ("n_ctx", "prompt_depth"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{source}: {key} must be at least 1, got {getattr(self, key)}")
        if self.ctx_init.strip() and self.n_ctx > MAX_CTX_WITH_WORDS:
            raise ConfigError(
                f"{source}: ctx_init={self.ctx_init!r} with n_ctx={self.n_ctx}: the official MaPLe uses the words only "
                f"when n_ctx <= {MAX_CTX_WITH_WORDS} (it silently switches to random init otherwise); "
                "set ctx_init='' for random init or n_ctx <= 4"
            )


class MultiModalPromptLearner(PromptLearner):
    """CoOp's text-input learner plus MaPLe's coupling layers and deep text prompts (official module layout).

    ``state_dict()`` keys are the official ones without the ``prompt_learner.`` prefix.
    """

    def __init__(self, backbone: Backbone, config: MapleConfig) -> None:
        text = PromptConfig(method="coop", n_ctx=config.n_ctx, ctx_init=config.ctx_init,
                            truncate_prompts=config.truncate_prompts)
        super().__init__(backbone, text, conditional=False)
        text_width, image_width, deep = backbone.text_width, backbone.image_width, config.prompt_depth - 1
        device = backbone.device
        # proj follows ctx's dtype (the official proj.half() in fp16 mode); deep prompts and couplings are fp32.
        self.proj = nn.Linear(text_width, image_width).to(device, self.dtype)
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(torch.zeros(self.n_ctx, text_width, device=device)) for _ in range(deep)])
        self.compound_prompt_projections = nn.ModuleList(
            [nn.Linear(text_width, image_width).to(device) for _ in range(deep)])

    def _context_text(self, config: PromptConfig) -> tuple[int, str]:
        """``(n_ctx, prompt prefix)``: MaPLe keeps ``n_ctx`` and the whole ``ctx_init`` as the prefix."""
        backbone = self.backbone[0]
        text = self.ctx_init or " ".join(["X"] * config.n_ctx)
        self.prefix_tokens = int(backbone.eot_positions(backbone.tokenize([text]))[0]) - 1
        if self.prefix_tokens < config.n_ctx:
            raise ConfigError(
                f"maple: ctx_init={config.ctx_init!r} has {self.prefix_tokens} tokens with the tokenizer of "
                f"{backbone.name!r}, fewer than n_ctx={config.n_ctx} (the context is its first n_ctx tokens)"
            )
        return config.n_ctx, text

    def _check_lengths(self, names: list[str], name_lens: list[int]) -> None:
        """Refuse prompts the tokenizer would cut: start, prompt words, name, ".", end must fit."""
        limit = self.backbone[0].context_length
        for name, name_len in zip(names, name_lens):
            needed = 1 + self.prefix_tokens + name_len + 2
            if needed > limit:
                raise HarnessError(f"the prompt of class {name!r} needs {needed} tokens, but the text context of "
                                   f"{self.backbone[0].name!r} holds {limit}")

    def init_parameters(self) -> None:
        """Draw in the official order: ctx (random path), ``proj``, deep text prompts, the one copied Linear."""
        super().init_parameters()
        with torch.no_grad():
            self.proj.reset_parameters()
            for prompts in self.compound_prompts_text:
                nn.init.normal_(prompts, std=0.02)
            if len(self.compound_prompt_projections):
                first = self.compound_prompt_projections[0]
                first.reset_parameters()
                for layer in self.compound_prompt_projections[1:]:
                    layer.load_state_dict(first.state_dict())

    def image_prompts(self) -> dict[int, torch.Tensor]:
        """Image prompts per layer: ``proj(ctx)`` at layer 0, the coupled deep text prompts at ``1..J-1``."""
        prompts = {0: self.proj(self.ctx)}
        for index, (layer, text) in enumerate(zip(self.compound_prompt_projections, self.compound_prompts_text)):
            prompts[index + 1] = layer(text)
        return prompts

    def text_hooks(self) -> TowerHooks:
        """The deep text prompts of text blocks ``1..J-1``."""
        return TowerHooks(deep_prompts={i + 1: p for i, p in enumerate(self.compound_prompts_text)})
