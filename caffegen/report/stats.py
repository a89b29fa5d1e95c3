"""How sure a sweep's verdict is: the uncertainty of one top-1 and the test that says whether two variants differ.

A top-1 measured on n val images is a binomial proportion: its 95% interval is Wilson's score interval (it stays
inside [0, 1] and behaves at p near 0 or 1, where the normal approximation does not). Two variants are **separated**
when a two-sided test at the 5% level rejects "they are equally good":

* with repeats (several random seeds per variant): Welch's t-test on the repeats' best top-1 values (unequal
  variances; two identical, variance-free samples are equal, two different ones are separated);
* with one run each: the two-proportion z-test on their top-1 over the images each evaluated (pooled variance).

Best top-1 is the maximum over a run's test passes, so it is biased upwards a little, alike for every variant; the
tests do not correct for that, nor for comparing every variant with the winner (a Bonferroni-style correction would
only widen the ties). Pure functions, no state.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["Z95", "wilson", "proportions_differ", "welch_differ", "mean_interval", "mean", "stdev"]

Z95 = 1.959963984540054  # two-sided 95%
ALPHA = 0.05


def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's 95% score interval of a proportion ``p`` observed on ``n`` trials."""
    if n <= 0:
        return 0.0, 1.0
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def proportions_differ(p1: float, n1: int, p2: float, n2: int, z: float = Z95) -> bool:
    """Two-proportion z-test (pooled): True when the difference is beyond ``z`` standard errors."""
    if n1 <= 0 or n2 <= 0:
        return False
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return p1 != p2
    return abs(p1 - p2) / se > z


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def stdev(values: Sequence[float]) -> float:
    """Sample standard deviation (0 for one value)."""
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def welch_differ(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> bool:
    """Welch's t-test on two samples of at least two values each: True when p < ``alpha``."""
    from scipy import stats

    if stdev(a) == 0 and stdev(b) == 0:
        return mean(a) != mean(b)
    return bool(stats.ttest_ind(a, b, equal_var=False).pvalue < alpha)


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """95% t-interval of the mean of ``values`` (the spread of repeats, or of the variants sharing an axis value)."""
    from scipy import stats

    m = mean(values)
    if len(values) < 2:
        return m, m
    half = stats.t.ppf(0.975, len(values) - 1) * stdev(values) / math.sqrt(len(values))
    return m - half, m + half
