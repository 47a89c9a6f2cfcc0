"""CoOp (Zhou et al., IJCV 2022): a learned prompt context in front of (or around) each class name.

Faithful to ``CoOp:trainers/coop.py`` (spec section 3): the frozen CLIP encodes prompts assembled from
the learned context and the class-name token embeddings, and the logits are
``logit_scale.exp() * normalised image @ normalised text``.

One deviation in cost only: the official model re-encodes every class prompt on every test batch; here
the text features do not depend on the image, so ``prepare_eval`` computes them once (under ``no_grad``)
and ``forward`` reuses them while the method is in eval mode. In training mode they are recomputed on
every step, as the gradient needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from harness.errors import HarnessError
from harness.methods.base import Method, OfficialLayout
from harness.methods.prompt_learner import CLASS_BUFFERS, PromptConfig, PromptLearner, check_backbone
from harness.models.backbone import Backbone
from harness.registries import METHODS


def scaled_logits(backbone: Backbone, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """``logit_scale.exp() * image @ text.T`` in the text features' dtype, outside any autocast region.

    Both inputs are L2-normalised. Autocast is switched off so that mixed-precision training still
    produces float32 logits for the loss (pure fp16 keeps the official float16 logits).
    """
    with torch.autocast(device_type=image_features.device.type, enabled=False):
        dtype = text_features.dtype
        scale = backbone.logit_scale().to(image_features.device, dtype)
        return scale * image_features.to(dtype) @ text_features.to(dtype).t()


def context_keys(state: Mapping[str, Any]) -> dict[str, Any]:
    """Config keys fixed by an official ``ctx`` tensor: ``n_ctx``, ``csc`` (3-d: class-specific), no ``ctx_init``."""
    ctx = state["ctx"]
    return {"n_ctx": int(ctx.shape[-2]), "csc": ctx.dim() == 3, "ctx_init": ""}


def has_context(state: Mapping[str, Any], meta_net: bool) -> bool:
    """Whether ``state`` is an official CoOp (``meta_net=False``) or CoCoOp prompt-learner state dict."""
    ctx = state.get("ctx")
    if not isinstance(ctx, torch.Tensor) or ctx.dim() not in (2, 3):
        return False
    others = set(state) - {"ctx", *CLASS_BUFFERS}
    if not meta_net:
        return not others
    return ctx.dim() == 2 and bool(others) and all(key.startswith("meta_net.") for key in others)


@METHODS.register("coop")
class CoOp(Method):
    """CoOp: a generic or class-specific learned context, class token at the end, middle or front."""

    name = "coop"
    config_class = PromptConfig
    trainable = True
    conditional = False  # CoCoOp's prompt learner adds the meta-net
    official_layouts = (OfficialLayout("CoOp prompt_learner", ("prompt_learner",),
                                       lambda state: has_context(state, meta_net=False), context_keys, primary=True),)
    # CoOp's base-to-new and transfer baseline is the CoCoOp paper's (M=4, "a photo of a"); few-shot is its own.
    protocol_presets = {"base2new": "coop_base2new", "cross_dataset": "coop_base2new",
                        "domain_generalization": "coop_base2new", "few_shot": "coop_fewshot"}

    def __init__(self, backbone: Backbone, config: PromptConfig) -> None:
        super().__init__(backbone, config)
        check_backbone(backbone)
        self.prompt_learner = PromptLearner(backbone, config, conditional=self.conditional)
        self._text_cache: torch.Tensor | None = None
        # A method is evaluated unless the trainer says otherwise (the frozen CLIP is never in train mode).
        self.eval()

    def set_classes(self, classnames: Sequence[str], template: str, dataset: str | None = None) -> None:
        """Rebuild the class prompts for ``classnames`` (the template is not used: the context replaces it)."""
        super().set_classes(classnames, template, dataset)
        self.prompt_learner.set_classnames(self.classnames)
        self._text_cache = None

    def init_parameters(self) -> None:
        """Re-draw the context from the current torch RNG (``train_method`` calls this after seeding)."""
        self.prompt_learner.init_parameters()
        self._text_cache = None

    def train(self, mode: bool = True) -> CoOp:
        """Switch mode; entering training drops the cached text features (the context will change)."""
        if mode:
            self._text_cache = None
        return super().train(mode)

    def text_features(self) -> torch.Tensor:
        """L2-normalised text features ``(n_cls, embed_dim)`` of the current prompts."""
        learner = self.prompt_learner
        if learner.share_prefix:  # generic context, class at the end: the context is encoded once
            return learner.encode_contexts(learner.ctx.unsqueeze(0))[0]
        return learner.encode(learner.assemble())

    def prepare_eval(self) -> None:
        """Enter eval mode and compute the text features once for the whole evaluation."""
        self.eval()
        with torch.no_grad():
            self._text_cache = self.text_features()

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_cls)`` for L2-normalised image features ``(batch, embed_dim)``."""
        if self.training or self._text_cache is None:
            text = self.text_features()
        else:
            text = self._text_cache
        return scaled_logits(self.backbone, image_features, text)

    def learned_state(self) -> dict[str, torch.Tensor]:
        """The learned tensors under their official names (``ctx``, ``meta_net.*``), without the class buffers."""
        state = self.prompt_learner.state_dict()
        return {key: value.detach().clone() for key, value in state.items() if key not in CLASS_BUFFERS}

    def load_learned_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load ``ctx`` (and ``meta_net.*``) saved by ``learned_state`` or the official trainer.

        ``token_prefix``/``token_suffix`` are ignored, as the official ``load_model`` deletes them, so the
        current class names are used.

        Raises:
            HarnessError: for a missing or unexpected key, or a tensor of the wrong shape.
        """
        learner = self.prompt_learner
        state = {key: value for key, value in state.items() if key not in CLASS_BUFFERS}
        expected = {"ctx"} | {f"meta_net.{key}" for key in (learner.meta_net.state_dict() if learner.meta_net else {})}
        if set(state) != expected:
            missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
            raise HarnessError(f"{self.name} weights: missing keys {missing}, unexpected keys {unexpected}")
        width = int(state["ctx"].shape[-1])
        if width != self.backbone.text_width:
            raise HarnessError(
                f"context width {width} does not match the text width {self.backbone.text_width} of backbone "
                f"{self.backbone.name!r} (weights learned on another backbone)"
            )
        learner.set_context(state["ctx"])
        if learner.meta_net is not None:
            meta = {key.removeprefix("meta_net."): value for key, value in state.items() if key != "ctx"}
            try:
                learner.meta_net.load_state_dict(meta)
            except RuntimeError as exc:
                raise HarnessError(f"{self.name} weights: meta-net does not fit this backbone: {exc}") from None
        self._text_cache = None
