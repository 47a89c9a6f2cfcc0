"""Zero-shot CLIP evaluation over a test set (cold and warm feature cache), ours vs official."""

from __future__ import annotations

import pytest
import torch
from reference import ReferenceZeroshot, reference_evaluate
from workloads import TEMPLATE, fresh_caches

from harness.engine import evaluate
from harness.engine.feature_cache import FeatureCache
from harness.methods import build_method, config_for

COLD = "zero-shot evaluation, cold cache"
TEST_BATCH = 100  # the official test batch size


@pytest.mark.parametrize("impl", ("reference", "ours"))
def test_zeroshot_evaluation_cold_cache(benchmark, book, workload, test_task, bench_dir, impl) -> None:
    backbone, setup = workload.backbone, None
    if impl == "reference":
        def target() -> torch.Tensor:  # the official model encodes its class prompts when it is built
            model = ReferenceZeroshot(backbone, workload.classnames, TEMPLATE)
            return reference_evaluate(model, backbone, test_task, TEST_BATCH)
    else:
        caches, setup = fresh_caches(bench_dir)

        def target() -> torch.Tensor:
            method = build_method("zeroshot", backbone, config_for("zeroshot"), workload.classnames, TEMPLATE)
            return evaluate(method, backbone, test_task, batch_size=TEST_BATCH, cache=caches[-1]).logits
    book.run(benchmark, case=COLD, workload=workload.key, impl=impl, target=target, rounds=workload.rounds,
             setup=setup)


def test_zeroshot_evaluation_warm_cache(benchmark, book, workload, test_task, bench_dir) -> None:
    backbone = workload.backbone
    cache = FeatureCache(bench_dir / f"warm-zeroshot-{workload.key}")

    def target() -> torch.Tensor:
        method = build_method("zeroshot", backbone, config_for("zeroshot"), workload.classnames, TEMPLATE)
        return evaluate(method, backbone, test_task, batch_size=TEST_BATCH, cache=cache).logits
    target()  # fills the cache
    book.run(benchmark, case="zero-shot evaluation, warm cache", workload=workload.key, impl="ours",
             target=target, rounds=workload.rounds, reference_case=COLD)
    assert cache.misses == 1 and cache.hits == len(benchmark.stats.stats.data)
