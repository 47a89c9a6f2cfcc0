"""MaPLe (Khattak et al., CVPR 2023): multi-modal deep prompts, vision prompts coupled to the text prompts.

Faithful to ``MP:trainers/maple.py`` (muzairkhattak/multimodal-prompt-learning @ 69bce21) and the prompt
blocks of ``MP:clip/model.py`` (spec sections 3 and 4; ``tests/golden/maple/README.md``). The config and the
prompt learner are in ``harness.methods.maple_learner``; this module holds the method and checkpoint import.

- Text input: CoOp's prompt learner (``harness.methods.prompt_learner``) with MaPLe's context rule: with
  ``ctx_init`` words and ``n_ctx <= 4`` the context is the embeddings of the first ``n_ctx`` tokens of the
  words, and the prompt text is the whole ``ctx_init`` (defaults: "a photo" is learned, "of a" stays frozen in
  the suffix, trap T10); without words, ``normal(0, 0.02)`` after an ``"X" x n_ctx`` prefix.
- Coupling: ``proj`` (Linear text width -> image width) maps the context to the shallow image prompts
  (appended after the patches before ``ln_pre``); ``prompt_depth - 1`` deep text prompts
  (``normal(0, 0.02)``) replace positions ``1..n_ctx`` of text blocks ``1..J-1``, and the image prompts of
  image blocks ``1..J-1`` are ``compound_prompt_projections[i-1](compound_prompts_text[i-1])``, whose Linear
  layers start as copies of one Linear; blocks from ``J`` on carry the previous outputs.
- Logits ``logit_scale.exp() * norm(image) @ norm(text).T``, loss cross-entropy only; Dassl SGD + cosine
  with warm-up (the engine's default optimiser and schedule), initialisation drawn in the official order
  (ctx on the random path, ``proj``, the deep text prompts, the one Linear that is copied).
- State under the official names (``ctx``, ``proj.*``, ``compound_prompts_text.N``,
  ``compound_prompt_projections.N.*``); official ``MultiModalPromptLearner/model.pth.tar-N`` files (the whole
  CustomCLIP, keys prefixed ``prompt_learner.``) are read, their frozen CLIP entries ignored.

Deliberate differences:

- Widths come from the backbone (the official code hard-codes 512 -> 768, ViT-B/16 only).
- fp32 in fp32 mode: the official ``proj.half()`` and ``.half()`` casts of prompts at insertion are kept
  only under ``precision: fp16`` (official mode: ``ctx``/``proj`` fp16, deep prompts and couplings fp32, cast
  at insertion); the official ``PREC fp32`` path crashes (spec 3.3).
- ``n_ctx > 4`` with ``ctx_init`` words is refused (the official code silently drops the words then).
- Cost only: the text features do not depend on the image, so ``prepare_eval`` encodes them (and the image
  prompts) once per evaluation where the official code re-encodes every class on each test batch; the start
  token and context are encoded once for all classes (causal mask, ``truncate_prompts``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from harness.errors import HarnessError
from harness.methods.base import Method, OfficialLayout
from harness.methods.coop import scaled_logits
from harness.methods.maple_learner import MAX_CTX_WITH_WORDS, MapleConfig, MultiModalPromptLearner
from harness.methods.prompt_learner import CLASS_BUFFERS, check_backbone
from harness.models.backbone import Backbone
from harness.models.hooks import TowerHooks
from harness.registries import METHODS

NAME = "maple"
OFFICIAL_FOLDER = "MultiModalPromptLearner"
OFFICIAL_PREFIX = "prompt_learner."
# Frozen CustomCLIP entries of an official file (the whole model is registered, trap T13): ignored on load.
FROZEN_PREFIXES = ("image_encoder.", "text_encoder.", "logit_scale")


def official_prompt_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """The prompt-learner entries of an official MaPLe state dict, without their prefix (empty if none)."""
    return {key[len(OFFICIAL_PREFIX):]: value for key, value in state.items() if key.startswith(OFFICIAL_PREFIX)}


def is_official_maple(state: Mapping[str, Any]) -> bool:
    """Whether ``state`` is an official MaPLe CustomCLIP state dict (ctx, proj, consistent deep prompts)."""
    prompts = official_prompt_state(state)
    ctx, proj = prompts.get("ctx"), prompts.get("proj.weight")
    if not (isinstance(ctx, torch.Tensor) and ctx.dim() == 2 and isinstance(proj, torch.Tensor)):
        return False
    depth = _deep_count(prompts)
    expected = {"ctx", "proj.weight", "proj.bias", *CLASS_BUFFERS}
    expected |= {f"compound_prompts_text.{i}" for i in range(depth)}
    expected |= {f"compound_prompt_projections.{i}.{p}" for i in range(depth) for p in ("weight", "bias")}
    return set(prompts) <= expected and {"proj.bias"} <= set(prompts)


def _deep_count(prompts: Mapping[str, Any]) -> int:
    return sum(1 for key in prompts if key.startswith("compound_prompts_text."))


def official_keys(state: Mapping[str, Any]) -> dict[str, Any]:
    """Config keys an official file fixes: ``n_ctx`` and ``prompt_depth`` (random-init words when n_ctx > 4)."""
    prompts = official_prompt_state(state)
    n_ctx = int(prompts["ctx"].shape[0])
    keys: dict[str, Any] = {"n_ctx": n_ctx, "prompt_depth": 1 + _deep_count(prompts)}
    if n_ctx > MAX_CTX_WITH_WORDS:
        keys["ctx_init"] = ""
    return keys


@METHODS.register(NAME)
class MaPLe(Method):
    """MaPLe: coupled text and image prompts in the first ``prompt_depth`` layers of both towers."""

    name = NAME
    config_class = MapleConfig
    trainable = True
    image_input = "pixels"
    official_layouts = (OfficialLayout("MaPLe MultiModalPromptLearner", (OFFICIAL_FOLDER,), is_official_maple,
                                       official_keys),)
    # Few-shot uses ``maple`` (the base-to-new settings): MaPLe's few-shot recipe is unpublished (spec 4.5).
    protocol_presets = {"cross_dataset": "maple_xd", "domain_generalization": "maple_xd"}

    def __init__(self, backbone: Backbone, config: MapleConfig) -> None:
        super().__init__(backbone, config)
        check_backbone(backbone)
        backbone.require_vit_image_tower(f"{NAME} (image prompts)")
        for tower, layers in (("text", backbone.text_layers), ("image", backbone.image_layers)):
            if config.prompt_depth > layers:
                raise HarnessError(f"{NAME}: prompt_depth={config.prompt_depth} > {layers} layers of the {tower} "
                                   f"tower of backbone {backbone.name!r}")
        self.prompt_learner = MultiModalPromptLearner(backbone, config)
        self._text_cache: torch.Tensor | None = None
        self._image_prompts: dict[int, torch.Tensor] | None = None
        self.eval()

    def set_classes(self, classnames: Sequence[str], template: str, dataset: str | None = None) -> None:
        """Rebuild the class prompts (the template is not used: the prompt words replace it)."""
        super().set_classes(classnames, template, dataset)
        self.prompt_learner.set_classnames(self.classnames)
        self._drop_caches()

    def init_parameters(self) -> None:
        """Re-draw every learned tensor from the seeded torch RNG, in the official order."""
        self.prompt_learner.init_parameters()
        self._drop_caches()

    def _drop_caches(self) -> None:
        self._text_cache = None
        self._image_prompts = None

    def train(self, mode: bool = True) -> MaPLe:
        """Switch mode; entering training drops the cached text features and image prompts."""
        if mode:
            self._drop_caches()
        return super().train(mode)

    def text_features(self) -> torch.Tensor:
        """L2-normalised text features ``(n_cls, embed_dim)`` with the deep text prompts inside the tower."""
        learner = self.prompt_learner
        learner._require_classes()
        hooks = learner.text_hooks()
        if learner.share_prefix:  # start token + context encoded once, then each class's suffix
            prefix = torch.cat([learner.token_prefix[:1], learner.ctx.unsqueeze(0)], dim=1)
            suffix = learner.token_suffix[:, : learner.seq_len - 1 - learner.n_ctx]
            features = self.backbone.encode_text_shared_prefix(prefix, suffix, learner.eot, hooks=hooks)[0]
        else:
            features = self.backbone.encode_text_embeddings(learner.assemble(), learner.eot, hooks=hooks)
        return F.normalize(features.to(learner.compute_dtype), dim=-1)

    def image_features(self, pixels: torch.Tensor, prompts: Mapping[int, torch.Tensor]) -> torch.Tensor:
        """L2-normalised image features with the coupled prompts inside the image tower."""
        return self.backbone.encode_images(pixels, hooks=TowerHooks(deep_prompts=dict(prompts)))

    def prepare_eval(self) -> None:
        """Enter eval mode; compute the text features and image prompts once for the whole evaluation."""
        self.eval()
        with torch.no_grad():
            self._text_cache = self.text_features()
            self._image_prompts = self.prompt_learner.image_prompts()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_cls)`` for normalised pixels ``(batch, 3, H, W)``."""
        if self.training or self._text_cache is None or self._image_prompts is None:
            text, prompts = self.text_features(), self.prompt_learner.image_prompts()
        else:
            text, prompts = self._text_cache, self._image_prompts
        return scaled_logits(self.backbone, self.image_features(pixels, prompts), text)

    def learned_state(self) -> dict[str, torch.Tensor]:
        """The learned tensors under their official names, without the class buffers."""
        state = self.prompt_learner.state_dict()
        return {key: value.detach().clone() for key, value in state.items() if key not in CLASS_BUFFERS}

    def load_learned_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load ``learned_state`` output or an official state dict (keys ``prompt_learner.*``).

        Raises:
            HarnessError: for a missing or unexpected key, or a tensor of the wrong shape (names both).
        """
        suffix = state.get(f"{OFFICIAL_PREFIX}token_suffix")
        state = _prompt_entries(state)
        learner = self.prompt_learner
        if isinstance(suffix, torch.Tensor):
            self._check_frozen_words(suffix)
        own = {key: value for key, value in learner.state_dict().items() if key not in CLASS_BUFFERS}
        if set(state) != set(own):
            missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            deep = _deep_count(state)
            raise HarnessError(
                f"{NAME} weights: missing keys {missing}, unexpected keys {unexpected} (the weights have "
                f"{deep} deep text prompts, i.e. prompt_depth={deep + 1}; this model has "
                f"prompt_depth={self.config.prompt_depth}, n_ctx={self.config.n_ctx})"
            )
        for key, value in state.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise HarnessError(
                    f"{NAME} weights: {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)} "
                    f"(n_ctx={self.config.n_ctx}, text width {self.backbone.text_width}, image width "
                    f"{self.backbone.image_width} of backbone {self.backbone.name!r})"
                )
        learner.set_context(state["ctx"])
        with torch.no_grad():
            for name, tensor in learner.named_parameters():
                if name != "ctx":
                    tensor.copy_(state[name].to(tensor.device, tensor.dtype))
        self._drop_caches()

    def _check_frozen_words(self, suffix: torch.Tensor) -> None:
        """Refuse an official file whose frozen prompt words (after the context) are not this config's.

        The file does not name its ``CTX_INIT``; its saved ``token_suffix`` starts with the embeddings of the
        words after the first ``n_ctx`` ("of a" for the default "a photo of a"), so a mismatch means another
        ``ctx_init`` (e.g. random init, "X X" prefix) and the logits would silently differ.
        """
        learner = self.prompt_learner
        if not _frozen_words_match(self.backbone, learner, suffix):
            raise HarnessError(
                f"{NAME} weights: the saved token_suffix does not start with the frozen words of "
                f"ctx_init={self.config.ctx_init!r} after its first n_ctx={learner.n_ctx} tokens; the file was "
                "trained with another CTX_INIT: pass it with --set ctx_init=... (or ctx_init='' for random init)"
            )


def _frozen_words_match(backbone: Backbone, learner: MultiModalPromptLearner, suffix: torch.Tensor) -> bool:
    """Whether an official ``token_suffix`` starts with the embeddings of this config's frozen prompt words."""
    count = learner.prefix_tokens - learner.n_ctx
    if count == 0:
        return True
    if suffix.dim() != 3 or suffix.shape[1] < count or suffix.shape[2] != backbone.text_width:
        return False
    with torch.no_grad():
        words = backbone.embed_tokens(backbone.tokenize([learner.prefix_text]))[0, 1 + learner.n_ctx : 1 + count
                                                                                  + learner.n_ctx]
    return torch.allclose(suffix[0, :count].float().cpu(), words.float().cpu(), atol=1e-3)


def _prompt_entries(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Ours as is; an official file's ``prompt_learner.*`` entries (its frozen CLIP entries are dropped)."""
    if not any(key.startswith(OFFICIAL_PREFIX) for key in state):
        return {key: value for key, value in state.items() if key not in CLASS_BUFFERS}
    unknown = sorted(key for key in state if not key.startswith((OFFICIAL_PREFIX, *FROZEN_PREFIXES)))
    if unknown:
        raise HarnessError(f"{NAME} weights: keys {unknown[:8]} are neither prompt_learner.* nor the frozen CLIP")
    return {key: value for key, value in official_prompt_state(state).items() if key not in CLASS_BUFFERS}
