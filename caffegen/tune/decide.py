"""The tune's decisions, pure: which search trials become candidates, what a confirm round keeps, who wins.

The live tuner (:mod:`.tuner`, over real runs) and the replay (:mod:`.replay`, over recorded curves on a virtual
clock) call these same functions, and build the search's sampler and pruner with the same factories
(:func:`caffegen.sweep.search.make_sampler`, :func:`~caffegen.sweep.search.make_pruner`): a benchmark of the
replay is a benchmark of the tuner's decisions, not of a second copy of them.

The confirm stage runs **fresh** seeds of the candidates (never the search's own run: its score was selected for
being high, the winner's curse) and, after each round, Hsu's multiple comparisons with the best on the seed noise
(seeds as blocks: :func:`caffegen.report.stats.seed_noise`) drops the candidates that cannot be the best. The
winner is the best mean of those left; the others left are "tied" with it (not separated at this noise).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SearchOutcome", "candidates", "longer_horizon", "ladder", "confirm_round", "choose", "Verdict",
           "SCAN_SCHEDULES", "SCAN_STEPS", "SCAN_FALLBACK", "SCHEDULE_ORDER", "scan_rates", "scan_points", "scan_schedules", "scan_rate",
           "scan_candidates", "scan_best"]


@dataclass(frozen=True)
class SearchOutcome:
    """A search trial as the decisions see it: its configuration, its best value, whether it was pruned."""

    name: str
    point: dict[str, Any]
    value: float | None
    pruned: bool = False
    runs: tuple[str, ...] = ()


def _kind(t: SearchOutcome) -> Any:
    """Which configuration a trial is, when near rates count as one: its schedule (and other choices) and its
    base_lr's half-decade."""
    point = dict(t.point)
    lr = point.pop("base_lr", None)
    key = tuple(sorted((k, repr(v)) for k, v in point.items()))
    return key + ((round(2 * math.log10(lr)),) if isinstance(lr, (int, float)) and lr > 0 else ())


def candidates(trials: Sequence[SearchOutcome], *, maximize: bool, k: int,
               distinct: bool = False) -> list[SearchOutcome]:
    """The best ``k`` finished, unpruned trials with a value, best first, one per configuration (the first seen
    of equal values: the earlier trial). ``distinct``: two trials of one schedule whose base_lr fall in one
    half-decade are one configuration (the better of them), so the confirm stage compares different answers."""
    sign = 1.0 if maximize else -1.0
    done = [t for t in trials if not t.pruned and t.value is not None and math.isfinite(t.value)]
    done.sort(key=lambda t: -sign * t.value)
    out, seen = [], set()
    for t in done:
        key = _kind(t) if distinct else t.name
        if key in seen:
            continue
        seen.add(key)
        out.append(t)
    return out[:k]


def longer_horizon(cands: Sequence[SearchOutcome], *, k: int, factors: Sequence[float]) -> list[SearchOutcome]:
    """The confirm's ``k`` candidates with the short-horizon bias answered: a search of short runs favours small
    rates (Wu et al. 2018; on the demo the search length's best rates are 3-10x below the full length's), so the
    best trial's configuration at each of ``factors`` x its base_lr takes one of the last places, unless a candidate
    already is that configuration (its schedule, that half-decade). No factors: the candidates as they are."""
    extra = ladder(cands[:1], cands[:k], factors)[:max(0, k - 1)]
    return list(cands[:k - len(extra)]) + extra


def ladder(leaders: Sequence[SearchOutcome], tried: Sequence[SearchOutcome], factors: Sequence[float],
           ceiling: float | None = None) -> list[SearchOutcome]:
    """Each leader's configuration at each of ``factors`` x its base_lr (the best leader first), but those already
    tried (a schedule and its half-decade) and those above ``ceiling`` (as far as the search's range could follow:
    :func:`caffegen.tune.specs.lr_within`): a full-length look above the rates a short search preferred (the
    short-horizon bias)."""
    from ..prototxt.options import variant_name

    out: list[SearchOutcome] = []
    for lead in leaders:
        if not isinstance(lead.point.get("base_lr"), (int, float)):
            continue
        for f in factors:
            point = {**lead.point, "base_lr": float(f"{lead.point['base_lr'] * f:.3g}")}
            e = SearchOutcome(variant_name(point), point, None)
            if (ceiling is None or point["base_lr"] <= ceiling) and all(_kind(c) != _kind(e) for c in [*tried, *out]):
                out.append(e)
    return out


def _mean(vs: Mapping[int, float]) -> float:
    return sum(vs.values()) / len(vs)


def confirm_round(values: Mapping[str, Mapping[int, float]], alive: Sequence[str], *,
                  maximize: bool) -> tuple[list[str], str]:
    """After a round: the candidates that could still be the best (Hsu's MCB on the pooled seed noise of the alive
    ones' fresh seeds), and how that was decided. A candidate with no value (its fresh runs diverged or failed) is
    out; with no repeats yet, every other candidate stays."""
    from ..report.stats import could_be_best, seed_noise

    alive = [n for n in alive if values.get(n)]
    noise = seed_noise({n: values[n] for n in alive})
    if noise is None or noise.df < 1:
        return list(alive), "one seed each: no repeats to estimate the seed noise"
    scores = {n: _mean(values[n]) for n in alive}
    bounds = could_be_best(scores, {n: len(values[n]) for n in alive}, noise, maximize=maximize)
    seeds = sorted({s for n in alive for s in values[n]})
    method = (f"Hsu's multiple comparisons with the best over fresh seeds {', '.join(map(str, seeds))}, "
              f"{noise.describe()}")
    return [n for n in alive if bounds[n] >= 0], method


@dataclass(frozen=True)
class Verdict:
    winner: str
    mean: float
    seeds: int
    tied: list[str] = field(default_factory=list)


