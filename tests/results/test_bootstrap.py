"""The paired two-way bootstrap: coverage on synthetic predictions, noise-only pairs, H per replicate by hand."""

from __future__ import annotations

import numpy as np
import pytest

from harness.results import bootstrap


def synthetic_pair(rng: np.random.Generator, p_a: float, p_b: float, seeds: int, images: int,
                   seed_sd: float) -> np.ndarray:
    """Correctness ``(2, S, n)`` of two methods on the same images: image i is right when its difficulty
    u_i ~ U(0, 1) is below the method's accuracy in that seed (p + a seed effect ~ N(0, seed_sd)).

    The expected difference over images and seeds is exactly ``p_a - p_b``.
    """
    difficulty = rng.random(images)
    offsets = np.array([p_a, p_b])[:, None] + rng.normal(0.0, seed_sd, size=(2, seeds))
    return (difficulty[None, None, :] < offsets[:, :, None]).astype(np.float64)


def difference_interval(correct: np.ndarray, rng: np.random.Generator, resamples: int) -> tuple[float, float]:
    replicates = bootstrap.replicate_accuracies(correct, bootstrap.seed_weights(rng, correct.shape[1], resamples), rng)
    return bootstrap.interval(replicates[0] - replicates[1])


def test_interval_covers_the_true_difference_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(16)
    true_difference = 100.0 * (0.65 - 0.60)
    covered = 0
    simulations = 200
    for _ in range(simulations):
        correct = synthetic_pair(rng, 0.65, 0.60, seeds=5, images=200, seed_sd=0.01)
        low, high = difference_interval(correct, rng, resamples=400)
        covered += low <= true_difference <= high
    # Nominal 0.95; with 200 simulations the binomial standard error is 0.015. The bootstrap resamples only 5
    # seeds, which slightly understates the seed noise, so the lower bound allows for some undercoverage.
    assert 0.88 <= covered / simulations <= 0.99


def test_ignoring_the_image_noise_would_undercover() -> None:
    """The same simulations with seeds resampled but the test images fixed cover far less often."""
    rng = np.random.default_rng(17)
    covered = 0
    for _ in range(100):
        correct = synthetic_pair(rng, 0.65, 0.60, seeds=5, images=200, seed_sd=0.01)
        per_seed = correct.mean(axis=2, keepdims=True)  # (2, S, 1): seeds-only resampling
        low, high = difference_interval(per_seed, rng, resamples=400)
        covered += low <= 5.0 <= high
    assert covered / 100 < 0.8


def test_methods_differing_only_in_noise_are_no_difference_and_a_real_gap_is_found() -> None:
    rng = np.random.default_rng(3)
    same = (rng.random((2, 3, 300)) < 0.7).astype(np.float64)  # same accuracy, independent errors
    low, high = difference_interval(same, rng, resamples=1000)
    assert bootstrap.verdict(low, high) == bootstrap.VERDICT_NONE
    gap = synthetic_pair(rng, 0.80, 0.55, seeds=3, images=300, seed_sd=0.01)
    assert bootstrap.verdict(*difference_interval(gap, rng, resamples=1000)) == bootstrap.VERDICT_A
    assert bootstrap.verdict(*difference_interval(gap[::-1], rng, resamples=1000)) == bootstrap.VERDICT_B


def test_both_methods_see_the_same_resampled_images() -> None:
    rng = np.random.default_rng(0)
    one = (rng.random((1, 3, 50)) < 0.5).astype(np.float64)
    replicates = bootstrap.replicate_accuracies(np.concatenate([one, one]), bootstrap.seed_weights(rng, 3, 200), rng)
    assert np.array_equal(replicates[0], replicates[1])
    assert replicates[0].std() > 0  # the images and seeds were resampled


def test_image_counts_are_resamples_of_the_test_set() -> None:
    counts = bootstrap.image_counts(np.random.default_rng(1), 7, 5)
    assert counts.shape == (5, 7) and (counts.sum(axis=1) == 7).all()


def test_h_is_recomputed_per_replicate_from_the_resampled_means() -> None:
    """Two seeds, one image per part (so only seeds are resampled), with the seed draws fixed by hand.

    Method A: base 0.8 / 0.6 and new 0.5 / 0.7 in seeds 1 / 2. Replicate 0 draws seed 1 twice: base 80,
    new 50, H = 2*80*50/130. Replicate 1 draws each seed once: base 70, new 60, H = 2*70*60/130, which is not
    the mean of the per-seed H values (61.54 and 64.62).
    """
    base = np.array([[[0.8], [0.6]], [[0.5], [0.5]]])
    new = np.array([[[0.5], [0.7]], [[0.5], [0.5]]])
    seeds = np.array([[2.0, 0.0], [1.0, 1.0]])
    rng = np.random.default_rng(0)
    replicates = bootstrap.dataset_replicates({"base": base, "new": new}, seeds, rng)
    measures = bootstrap.measures_of(replicates)
    assert measures["base"][0] == pytest.approx([80.0, 70.0])
    assert measures["new"][0] == pytest.approx([50.0, 60.0])
    assert measures["hm"][0] == pytest.approx([2 * 80 * 50 / 130, 2 * 70 * 60 / 130])
    assert measures["hm"][1] == pytest.approx([50.0, 50.0])
    per_seed_h_mean = (2 * 80 * 50 / 130 + 2 * 60 * 70 / 130) / 2
    assert measures["hm"][0][1] != pytest.approx(per_seed_h_mean)


def test_summary_rows_and_average_h_of_averaged_parts() -> None:
    observed = [{"base": np.array([80.0, 70.0]), "new": np.array([60.0, 60.0])},
                {"base": np.array([60.0, 70.0]), "new": np.array([40.0, 50.0])}]
    average = bootstrap.average_of(observed)
    rows = bootstrap.summarize_measures(average, {k: np.repeat(v[:, None], 10, axis=1) for k, v in average.items()})
    assert [r["measure"] for r in rows] == ["base", "new", "hm"]
    h = rows[2]
    assert h["a"] == pytest.approx(2 * 70 * 50 / 120) and h["b"] == pytest.approx(2 * 70 * 55 / 125)
    assert h["ci_low"] == pytest.approx(h["diff"]) and h["verdict"] == bootstrap.VERDICT_B


def test_verdict_words() -> None:
    assert bootstrap.verdict(0.1, 2.0) == "A better"
    assert bootstrap.verdict(-2.0, -0.1) == "B better"
    assert bootstrap.verdict(-0.1, 0.1) == "no difference at 95%"


def test_runs_with_draws_are_resampled_by_seed_then_by_draw_within_the_seed() -> None:
    units = [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    weights = bootstrap.run_weights(np.random.default_rng(4), units, 500)
    assert weights.shape == (500, 6) and np.allclose(weights.sum(axis=1), 2.0)  # two seeds drawn per replicate
    per_seed = np.stack([weights[:, :3].sum(axis=1), weights[:, 3:].sum(axis=1)], axis=1)
    assert np.allclose(per_seed, np.round(per_seed)) and set(np.unique(per_seed)) == {0.0, 1.0, 2.0}
    assert (weights[:, :3] * 3 / np.maximum(per_seed[:, :1], 1)).round(9).tolist() == \
        (weights[:, :3] * 3 / np.maximum(per_seed[:, :1], 1)).round().tolist()  # whole draw counts within a seed
    flat = bootstrap.run_weights(np.random.default_rng(4), [(1, 0), (2, 0), (3, 0)], 50)
    assert np.array_equal(flat, bootstrap.seed_weights(np.random.default_rng(4), 3, 50))
