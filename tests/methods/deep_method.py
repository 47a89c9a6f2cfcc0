"""A complete small method written only against the public contract (the proof of issue #12's contract).

It is not one of the harness's methods: tests load it with ``--include tests/methods/deep_method.py`` (or
import it), as a third party would. It uses every part of the contract that the second wave of methods needs:

- its own config class (three keys, with meanings) on top of the shared training keys;
- the image tower run with its hooks (``image_input = "pixels"``) and deep prompts in both towers;
- a loss term beyond cross-entropy (the text features are pulled towards zero-shot CLIP's, as KgCoOp does);
- an epoch-end hook (an average of the text prompts over epochs, used for evaluation, as PromptSRC's
  aggregation is);
- its learned state, saved and loaded under its own key names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.config import MethodConfig, option
from harness.errors import HarnessError
from harness.methods.base import Method, TrainOutput
from harness.models.hooks import TowerHooks
from harness.registries import METHODS

NAME = "deep_vl_test"


@dataclass(frozen=True)
class DeepPromptConfig(MethodConfig):
    """The test method's keys."""

    n_ctx: int = option(2, "prompt tokens per layer, in each tower")
    depth: int = option(2, "layers that get prompts in each tower (1: input only)")
    text_weight: float = option(1.0, "weight of the squared distance to zero-shot CLIP's text features")

    def validate(self, source: str) -> None:
        """Shared checks, then this method's."""
        super().validate(source)
        if self.n_ctx < 1 or self.depth < 1:
            from harness.errors import ConfigError

            raise ConfigError(f"{source}: n_ctx and depth must be at least 1")


@METHODS.register(NAME)
class DeepVisionLanguagePrompts(Method):
    """Deep prompts in both towers, a pull towards zero-shot text features, prompts averaged over epochs."""

    name = NAME
    config_class = DeepPromptConfig
    trainable = True
    image_input = "pixels"

    def __init__(self, backbone, config: DeepPromptConfig) -> None:
        super().__init__(backbone, config)
        text_width, image_width = backbone.text_width, backbone.image_width
        self.text_prompts = nn.Parameter(torch.zeros(config.depth, config.n_ctx, text_width))
        self.image_prompts = nn.Parameter(torch.zeros(config.depth, config.n_ctx, image_width))
        self.register_buffer("average", torch.zeros(config.depth, config.n_ctx, text_width))
        self.epochs_averaged = 0
        self._frozen_text = torch.empty(0)
        self._tokens = torch.empty(0, dtype=torch.long)
        self._text_cache: torch.Tensor | None = None
        # Deep prompts deeper than a tower are refused by the backbone; say it before any data is read.
        for tower, layers in (("text", backbone.text_layers), ("image", backbone.image_layers)):
            if config.depth > layers:
                raise HarnessError(f"{NAME}: depth {config.depth} > {layers} layers of the {tower} tower of "
                                   f"backbone {backbone.name!r}")

    def set_classes(self, classnames: Sequence[str], template: str, dataset: str | None = None) -> None:
        """Tokenize ``X .. X name.`` prompts and encode the zero-shot prompts the loss term pulls towards."""
        super().set_classes(classnames, template, dataset)
        names = [name.replace("_", " ") for name in classnames]
        placeholder = " ".join(["X"] * self.config.n_ctx)
        self._tokens = self.backbone.tokenize([f"{placeholder} {name}." for name in names])
        with torch.no_grad():
            self._frozen_text = self.backbone.encode_prompts([template.format(name) for name in names])
        self._text_cache = None

    def init_parameters(self) -> None:
        """Prompts from normal(0, 0.02), drawn from the seeded torch RNG; no average yet."""
        with torch.no_grad():
            nn.init.normal_(self.text_prompts, std=0.02)
            nn.init.normal_(self.image_prompts, std=0.02)
            self.average.zero_()
        self.epochs_averaged = 0

    def text_features(self, prompts: torch.Tensor) -> torch.Tensor:
        """L2-normalised class features with ``prompts`` (depth, n_ctx, width) inside the text tower."""
        n_ctx = self.config.n_ctx
        embeddings = self.backbone.embed_tokens(self._tokens)
        first = prompts[0].unsqueeze(0).expand(len(self.classnames), -1, -1).to(embeddings.dtype)
        embeddings = torch.cat([embeddings[:, :1], first, embeddings[:, 1 + n_ctx :]], dim=1)
        hooks = TowerHooks(deep_prompts={layer: prompts[layer] for layer in range(1, self.config.depth)})
        eot = self.backbone.eot_positions(self._tokens)
        return F.normalize(self.backbone.encode_text_embeddings(embeddings, eot, hooks=hooks).float(), dim=-1)

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features with the image prompts inside the image tower."""
        hooks = TowerHooks(deep_prompts={layer: self.image_prompts[layer] for layer in range(self.config.depth)})
        return self.backbone.encode_images(pixels, hooks=hooks)

    def prepare_eval(self) -> None:
        """Text features once, from the prompts averaged over epochs (the trained ones before any epoch)."""
        prompts = self.average if self.epochs_averaged else self.text_prompts
        self._text_cache = self.text_features(prompts)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, n_classes)`` of normalised pixels."""
        text = self.text_features(self.text_prompts) if self.training or self._text_cache is None else self._text_cache
        return self.backbone.logit_scale() * self.image_features(pixels) @ text.t()

    def training_loss(self, inputs: torch.Tensor, labels: torch.Tensor) -> TrainOutput:
        """Cross-entropy plus ``text_weight`` x the mean squared distance to the zero-shot text features."""
        text = self.text_features(self.text_prompts)
        logits = self.backbone.logit_scale() * self.image_features(inputs) @ text.t()
        ce = F.cross_entropy(logits, labels)
        pull = ((text - self._frozen_text) ** 2).sum(dim=-1).mean()
        return TrainOutput(ce + self.config.text_weight * pull, logits, {"ce": ce.detach(), "pull": pull.detach()})

    def on_epoch_end(self, epoch: int, max_epoch: int) -> None:
        """Add this epoch's text prompts to the running average."""
        with torch.no_grad():
            self.epochs_averaged += 1
            self.average += (self.text_prompts - self.average) / self.epochs_averaged
        self._text_cache = None

    def learned_state(self) -> dict[str, torch.Tensor]:
        """Both prompt sets, the average and how many epochs it holds."""
        return {"text_prompts": self.text_prompts.detach().clone(),
                "image_prompts": self.image_prompts.detach().clone(),
                "average": self.average.clone(), "epochs_averaged": torch.tensor(self.epochs_averaged)}

    def load_learned_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load what ``learned_state`` saved (same shapes)."""
        expected = {"text_prompts", "image_prompts", "average", "epochs_averaged"}
        if set(state) != expected:
            raise HarnessError(f"{NAME} weights: expected keys {sorted(expected)}, got {sorted(state)}")
        with torch.no_grad():
            for key in ("text_prompts", "image_prompts", "average"):
                if state[key].shape != getattr(self, key).shape:
                    raise HarnessError(f"{NAME} weights: {key} has shape {tuple(state[key].shape)}, "
                                       f"expected {tuple(getattr(self, key).shape)}")
                getattr(self, key).copy_(state[key])
        self.epochs_averaged = int(state["epochs_averaged"])
        self._text_cache = None