def choose(values: Mapping[str, Mapping[int, float]], alive: Sequence[str], *, maximize: bool) -> Verdict:
    """The best mean of the candidates still alive (ties in mean: the earlier, the better-searched, one); the
    others alive are tied with it."""
    sign = 1.0 if maximize else -1.0
    ranked = sorted((n for n in alive if values.get(n)), key=lambda n: -sign * _mean(values[n]))
    if not ranked:
        raise ValueError("no candidate has a confirm value")
    win = ranked[0]
    return Verdict(win, _mean(values[win]), len(values[win]), ranked[1:])


# The rate scan (the plan's "scan" mode). The recorded tables' lesson (docs/BENCHMARKS.md): once the rate is right,
# the schedule is cheap to choose, and the rate must be chosen at the full length (a third of the run prefers rates
# 3-10x lower on the demo). So two reference schedules train at the full length at rates a half-decade apart from the
# range test's valley up (the valley is a lower bound: the demo's best rate sits 15-40x above it), the rate is the
# one their pooled value likes best (the rate's effect is shared across schedules, so two runs a rate measure it
# better than one), and the confirm stage then trains the schedules at that rate with a fresh seed (the scan's own
# runs there are left out: they were selected for scoring high at that rate), the best of them winning.
SCAN_SCHEDULES = ("poly", "cosine")   # Caffe's most used decaying schedule and the modern default
SCAN_STEPS = 4                        # valley x 1, 3.16, 10, 31.6
SCAN_FALLBACK = 0.001                 # the first rate when the range test suggests none: up to 0.0316 from there,
                                      # the upper half of the seed's 1e-4..0.1
# the order the other schedules take when the budget has room for only some: the ones that decay smoothly to zero
# first, then Caffe's stepwise and gamma-set ones, the constant rate last (seed 002: decay the rate)
SCHEDULE_ORDER = ("poly", "cosine", "linear", "onecycle", "sigmoid", "step", "multistep", "inv", "exp", "fixed")


def scan_rates(valley: float | None, blew_up_at: float | None = None, steps: int = SCAN_STEPS) -> list[float]:
    """The scan's base_lr values: the range test's ``valley`` (None: :data:`SCAN_FALLBACK`) x 10^(k/2) for k <
    ``steps``, none above a third of where the range test's loss blew up (3 significant digits; at least one)."""
    anchor = valley or SCAN_FALLBACK
    ceiling = blew_up_at / 3 if blew_up_at else math.inf
    out = [float(f"{anchor * 10 ** (k / 2):.3g}") for k in range(steps) if anchor * 10 ** (k / 2) <= ceiling]
    return out or [float(f"{min(anchor, ceiling):.3g}")]


def scan_points(valley: float | None, blew_up_at: float | None, policies: Sequence[str]) -> list[tuple[float, str]]:
    """The scan's runs: :func:`scan_rates` x the scanned schedules (:func:`scan_schedules`), rate by rate."""
    return [(x, p) for x in scan_rates(valley, blew_up_at) for p in scan_schedules(policies)[0]]


def scan_schedules(policies: Sequence[str]) -> tuple[list[str], list[str]]:
    """The schedules the rate is scanned with (:data:`SCAN_SCHEDULES` where the space has them, else its first
    two) and the others, in :data:`SCHEDULE_ORDER` (schedules it does not name after, in the order given)."""
    rank = {p: i for i, p in enumerate(SCHEDULE_ORDER)}
    ordered = sorted(policies, key=lambda p: (rank.get(p, len(rank)), list(policies).index(p)))
    scan = [p for p in ordered if p in SCAN_SCHEDULES]
    scan += [p for p in ordered if p not in scan][:len(SCAN_SCHEDULES) - len(scan)]
    return scan, [p for p in ordered if p not in scan]


def scan_rate(values: Mapping[tuple[float, str], float | None], *, maximize: bool) -> float:
    """The rate of the scan whose runs' values, pooled over the schedules scanned, are best (a run with no value,
    diverged or failed, counts as the worst; equal means: the lower rate; when every rate has a failed run, the
    rate of the best run)."""
    sign = 1.0 if maximize else -1.0
    pooled: dict[float, list[float]] = {}
    for (lr, _), v in values.items():
        pooled.setdefault(lr, []).append(-math.inf if v is None or not math.isfinite(v) else sign * v)
    if not pooled:
        raise ValueError("the rate scan has no runs")
    def score(lr: float) -> tuple[float, float]:
        mean = sum(pooled[lr]) / len(pooled[lr])
        return mean, (max(pooled[lr]) if mean == -math.inf else 0.0)

    return max(sorted(pooled), key=score)


def scan_candidates(rate: float, policies: Sequence[str], k: int) -> list[tuple[str, dict[str, Any]]]:
    """The confirm stage's candidates after a scan: the first ``k`` schedules (the scanned ones first, then
    :data:`SCHEDULE_ORDER`) at the scan's ``rate``, as (name, point)."""
    from ..prototxt.options import variant_name

    scanned, others = scan_schedules(policies)
    points = [{"base_lr": rate, "lr_policy": p} for p in [*scanned, *others][:k]]
    return [(variant_name(p), p) for p in points]


def scan_best(values: Mapping[tuple[float, str], float | None], rate: float, *, maximize: bool) -> tuple[float, str]:
    """The scan's best run at ``rate`` (the answer when no confirm round fits the budget)."""
    sign = 1.0 if maximize else -1.0
    at = [(k, v) for k, v in values.items() if k[0] == rate and v is not None and math.isfinite(v)]
    if not at:
        raise ValueError(f"no run of the scan at base_lr {rate:g} has a value")
    return max(at, key=lambda kv: sign * kv[1])[0]
