"""MaPLe: a training step (official batch 4) and an evaluation over the test set, ours vs official.

The reference (``reference_maple.ReferenceMaPLe``) re-encodes every whole 77-token class prompt through the
deep-prompted text tower on every batch, as the official ``CustomCLIP.forward`` does; ours encodes the text
side once per evaluation (``prepare_eval``), truncated after the last end-of-text token, with the start token
and context encoded once for all classes. Both run the prompted image tower on every batch.

Prompt depth is the official 9 where the backbone allows it. The ``vitb16-text`` workload's shared backbone
has a 2-layer image tower, so this pair builds the same text tower (ViT-B/16 shape, random weights) with a
12-layer image tower of the same small width (32 px), so that depth 9 runs in both towers; on ``tiny`` the
depth is the text tower's 3 layers.
"""

from __future__ import annotations

import copy
import hashlib
import json

import open_clip
import pytest
import torch
from reference import sgd_for, train_step
from reference_maple import ReferenceMaPLe, reference_maple_evaluate
from workloads import CLIP_MEAN, CLIP_STD, CTX_INIT, VITB16_TEXT_CONFIG, Workload

from harness.engine import evaluate
from harness.methods import build_method, config_for
from harness.models.backbone import Backbone, Preprocessing

IMPLS = ("reference", "ours")
OFFICIAL_DEPTH = 9
TRAIN_BATCH = 4  # the official MaPLe batch size
TEST_BATCH = 100  # the official test batch size
LR = 0.0035  # the official base-to-new learning rate
_BACKBONES: dict[tuple[str, str], Backbone] = {}


def maple_backbone(workload: Workload) -> Backbone:
    """The workload's backbone, or for ``vitb16-text`` the same text tower with a 12-layer image tower."""
    backbone = workload.backbone
    if workload.key != "vitb16-text":
        return backbone
    key = (backbone.device.type, backbone.precision)
    if key not in _BACKBONES:
        config = copy.deepcopy(VITB16_TEXT_CONFIG)
        config["vision_cfg"]["layers"] = 12
        torch.manual_seed(0)
        model = open_clip.model.CLIP(**config).to(backbone.device)
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=77)
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
        _BACKBONES[key] = Backbone(
            model, tokenizer, name="vitb16-text-shape-12-layer-image-random", weights_sha256=digest,
            sot_token_id=tokenizer.sot_token_id, eot_token_id=tokenizer.eot_token_id,
            preprocessing=Preprocessing(32, CLIP_MEAN, CLIP_STD), device=backbone.device.type,
            precision=backbone.precision,
        )
    return _BACKBONES[key]


def maple_method(workload: Workload):
    """MaPLe as its base-to-new config builds it: 2 tokens from "a photo of a", depth 9 (or the tower's)."""
    backbone = maple_backbone(workload)
    depth = min(OFFICIAL_DEPTH, backbone.text_layers, backbone.image_layers)
    config = config_for("maple", n_ctx=2, ctx_init=CTX_INIT, prompt_depth=depth, lr=LR, batch_size=TRAIN_BATCH)
    method = build_method("maple", backbone, config, workload.classnames, "a photo of a {}.")
    torch.manual_seed(0)
    method.init_parameters()
    return method


def pixels(backbone: Backbone, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` random normalised image batches at the backbone's input size."""
    size = backbone.preprocessing.image_size
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, 3, size, size, generator=generator).to(backbone.device)


@pytest.mark.parametrize("impl", IMPLS)
def test_maple_training_step(benchmark, book, workload, impl) -> None:
    method = maple_method(workload)
    images = pixels(method.backbone, TRAIN_BATCH)
    labels = (torch.arange(TRAIN_BATCH) % len(workload.classnames)).to(images.device)
    model = ReferenceMaPLe(method) if impl == "reference" else method
    parameters = list(model.parameters()) if impl == "reference" else method.trainable_parameters()
    optimizer = sgd_for(parameters, lr=LR)

    def target() -> torch.Tensor:
        return train_step(model, optimizer, images, labels)
    book.run(benchmark, case=f"MaPLe training step (batch {TRAIN_BATCH})", workload=workload.key, impl=impl,
             target=target, rounds=workload.rounds)


@pytest.mark.parametrize("impl", IMPLS)
def test_maple_evaluation(benchmark, book, workload, test_task, impl) -> None:
    method = maple_method(workload)
    backbone = method.backbone
    if impl == "reference":
        model = ReferenceMaPLe(method)

        def target() -> torch.Tensor:
            return reference_maple_evaluate(model, backbone, test_task, TEST_BATCH)
    else:
        def target() -> torch.Tensor:
            return evaluate(method, backbone, test_task, batch_size=TEST_BATCH).logits
    book.run(benchmark, case=f"MaPLe evaluation, {len(test_task.test)} images", workload=workload.key, impl=impl,
             target=target, rounds=workload.rounds)
