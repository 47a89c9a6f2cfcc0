"""Zero-shot CLIP (official ``ZeroshotCLIP`` and ``ZeroshotCLIP2``, spec section 7): a method whose fit does nothing.

``zeroshot``: one prompt per class from the dataset's template (``{}`` = class name with ``_`` -> space).
With ``templates`` in its config it becomes a prompt ensemble over those templates plus the dataset's own.

``zeroshot_ensemble``: the prompt ensemble of ``ZeroshotCLIP2``: the 7 ``IMAGENET_TEMPLATES_SELECT`` (or the
config's ``templates``) plus the dataset's template for every dataset except ImageNet. Each template's text
features are L2-normalised, averaged over templates and normalised again. The official class keeps its
template list as a class attribute and extends it with ``+=``, so it grows when the class is built twice in
one process; here each instance builds its own list, so the result does not depend on what ran before.

Logits are ``logit_scale.exp() * image_features @ text_features.T``; the text features are computed once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.config import MethodConfig, option
from harness.errors import HarnessError
from harness.methods.base import Method
from harness.models.backbone import Backbone
from harness.registries import METHODS

IMAGENET_TEMPLATES_SELECT = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)
# Only the dataset registered as "ImageNet" officially skips its own template (ImageNetV2/-Sketch/-A/-R keep it).
DATASETS_WITHOUT_OWN_TEMPLATE = ("imagenet",)
# Prompts encoded per forward pass when building text features (bounds memory for 1000 classes x 8 templates).
TEXT_BATCH = 512


@dataclass(frozen=True)
class ZeroshotConfig(MethodConfig):
    """Zero-shot CLIP's one key: the templates of a prompt ensemble."""

    templates: tuple[str, ...] = option(
        (), "prompt ensemble templates ({} = class name); empty: the dataset's template (zeroshot) or the "
        "7 ImageNet templates (zeroshot_ensemble)")


def prompt_classname(classname: str) -> str:
    """The class name as it appears in a prompt (the official code replaces ``_`` by a space)."""
    return classname.replace("_", " ")


def ensemble_templates(templates: Sequence[str], dataset_template: str, dataset: str | None) -> list[str]:
    """The templates of a prompt ensemble: ``templates`` plus the dataset's own, except for ImageNet."""
    selected = list(templates)
    if dataset is None or dataset.lower() not in DATASETS_WITHOUT_OWN_TEMPLATE:
        selected.append(dataset_template)
    return selected


@torch.no_grad()
def encode_classes(backbone: Backbone, classnames: Sequence[str], templates: Sequence[str]) -> torch.Tensor:
    """Text features ``(n_classes, embed_dim)``: per template L2-normalised, averaged, normalised again.

    With a single template this is the official ``ZeroshotCLIP`` (the mean of one feature is itself).
    """
    names = [prompt_classname(name) for name in classnames]
    per_template = []
    for template in templates:
        prompts = [template.format(name) for name in names]
        chunks = [backbone.encode_prompts(prompts[i : i + TEXT_BATCH]) for i in range(0, len(prompts), TEXT_BATCH)]
        per_template.append(torch.cat(chunks))
    return F.normalize(torch.stack(per_template).mean(dim=0), dim=-1)


@METHODS.register("zeroshot")
class ZeroshotCLIP(Method):
    """Zero-shot CLIP with the dataset's template (or an ensemble when the config lists ``templates``)."""

    name = "zeroshot"
    config_class = ZeroshotConfig
    trainable = False

    def __init__(self, backbone: Backbone, config: ZeroshotConfig) -> None:
        super().__init__(backbone, config)
        self.text_features: torch.Tensor | None = None

    def templates(self) -> list[str]:
        """The templates the class prompts are built from."""
        if not self.config.templates:
            return [self.template]
        return ensemble_templates(self.config.templates, self.template, self.dataset)

    def set_classes(self, classnames: Sequence[str], template: str, dataset: str | None = None) -> None:
        """Set the classes, the dataset's template and name (the ensemble drops its own template on ImageNet only).

        The text features are computed by ``prepare_eval``.
        """
        super().set_classes(classnames, template, dataset)
        self.text_features = None

    def prepare_eval(self) -> None:
        """Encode the class prompts once."""
        if not self.classnames:
            raise HarnessError("zero-shot CLIP needs set_classes() before evaluation")
        self.text_features = encode_classes(self.backbone, self.classnames, self.templates())

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        """``logit_scale.exp() * image_features @ text_features.T``."""
        if self.text_features is None:
            self.prepare_eval()
        assert self.text_features is not None
        text = self.text_features.to(image_features.device)
        return self.backbone.logit_scale().to(image_features.device) * image_features.float() @ text.T


@METHODS.register("zeroshot_ensemble")
class ZeroshotEnsemble(ZeroshotCLIP):
    """Official ``ZeroshotCLIP2``: the 7 ImageNet templates (or the config's) plus the dataset's own."""

    name = "zeroshot_ensemble"

    def templates(self) -> list[str]:
        """``IMAGENET_TEMPLATES_SELECT`` (or the config's ``templates``) plus the dataset's, except on ImageNet."""
        base = self.config.templates or IMAGENET_TEMPLATES_SELECT
        return ensemble_templates(base, self.template, self.dataset)
