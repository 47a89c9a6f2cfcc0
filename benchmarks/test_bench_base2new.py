"""One whole embedded base-to-new run (CoCoOp, one dataset, one seed, 1 epoch) through the harness's runner.

Ours: the harness as shipped (truncated prompts, batched CoCoOp evaluation, shared feature cache, cold at
every round). Reference-style: the same runner with every speed-up switched off the way a user can
(``truncate_prompts=false``, ``max_prompts_per_chunk=1`` so one image's prompts per encoder call, and
``HARNESS_FEATURE_CACHE=0``). Records carry metrics, not logits, so the two runs' base and new accuracies
are compared (a near-tie may flip one prediction after a training epoch computed at two sequence lengths).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from workloads import Workload

from harness.engine import feature_cache
from harness.engine.feature_cache import FeatureCache
from harness.protocols.spec import EvalSpec, RunSpec
from harness.results.records import read_records

DATASET = "world_shapes"  # 14 classes: 7 base x 16 shots = 112 CoCoOp steps per epoch at batch size 1
SPEEDUPS_OFF = (("truncate_prompts", False), ("max_prompts_per_chunk", 1))


def run_spec(workload: Workload, impl: str) -> RunSpec:
    overrides = (("max_epoch", 1),) + (SPEEDUPS_OFF if impl == "reference" else ())
    return RunSpec(
        protocol="base2new", run_key=f"bench-cocoop-{DATASET}-seed1-{impl}", method="cocoop", preset="cocoop",
        trainable=True, train_dataset=DATASET, shots=16, seed=1, train_subsample="base",
        evals=(EvalSpec(DATASET, "base", shots=16), EvalSpec(DATASET, "new", shots=16)),
        overrides=overrides, model=workload.model_ref, device=workload.backbone.device.type,
        precision=workload.backbone.precision,
    )


def correct_counts(out_dir: Path, spec: RunSpec) -> torch.Tensor:
    """``[correct on base, correct on new, images per half]`` from the run's accuracy records.

    The last entry makes the pair check's ``max |diff| / max |reference|`` read as "differing predictions
    per evaluated image", so a tolerance of one image per evaluation can be stated.
    """
    records = read_records(out_dir / spec.protocol / spec.run_key / "records.jsonl")
    accuracy = {record["subsample"]: record for record in records if record["metric"] == "accuracy"}
    counts = [round(accuracy[half]["value"] * accuracy[half]["n_images"] / 100) for half in ("base", "new")]
    return torch.tensor([*counts, max(accuracy[half]["n_images"] for half in ("base", "new"))], dtype=torch.float)


@pytest.mark.parametrize("impl", ("reference", "ours"))
def test_base2new_run(benchmark, book, workload, bench_dir, monkeypatch, impl) -> None:
    if workload.key != "tiny":
        pytest.skip("the whole run is benchmarked on the embedded tiny backbone")
    runner = pytest.importorskip("harness.engine.runner", reason="the protocol runner is not in this checkout")
    from harness.data import prepare_task_data

    prepare_task_data(DATASET, None, shots=16, seed=1, subsample="base")  # builds the embedded world once, untimed
    spec = run_spec(workload, impl)
    out_dirs: list[Path] = []
    if impl == "reference":
        monkeypatch.setenv(feature_cache.ENV_SWITCH, "0")

    def setup() -> None:  # a fresh output folder (and, for ours, an empty feature cache) per round
        out_dirs.append(Path(tempfile.mkdtemp(dir=bench_dir)))
        if impl == "ours":
            cache = FeatureCache(out_dirs[-1] / "features")
            monkeypatch.setattr(feature_cache, "default_cache", lambda: cache)

    def target() -> torch.Tensor:
        outcome = runner.execute_run(spec, out_dirs[-1])
        assert outcome.status == "done", outcome
        return correct_counts(out_dirs[-1], spec)

    test_images = 20 * 7  # world_shapes: 20 test images per class, 7 classes per half
    book.run(benchmark, case=f"whole base-to-new run (CoCoOp, {DATASET}, 1 epoch)", workload=workload.key,
             impl=impl, target=target, rounds=1, setup=setup, tolerance=1.01 / test_images)
