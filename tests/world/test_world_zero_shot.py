"""Accuracy regression: the shipped tiny CLIP's zero-shot accuracy on every embedded dataset, pinned.

The numbers were measured with ``harness eval --method zeroshot --dataset NAME`` (no --data-root, no
--model: the embedded world and tiny CLIP) and are reported in results/README.md. A change of the world,
the weights, the tokenizer, the preprocessing or the zero-shot path moves them.
"""

from __future__ import annotations

import pytest

from harness.engine.eval_run import EvalJob, run_eval

# dataset -> (test accuracy in percent, number of test images); tolerance in points below.
PINNED_ZERO_SHOT: dict[str, tuple[float, int]] = {
    "world_objects": (24.8, 1000),
    "world_shapes": (34.64, 280),
    "world_colours": (50.0, 200),
    "world_textures": (64.44, 180),
    "world_sizes": (40.62, 320),
    "world_novel": (47.19, 320),
    "world_objects_v2": (27.0, 800),
    "world_objects_sketch": (39.38, 800),
    "world_objects_grainy": (32.88, 800),
    "world_objects_blurry": (35.25, 800),
}
TOLERANCE = 1.5  # points: room for another BLAS flipping a few borderline images, not for a real change


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sorted(PINNED_ZERO_SHOT))
def test_tiny_clip_zero_shot_accuracy_is_pinned(dataset: str, embedded_world) -> None:
    outcome = run_eval(EvalJob(dataset=dataset, method="zeroshot", device="cpu", precision="fp32"))
    expected, images = PINNED_ZERO_SHOT[dataset]
    assert outcome.result.n_images == images
    assert outcome.result.accuracy == pytest.approx(expected, abs=TOLERANCE)


def test_every_embedded_dataset_is_pinned() -> None:
    from harness.world import WORLD_DATASETS

    assert sorted(PINNED_ZERO_SHOT) == sorted(d.name for d in WORLD_DATASETS)
