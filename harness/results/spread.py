"""Where the spread over runs comes from: outlier seeds, and few-shot draw vs training variance (pure functions).

**Outlier seeds.** A seed is an outlier when its accuracy is further from the median of the method's other
seeds on the same dataset than both ``OUTLIER_POINTS`` (5) points and ``OUTLIER_RANGES`` (3) times the range
(max - min) of those other seeds; it needs at least 3 seeds. Why this rule: papers report 3 seeds, and with 3
values no standard-deviation rule can fire (one value among three is at most (n-1)/sqrt(n) = 1.15 population
standard deviations from the mean, however far it is), so the scale must come from the other seeds alone. Their
range is that scale (with two others, their MAD is half of it): a seed is flagged when it is far from seeds that
agree with each other, not when all seeds scatter, as on small test sets where one image is about a point.
Five points is several times the seed spread the papers report on their datasets (about 0.2 to 2 points) and
half the collapses users report (10 points and more). With many seeds the range grows and the rule gets
stricter; it is meant for the usual 3 to 5.

**Draw vs training variance** (``--draws``). Runs are crossed as seeds x draws: the seed fixes the training
(initialisation, batch order) and, with the draw, the few-shot selection. A one-way random-effects analysis of
variance over seeds splits the spread: the draw variance is the mean over seeds of the variance over their
draws (ddof 1), and the training variance is the variance of the seed means (ddof 1) minus the draw variance
over the number of draws, clipped at 0. Both are reported as standard deviations (points); they need at least
2 seeds with the same number (at least 2) of draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

OUTLIER_POINTS = 5.0
OUTLIER_RANGES = 3.0
OUTLIER_RULE = (f"outlier: a seed further from the median of the method's other seeds on that dataset than both "
                f"{OUTLIER_POINTS:g} points and {OUTLIER_RANGES:g} times their range (3 seeds or more)")
DRAW_RULE = ("draw / training std: few-shot draw and training standard deviations from a one-way random-effects "
             "ANOVA over seeds (draw = within-seed spread over draws, training = between-seed spread less the "
             "draw share)")


def outlier_seeds(values: Mapping[int, float], points: float = OUTLIER_POINTS,
                  ranges: float = OUTLIER_RANGES) -> list[tuple[int, float, float]]:
    """The seeds further from the median of the other seeds than ``points`` and ``ranges`` times their range.

    Args:
        values: seed -> accuracy (NaN values are ignored).
        points: the smallest distance that makes an outlier.
        ranges: the distance in ranges (max - min) of the other seeds that makes an outlier.

    Returns:
        ``(seed, value, median of the others)`` per outlier seed, by seed; empty with fewer than 3 seeds.
    """
    present = {seed: value for seed, value in values.items() if not math.isnan(value)}
    if len(present) < 3:
        return []
    outliers = []
    for seed in sorted(present):
        others = [v for s, v in present.items() if s != seed]
        median = float(np.median(others))
        if abs(present[seed] - median) > max(points, ranges * (max(others) - min(others))):
            outliers.append((seed, present[seed], median))
    return outliers


def variance_components(values: Mapping[tuple[int, int], float]) -> tuple[float, float]:
    """``(draw std, training std)`` in points from (seed, draw) -> accuracy; NaN when not estimable.

    Estimable with at least 2 seeds that all have the same number D >= 2 of draws (a balanced design).
    """
    by_seed: dict[int, list[float]] = {}
    for (seed, _draw), value in sorted(values.items()):
        if not math.isnan(value):
            by_seed.setdefault(seed, []).append(value)
    counts = {len(draws) for draws in by_seed.values()}
    if len(by_seed) < 2 or len(counts) != 1 or counts.pop() < 2:
        return math.nan, math.nan
    groups = np.array(list(by_seed.values()))
    within = float(np.mean(np.var(groups, axis=1, ddof=1)))
    between = float(np.var(groups.mean(axis=1), ddof=1))
    training = max(0.0, between - within / groups.shape[1])
    return math.sqrt(within), math.sqrt(training)


def describe_outliers(outliers: list[tuple[int, float, float]], prefix: str = "") -> str:
    """``outlier seed 2 (41.00; others' median 55.20)`` for a row's status; "" when there are none."""
    shown = ", ".join(f"seed {seed} ({value:.2f}; others' median {median:.2f})" for seed, value, median in outliers)
    return f"{prefix}outlier {shown}" if outliers else ""
