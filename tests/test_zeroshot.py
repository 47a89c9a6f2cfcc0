"""Zero-shot CLIP (single template and prompt ensemble) against direct computations on the tiny backbone."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.methods import config_for
from harness.methods.zeroshot import IMAGENET_TEMPLATES_SELECT, ZeroshotCLIP, ZeroshotEnsemble
from harness.registries import METHODS

CLASSNAMES = ["golden_retriever", "tabby cat", "sea_lion"]
TEMPLATE = "a photo of a {}, a type of pet."


def image_features(n: int = 4, dim: int = 32) -> torch.Tensor:
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(0)), dim=-1)


def test_registered():
    assert METHODS.get("zeroshot") is ZeroshotCLIP
    assert METHODS.get("zeroshot_ensemble") is ZeroshotEnsemble


def test_single_template_logits(tiny_backbone):
    method = ZeroshotCLIP(tiny_backbone, config_for("zeroshot"))
    method.set_classes(CLASSNAMES, TEMPLATE)
    with torch.no_grad():
        method.prepare_eval()
        logits = method(image_features())
    prompts = ["a photo of a golden retriever, a type of pet.", "a photo of a tabby cat, a type of pet.",
               "a photo of a sea lion, a type of pet."]
    text = F.normalize(tiny_backbone.encode_text(tiny_backbone.tokenize(prompts), truncate=False), dim=-1)
    expected = tiny_backbone.model.logit_scale.exp() * image_features() @ text.T
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    assert method.templates() == [TEMPLATE]
    assert not method.trainable_parameters()


def ensemble_expected(backbone, templates) -> torch.Tensor:
    names = [name.replace("_", " ") for name in CLASSNAMES]
    per_template = [F.normalize(backbone.encode_text(backbone.tokenize([t.format(n) for n in names])), dim=-1)
                    for t in templates]
    return F.normalize(torch.stack(per_template).mean(0), dim=-1)


def test_ensemble_appends_the_dataset_template(tiny_backbone):
    method = ZeroshotEnsemble(tiny_backbone, config_for("zeroshot_ensemble"))
    method.set_classes(CLASSNAMES, TEMPLATE, "oxford_pets")
    assert method.templates() == [*IMAGENET_TEMPLATES_SELECT, TEMPLATE]
    with torch.no_grad():
        method.prepare_eval()
        expected = ensemble_expected(tiny_backbone, [*IMAGENET_TEMPLATES_SELECT, TEMPLATE])
        torch.testing.assert_close(method.text_features, expected, rtol=1e-5, atol=1e-6)
        logits = method(image_features())
    torch.testing.assert_close(logits, tiny_backbone.logit_scale() * image_features() @ expected.T,
                               rtol=1e-5, atol=1e-5)


def test_ensemble_on_imagenet_uses_only_the_seven_templates(tiny_backbone):
    method = ZeroshotEnsemble(tiny_backbone, config_for("zeroshot_ensemble"))
    method.set_classes(CLASSNAMES, "a photo of a {}.", "imagenet")
    assert method.templates() == list(IMAGENET_TEMPLATES_SELECT)
    method.set_classes(CLASSNAMES, "a photo of a {}.", "imagenetv2")  # only ImageNet drops its template
    assert method.templates() == [*IMAGENET_TEMPLATES_SELECT, "a photo of a {}."]


def test_ensemble_does_not_grow_across_instances(tiny_backbone):
    """The official class-level ``+=`` grows the list per instantiation; ours does not."""
    first = ZeroshotEnsemble(tiny_backbone, config_for("zeroshot"))
    second = ZeroshotEnsemble(tiny_backbone, config_for("zeroshot"))
    for method in (first, second):
        method.set_classes(CLASSNAMES, TEMPLATE, "dtd")
    assert len(first.templates()) == len(second.templates()) == 8
    assert len(IMAGENET_TEMPLATES_SELECT) == 7


def test_zeroshot_with_config_templates_is_an_ensemble(tiny_backbone):
    """The ``zeroshot_ensemble`` preset is ``zeroshot`` with the 7 templates in its config."""
    method = ZeroshotCLIP(tiny_backbone, config_for("zeroshot", templates=IMAGENET_TEMPLATES_SELECT))
    method.set_classes(CLASSNAMES, TEMPLATE, "dtd")
    assert method.templates() == [*IMAGENET_TEMPLATES_SELECT, TEMPLATE]


def test_new_classes_recompute_text_features(tiny_backbone):
    method = ZeroshotCLIP(tiny_backbone, config_for("zeroshot"))
    method.set_classes(CLASSNAMES, TEMPLATE)
    with torch.no_grad():
        assert method(image_features()).shape == (4, 3)  # prepares itself when prepare_eval was not called
        method.set_classes(CLASSNAMES[:2], TEMPLATE)
        assert method(image_features()).shape == (4, 2)
