"""Paired bootstrap of the difference between two methods: pure functions over per-image correctness arrays.

The unit of a comparison is one dataset part (``all``, or ``base`` / ``new`` in base-to-new) evaluated by
methods A and B: ``correct`` has shape ``(2, S, n)``, 1.0 where a method got image i right in paired run s.
Runs pair by seed (and few-shot draw): the seed fixes the same few-shot selection for both methods. A
training-free method has one run, repeated for every seed of the other.

Two sources of noise, resampled together in each of the R replicates (a two-way bootstrap):

- **seeds**: S of the S paired runs, drawn with replacement (shared by every part and dataset whose runs
  have the same seeds, since one seed's model answers on base and on new classes);
- **test images**: n of the n test images, drawn with replacement, **the same images for both methods and
  for every seed**. Every seed is tested on the same test set, so the set's sampling noise is common to all
  seeds; resampling images independently per seed would shrink that noise by 1/S and make intervals too narrow.

Each replicate recomputes every mean from the resampled data: per method and part the mean over resampled
seeds of the accuracy on the resampled images; base-to-new H = 2BN/(B+N) per method from those means; an
Average over datasets from the per-dataset replicate means (H of the averaged base and new). The interval is
the 2.5 and 97.5 percentiles of the replicated difference A - B; the point estimate is the observed one.

Without per-image predictions, a part is passed as per-seed accuracies of shape ``(2, S, 1)``: resampling
one "image" changes nothing, so only seeds are resampled ("seeds only" intervals, much cruder with 3 seeds).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

CONFIDENCE = 0.95
DEFAULT_RESAMPLES = 2000
# Bounds memory: one block of replicates draws at most this many image indices at once.
MAX_DRAWS_PER_BLOCK = 4_000_000
VERDICT_A, VERDICT_B, VERDICT_NONE = "A better", "B better", "no difference at 95%"


def seed_weights(rng: np.random.Generator, n_seeds: int, resamples: int) -> np.ndarray:
    """``(R, S)`` counts: how often each paired run is drawn in each replicate (each row sums to S)."""
    return rng.multinomial(n_seeds, np.full(n_seeds, 1.0 / n_seeds), size=resamples).astype(np.float64)


def run_weights(rng: np.random.Generator, units: Sequence[tuple[int, int]], resamples: int) -> np.ndarray:
    """``(R, U)`` weights of the paired runs ``(seed, draw)``: seeds resampled, then draws within each seed.

    Without several draws per seed this is ``seed_weights``. With ``--draws`` runs, the seeds are drawn with
    replacement and, for each seed, its draws with replacement (a nested bootstrap: the draws of a seed share
    its training seed, so they are not independent runs); a run's weight is its seed's count times its own
    count over the seed's number of draws, so each row sums to the number of seeds.
    """
    seeds = sorted({seed for seed, _ in units})
    if len(seeds) == len(units):
        return seed_weights(rng, len(units), resamples)
    per_seed = seed_weights(rng, len(seeds), resamples)
    weights = np.zeros((resamples, len(units)))
    for column, seed in enumerate(seeds):
        members = [i for i, unit in enumerate(units) if unit[0] == seed]
        draws = seed_weights(rng, len(members), resamples)
        weights[:, members] = per_seed[:, [column]] * draws / len(members)
    return weights


def image_counts(rng: np.random.Generator, n_images: int, resamples: int) -> np.ndarray:
    """``(R, n)`` counts: how often each test image is drawn in each replicate (each row sums to n)."""
    picks = rng.integers(0, n_images, size=(resamples, n_images))
    offsets = (np.arange(resamples) * n_images)[:, None]
    flat = np.bincount((picks + offsets).ravel(), minlength=resamples * n_images)
    return flat.reshape(resamples, n_images).astype(np.float64)


def replicate_accuracies(correct: np.ndarray, seeds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-method accuracy (percent) in each replicate: ``(M, R)`` from ``correct`` ``(M, S, n)``.

    Args:
        correct: 1.0/0.0 per method, paired run and image (or per-run accuracies as fractions with n = 1).
        seeds: ``(R, S)`` run weights per replicate (``seed_weights`` or ``run_weights``).
        rng: draws the image resamples, shared by all methods and runs of a replicate.
    """
    methods, n_runs, n_images = correct.shape
    resamples = seeds.shape[0]
    if seeds.shape[1] != n_runs:
        raise ValueError(f"seed weights are for {seeds.shape[1]} runs, correctness arrays have {n_runs}")
    out = np.empty((methods, resamples))
    block = max(1, MAX_DRAWS_PER_BLOCK // max(n_images, 1))
    for start in range(0, resamples, block):
        stop = min(start + block, resamples)
        counts = image_counts(rng, n_images, stop - start)
        # per_run[m, r, s]: accuracy of method m, run s on the images of replicate r.
        per_run = np.einsum("msn,rn->mrs", correct, counts) / n_images
        out[:, start:stop] = (per_run * seeds[None, start:stop]).sum(axis=2) / seeds[None, start:stop].sum(axis=2)
    return 100.0 * out


def observed_accuracies(correct: np.ndarray) -> np.ndarray:
    """Per-method accuracy (percent) of the data itself, mean over runs: ``(M,)``.

    Rounded to 1e-9 so that float noise in the last bits does not flip the two-decimal rounding shown beside
    the leaderboards' values (43.125 printed as 43.13 here and 43.12 there).
    """
    return np.round(100.0 * correct.mean(axis=2).mean(axis=1), 9)


def harmonic_means(base: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Element-wise H = 2BN/(B+N), 0 where both are 0."""
    total = base + new
    return np.divide(2 * base * new, total, out=np.zeros_like(total, dtype=np.float64), where=total != 0)


def interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile interval of the replicated differences."""
    tail = 100.0 * (1 - confidence) / 2
    low, high = np.percentile(replicates, [tail, 100.0 - tail])
    return float(low), float(high)


def verdict(low: float, high: float) -> str:
    """``A better`` if the whole interval is above 0, ``B better`` if below, else ``no difference at 95%``."""
    if low > 0:
        return VERDICT_A
    if high < 0:
        return VERDICT_B
    return VERDICT_NONE


def measures_of(parts: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The compared measures from per-part accuracies ``(M, ...)``: each part, plus ``hm`` when base and new."""
    measures = dict(parts)
    if "base" in parts and "new" in parts:
        measures["hm"] = harmonic_means(parts["base"], parts["new"])
    return measures


def dataset_replicates(parts: Mapping[str, np.ndarray], seeds: np.ndarray,
                       rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Replicated per-method accuracy ``(M, R)`` of each part of one dataset (same seed draws for every part)."""
    return {part: replicate_accuracies(correct, seeds, rng) for part, correct in sorted(parts.items())}


def summarize_measures(observed: Mapping[str, np.ndarray], replicates: Mapping[str, np.ndarray],
                       confidence: float = CONFIDENCE) -> list[dict[str, object]]:
    """One row per measure: A, B, the observed difference, its interval and the verdict.

    Args:
        observed: part -> ``(2,)`` observed accuracies of A and B.
        replicates: part -> ``(2, R)`` replicated accuracies.
        confidence: the interval's level (0.95).
    """
    rows = []
    observed_measures, replicated_measures = measures_of(observed), measures_of(replicates)
    for measure in ordered_measures(observed_measures):
        a, b = (float(v) for v in observed_measures[measure])
        low, high = interval(replicated_measures[measure][0] - replicated_measures[measure][1], confidence)
        rows.append({"measure": measure, "a": a, "b": b, "diff": a - b, "ci_low": low, "ci_high": high,
                     "verdict": verdict(low, high)})
    return rows


def ordered_measures(measures: Mapping[str, object]) -> list[str]:
    """Measures in table order: all, base, new, hm."""
    order = ("all", "base", "new", "hm")
    return sorted(measures, key=lambda m: (order.index(m) if m in order else len(order), m))


def average_of(per_dataset: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The Average over datasets of per-part accuracies (observed ``(2,)`` or replicated ``(2, R)``)."""
    parts = sorted(set.intersection(*(set(d) for d in per_dataset))) if per_dataset else []
    return {part: np.mean([d[part] for d in per_dataset], axis=0) for part in parts}
