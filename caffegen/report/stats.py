"""How sure a sweep's verdict is: the uncertainty of one top-1, the seed-to-seed noise of a net, and the tests that
say whether a variant could be the best.

A top-1 measured on n val images is a binomial proportion: its 95% interval is Wilson's score interval (it stays
inside [0, 1] and behaves at p near 0 or 1, where the normal approximation does not). With one run per variant,
two variants are **separated** when the two-proportion z-test on the images each evaluated rejects "equally good"
at 5%.

With repeats (the same variants run with random_seed 0, 1, 2, ...), what separates variants is the seed-to-seed
noise, and it is largely one property of the net and the data, shared by the variants: :func:`seed_noise`
estimates it once from every repeat of the sweep. When every variant ran the same seeds the seed is a block (a
seed that initialises well helps every variant alike): the residual of the two-way model value = variant + seed
(Tukey's additive model) with (v-1)(s-1) degrees of freedom; otherwise the pooled within-variant variance with
N - v. Levene's test (median-centred) checks that the variants share it; when they do not (p < 0.01) each
comparison uses its own two variances (Welch) instead. Which variants **could be the best** is then Hsu's multiple
comparisons with the best (:func:`could_be_best`): a variant is excluded when even its upper confidence bound
falls short of the best of the others, with Dunnett's one-sided many-to-one critical value (a family of k - 1
comparisons at 5%, from the multivariate t). Pure functions, no state (the critical value is cached).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Z95", "wilson", "proportions_differ", "mean_interval", "mean", "stdev", "SeedNoise", "seed_noise",
           "dunnett_critical", "could_be_best"]

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


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """95% t-interval of the mean of ``values`` (the spread of repeats, or of the variants sharing an axis value)."""
    from scipy import stats

    m = mean(values)
    if len(values) < 2:
        return m, m
    half = stats.t.ppf(0.975, len(values) - 1) * stdev(values) / math.sqrt(len(values))
    return m - half, m + half


SHARED_P = 0.01   # Levene's p below which the variants' seed noise is taken as not shared


@dataclass(frozen=True)
class SeedNoise:
    """The seed-to-seed noise of one net on one data set, estimated once from every repeat of a sweep."""

    sigma: float                 # the standard deviation of one run's value around its variant's (and seed's) mean
    df: int                      # its degrees of freedom
    blocked: bool                # seeds paired across variants (two-way model) or pooled within variants
    shared_p: float | None       # Levene's test that the variants share it (None: too few repeats to test)
    variants: int
    runs: int
    spread: dict[str, float]     # each variant's own standard deviation (for the Welch fallback)

    @property
    def shared(self) -> bool:
        return self.shared_p is None or self.shared_p >= SHARED_P

    def describe(self) -> str:
        how = (f"seeds as blocks, {self.df} degrees of freedom" if self.blocked else
               f"pooled within variants, {self.df} degrees of freedom")
        check = ("" if self.shared_p is None else f"; Levene p = {self.shared_p:.2g}, " +
                 ("shared" if self.shared else "not shared: each pair compared with its own variances (Welch)"))
        return f"seed noise sd {self.sigma:.4f} from {self.runs} runs of {self.variants} variants ({how}{check})"


def seed_noise(groups: Mapping[str, Mapping[int, float]]) -> SeedNoise | None:
    """The seed noise of ``groups`` ({variant: {seed: value}}) from the variants with two repeats or more; None when
    there are none (a sweep without repeats)."""
    import numpy as np
    from scipy import stats

    rep = {name: dict(g) for name, g in groups.items() if len(g) >= 2}
    if not rep:
        return None
    seeds = set(next(iter(rep.values())))
    blocked = len(rep) >= 2 and all(set(g) == seeds for g in rep.values())
    names = list(rep)
    if blocked:
        order = sorted(seeds)
        x = np.array([[rep[n][s] for s in order] for n in names], dtype=float)
        resid = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + x.mean()
        df = (x.shape[0] - 1) * (x.shape[1] - 1)
        per = [row for row in resid]
    else:
        per = [np.array(list(g.values()), dtype=float) - np.mean(list(g.values())) for g in rep.values()]
        df = sum(len(r) for r in per) - len(per)
    ss = float(sum((r ** 2).sum() for r in per))
    sigma = math.sqrt(ss / df) if df > 0 else 0.0
    shared_p = None
    if len(per) >= 3 and all(len(r) >= 3 for r in per) and any(np.ptp(r) > 0 for r in per):
        shared_p = float(stats.levene(*per, center="median").pvalue)
    spread = {n: stdev(list(g.values())) for n, g in rep.items()}
    return SeedNoise(sigma, df, blocked, shared_p, len(rep), sum(len(g) for g in rep.values()), spread)


@lru_cache(maxsize=256)
def dunnett_critical(comparisons: int, df: int, alpha: float = ALPHA) -> float:
    """Dunnett's one-sided critical value: P(max of ``comparisons`` t statistics, correlated 0.5, <= d) = 1 -
    alpha, with ``df`` degrees of freedom (a Student t quantile for one comparison)."""
    from scipy import stats

    if comparisons <= 1:
        return float(stats.t.ppf(1 - alpha, df))
    import numpy as np
    from scipy.optimize import brentq

    corr = np.full((comparisons, comparisons), 0.5)
    np.fill_diagonal(corr, 1.0)
    mvt = stats.multivariate_t(shape=corr, df=df)

    def gap(d: float) -> float:
        return float(mvt.cdf(np.full(comparisons, d), random_state=np.random.default_rng(0))) - (1 - alpha)

    return float(brentq(gap, 0.0, 12.0, xtol=1e-4))


def could_be_best(scores: Mapping[str, float], runs: Mapping[str, int], noise: SeedNoise, *, maximize: bool = True,
                  alpha: float = ALPHA) -> dict[str, float]:
    """Hsu's multiple comparisons with the best: for each variant, the upper bound of (its mean - the best mean of
    the others), in the metric's direction. A variant whose bound is below 0 is not the best (at level alpha, over
    the whole family); the others could be. ``runs``: each variant's number of runs (its mean's n)."""
    sign = 1.0 if maximize else -1.0
    names = [n for n in scores if runs.get(n)]
    if len(names) < 2:
        return {n: math.inf for n in names}
    df = max(1, noise.df)
    d = dunnett_critical(len(names) - 1, df, alpha)
    out = {}
    for n in names:
        rival = max((m for m in names if m != n), key=lambda m: sign * scores[m])
        gap = sign * (scores[n] - scores[rival])
        if noise.shared:
            se = noise.sigma * math.sqrt(1 / runs[n] + 1 / runs[rival])
            bound = gap + d * se
        else:   # Welch: each its own spread (a variant without repeats takes the pooled one), Bonferroni-adjusted
            from scipy import stats

            va = (noise.spread.get(n, noise.sigma) ** 2) / runs[n]
            vb = (noise.spread.get(rival, noise.sigma) ** 2) / runs[rival]
            se = math.sqrt(va + vb)
            dfw = (va + vb) ** 2 / max(1e-300, va ** 2 / max(1, runs[n] - 1) + vb ** 2 / max(1, runs[rival] - 1))
            bound = gap + float(stats.t.ppf(1 - alpha / (len(names) - 1), max(1.0, dfw))) * se
        out[n] = bound
    return out
