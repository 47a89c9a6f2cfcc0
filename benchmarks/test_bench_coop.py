"""CoOp: evaluation over a test set (cold and warm feature cache) and a training step, ours vs official."""

from __future__ import annotations

import pytest
import torch
from reference import ReferenceCoOp, reference_evaluate, sgd_for, train_step
from workloads import Workload, fresh_caches, image_features

from harness.engine import evaluate
from harness.engine.feature_cache import FeatureCache
from harness.methods import build_method, config_for

IMPLS = ("reference", "ours")
TEST_BATCH = 100  # the official test batch size
TRAIN_BATCH = 32  # the official CoOp batch size
COLD = "CoOp evaluation, cold cache"


def coop_method(workload: Workload):
    """CoOp as the official few-shot config builds it: 16 random generic context vectors, class at the end."""
    torch.manual_seed(0)
    config = config_for("coop", n_ctx=16, ctx_init="", csc=False, class_token_position="end")
    return build_method("coop", workload.backbone, config, workload.classnames, "a photo of a {}.")


@pytest.mark.parametrize("impl", IMPLS)
def test_coop_evaluation_cold_cache(benchmark, book, workload, test_task, bench_dir, impl) -> None:
    method = coop_method(workload)
    setup = None
    if impl == "reference":
        model = ReferenceCoOp(method)

        def target() -> torch.Tensor:
            return reference_evaluate(model, workload.backbone, test_task, TEST_BATCH)
    else:
        caches, setup = fresh_caches(bench_dir)

        def target() -> torch.Tensor:
            return evaluate(method, workload.backbone, test_task, batch_size=TEST_BATCH, cache=caches[-1]).logits
    book.run(benchmark, case=COLD, workload=workload.key, impl=impl, target=target, rounds=workload.rounds,
             setup=setup)


def test_coop_evaluation_warm_cache(benchmark, book, workload, test_task, bench_dir, monkeypatch) -> None:
    method = coop_method(workload)
    cache = FeatureCache(bench_dir / f"warm-coop-{workload.key}")
    evaluate(method, workload.backbone, test_task, batch_size=TEST_BATCH, cache=cache)  # fills the cache
    calls = []
    encode = workload.backbone.encode_images
    monkeypatch.setattr(workload.backbone, "encode_images", lambda images: calls.append(1) or encode(images))

    def target() -> torch.Tensor:
        return evaluate(method, workload.backbone, test_task, batch_size=TEST_BATCH, cache=cache).logits
    book.run(benchmark, case="CoOp evaluation, warm cache", workload=workload.key, impl="ours", target=target,
             rounds=workload.rounds, reference_case=COLD)
    assert not calls, "a warm feature cache must skip image encoding entirely"


@pytest.mark.parametrize("impl", IMPLS)
def test_coop_training_step(benchmark, book, workload, impl) -> None:
    method = coop_method(workload)
    features = image_features(workload.backbone, TRAIN_BATCH)
    labels = (torch.arange(TRAIN_BATCH) % len(workload.classnames)).to(features.device)
    model = ReferenceCoOp(method) if impl == "reference" else method
    optimizer = sgd_for([model.prompt_learner.ctx])

    def target() -> torch.Tensor:
        return train_step(model, optimizer, features, labels)
    book.run(benchmark, case="CoOp training step (text side)", workload=workload.key, impl=impl, target=target,
             rounds=workload.rounds)
