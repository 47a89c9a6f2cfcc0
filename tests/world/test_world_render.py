"""The renderer: shapes, determinism per seed stream, styles; the pretraining batch and its positives."""

from __future__ import annotations

import numpy as np
import pytest

from harness.world.pretrain import Schedule, make_batch, multi_positive_loss
from harness.world.render import IMAGE_SIZE, image_rng, render, shape_mask, stream_id
from harness.world.vocab import COLOUR_NAMES, NO_TEXTURE, SHAPES, STYLES, TEXTURES, Scene, caption


def _scene(style: str = "photo", shape: str = "star", colour: str = "red") -> Scene:
    texture = NO_TEXTURE if style == "sketch" else TEXTURES.index("striped")
    return Scene(SHAPES.index(shape), COLOUR_NAMES.index(colour), 1, texture, STYLES.index(style))


@pytest.mark.parametrize("style", STYLES)
def test_render_is_a_function_of_scene_and_seed(style: str) -> None:
    first = render(_scene(style), image_rng(7, "world_x", 3))
    again = render(_scene(style), image_rng(7, "world_x", 3))
    other = render(_scene(style), image_rng(7, "world_x", 4))
    assert first.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_streams_differ_so_pretraining_never_draws_a_dataset_image() -> None:
    assert stream_id("pretrain") != stream_id("world_objects")
    a = image_rng(0, "pretrain", 5).random(4)
    b = image_rng(0, "world_objects", 5).random(4)
    assert not np.allclose(a, b)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_covers_a_plausible_area(shape: str) -> None:
    area = shape_mask(shape, 32.0, 32.0, 20.0, 0.3).sum()
    assert 150 < area < np.pi * 21.0**2, (shape, area)  # PIL draws the boundary pixels too


def test_negative_inverts_a_red_object_towards_cyan() -> None:
    photo = render(_scene("photo", "square"), image_rng(1, "t", 0)).astype(int)
    negative = render(_scene("negative", "square"), image_rng(1, "t", 0)).astype(int)
    assert np.abs(photo + negative - 255).max() <= 1  # same draws, then inverted (rounding aside)


def test_style_without_texture_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a background texture"):
        render(Scene(0, 0, 0, NO_TEXTURE, STYLES.index("photo")), image_rng(0, "t", 0))


def test_caption_names_style_and_chosen_attributes() -> None:
    scene = Scene(SHAPES.index("star"), COLOUR_NAMES.index("red"), 1, TEXTURES.index("wavy"), STYLES.index("negative"))
    text = caption(scene, name_shape=True, name_colour=True, name_size=True, name_texture=True)
    assert text == "a negative of a large red star on a wavy background"
    assert caption(scene, name_shape=False, name_colour=False, name_size=False, name_texture=False) == (
        "a negative of a shape"
    )


class _FakeTokenizer:
    def __call__(self, texts: list[str]):
        import torch

        return torch.zeros(len(texts), 4, dtype=torch.long)


def test_batch_positives_are_exactly_the_consistent_captions() -> None:
    batch = make_batch(0, 3, 64, _FakeTokenizer())
    positives = batch["positives"]
    assert batch["images"].shape == (64, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert positives.diagonal().all()
    assert 1.0 < positives.float().sum(1).mean() < 64  # partial captions: several, never all, are true


def test_multi_positive_loss_rewards_every_true_caption() -> None:
    import torch

    logits = torch.tensor([[5.0, 5.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    only_diagonal = torch.eye(3, dtype=torch.bool)
    both = only_diagonal.clone()
    both[0, 1] = True
    assert multi_positive_loss(logits, both) < multi_positive_loss(logits, only_diagonal)


def test_wall_time_schedule_warms_up_then_anneals_and_stops() -> None:
    import argparse

    args = argparse.Namespace(replay=None, steps=None, minutes=1.0, lr=1e-3, warmup=2)
    schedule = Schedule(args)
    assert schedule.lr(0, 0.0, 0.0) == pytest.approx(5e-4)
    assert schedule.lr(5, 10.0, 10.0) == pytest.approx(1e-3)
    assert schedule.lr(6, 35.0, 10.0) == pytest.approx(5e-4)
    assert schedule.lr(7, 61.0, 10.0) is None
    assert schedule.lr(3, 65.0, 62.0) is None  # warmup outlasted the budget: stop rather than run forever


def test_centred_objects_sit_near_the_middle() -> None:
    from harness.world.render import _place

    for index in range(20):
        mask, _ = _place(_scene(), image_rng(0, "centre", index), centred=True)
        ys, xs = (mask > 0.5).nonzero()
        assert abs(xs.mean() - 32) < 10 and abs(ys.mean() - 32) < 10
