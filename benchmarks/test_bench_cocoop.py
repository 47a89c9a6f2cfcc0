"""CoCoOp: a training step (batch size 1) and the logits of an evaluation batch, ours vs official."""

from __future__ import annotations

import pytest
import torch
from reference import ReferenceCoCoOp, sgd_for, train_step
from workloads import CTX_INIT, Workload, image_features, pick_classnames

from harness.methods import build_method, config_for

IMPLS = ("reference", "ours")
# The memory case's activation budget (``chunk_memory_mb``): its peak should stay near it, whatever the batch.
MEMORY_CASE_BUDGET_MB = 256


def cocoop_method(workload: Workload, classnames: list[str] | None = None, chunk_memory_mb: int = 1024):
    """CoCoOp as its main config builds it: context from "a photo of a", meta-net, class at the end."""
    torch.manual_seed(0)
    config = config_for("cocoop", n_ctx=4, ctx_init=CTX_INIT, chunk_memory_mb=chunk_memory_mb)
    return build_method("cocoop", workload.backbone, config, classnames or workload.classnames, "a photo of a {}.")


def trainable(model) -> list[torch.nn.Parameter]:
    return [model.prompt_learner.ctx, *model.meta_net.parameters()] if hasattr(model, "meta_net") else \
        model.trainable_parameters()


@pytest.mark.parametrize("impl", IMPLS)
def test_cocoop_training_step(benchmark, book, workload, impl) -> None:
    method = cocoop_method(workload)
    features = image_features(workload.backbone, 1)  # the official batch size is 1
    labels = torch.tensor([1], device=features.device)
    model = ReferenceCoCoOp(method) if impl == "reference" else method
    optimizer = sgd_for(trainable(model))

    def target() -> torch.Tensor:
        return train_step(model, optimizer, features, labels)
    book.run(benchmark, case="CoCoOp training step", workload=workload.key, impl=impl, target=target,
             rounds=workload.rounds)


def _eval_pair(benchmark, book, workload, impl, method, n_images: int, case: str) -> None:
    features = image_features(workload.backbone, n_images, seed=1)
    model = (ReferenceCoCoOp(method) if impl == "reference" else method).eval()

    @torch.no_grad()
    def target() -> torch.Tensor:
        return model(features).float().cpu()
    book.run(benchmark, case=case, workload=workload.key, impl=impl, target=target, rounds=workload.rounds)


@pytest.mark.parametrize("impl", IMPLS)
def test_cocoop_evaluation_batch(benchmark, book, workload, impl) -> None:
    method = cocoop_method(workload)
    case = f"CoCoOp evaluation, {workload.cocoop_images} images"
    _eval_pair(benchmark, book, workload, impl, method, workload.cocoop_images, case)


@pytest.mark.parametrize("impl", IMPLS)
def test_cocoop_evaluation_1000_classes(benchmark, book, workload, impl) -> None:
    if workload.key != "tiny":
        pytest.skip("1000 classes x per-image prompts: run on the tiny backbone only (memory, not text width)")
    names = pick_classnames(workload.backbone, 1000, at_most=True)  # every ImageNet name whose prompt fits
    method = cocoop_method(workload, names, chunk_memory_mb=MEMORY_CASE_BUDGET_MB)
    _eval_pair(benchmark, book, workload, impl, method, 8,
               f"CoCoOp evaluation, {len(names)} classes, 8 images, chunk budget {MEMORY_CASE_BUDGET_MB} MiB")
