"""The Optuna distributions of a ``[search.space]``, and a search range that follows the evidence: a log-scaled
parameter given ``within = [a, b]`` starts on its ``low .. high`` and moves half a decade at a time towards ``a`` or ``b`` when the best finished trials
crowd one end of it (what an expert does when a grid's best point is its edge: extend the grid that way).

The range is a pure function of the trials so far (so a resumed driver and the tune's replay,
:mod:`caffegen.tune.replay`, see the range the live driver saw): it always covers every value already sampled, and it
moves one :data:`STEP` past its current top (bottom) when the :data:`TOP` best finished trials all lie within a
:data:`STEP` of it, so a move waits for trials near the new end before the next.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .strategies import optuna_or_error

__all__ = ["followed", "distributions", "followed_distributions", "study_range", "STEP", "TOP"]

STEP = 10 ** 0.5     # half a decade per move
TOP = 3              # the finished trials that must agree before the range moves (one best trial is noise)


def followed(low: float, high: float, within: tuple[float, float], sampled: Iterable[float],
             best: list[float]) -> tuple[float, float]:
    """The range ``low .. high`` after the trials so far: ``sampled``, every value asked for; ``best``, the values
    of the best finished trials, best first. Never past ``within``."""
    a, b = within
    lo, hi = low, high
    xs = list(sampled)
    top = best[:TOP]
    for _ in range(64):       # each move widens the range towards a bound: it ends long before this
        if any(x > hi * (1 + 1e-9) for x in xs) and hi < b:
            hi = min(b, hi * STEP)
            continue
        if any(x < lo * (1 - 1e-9) for x in xs) and lo > a:
            lo = max(a, lo / STEP)
            continue
        if len(top) == TOP and min(top) >= hi / STEP and hi < b:
            hi = min(b, hi * STEP)
            continue
        if len(top) == TOP and max(top) <= lo * STEP and lo > a:
            lo = max(a, lo / STEP)
            continue
        break
    return lo, hi


def distributions(space: dict[str, Any]):
    """The Optuna distributions of a checked space, as the spec gives it."""
    optuna = optuna_or_error()
    d = optuna.distributions
    out = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            out[name] = d.CategoricalDistribution(spec)
        elif spec["int"]:
            out[name] = d.IntDistribution(int(spec["low"]), int(spec["high"]), log=spec["log"],
                                          step=int(spec.get("step", 1)))
        else:
            out[name] = d.FloatDistribution(float(spec["low"]), float(spec["high"]), log=spec["log"],
                                            step=spec.get("step"))
    return out


def followed_distributions(space: dict[str, Any], trials: list, maximize: bool, *, widest: bool = False) -> dict:
    """The Optuna distributions of a checked space after ``trials`` (Optuna FrozenTrials): each range with
    ``within`` followed (:func:`followed`); ``widest``: at its bounds (what any trial of the study may hold)."""
    out = distributions(space)
    moving = {name: spec for name, spec in space.items() if isinstance(spec, dict) and spec.get("within")}
    if not moving:
        return out
    d = optuna_or_error().distributions
    state = optuna_or_error().trial.TrialState
    done = [t for t in trials if t.state == state.COMPLETE and t.value is not None and math.isfinite(t.value)]
    done.sort(key=lambda t: -t.value if maximize else t.value)
    for name, spec in moving.items():
        if widest:
            lo, hi = spec["within"]
        else:
            lo, hi = followed(spec["low"], spec["high"], tuple(spec["within"]),
                              [t.params[name] for t in trials if name in t.params],
                              [t.params[name] for t in done if name in t.params])
        out[name] = d.FloatDistribution(lo, hi, log=True)
    return out


def study_range(sweep_dir, name: str, space: dict[str, Any], param: str, maximize: bool) -> tuple[float, float]:
    """Where ``param``'s range stands after the trials of the sweep's study (its ``sweep.db``): what the last trial
    was sampled from, or the next one would be."""
    from ..layout import study_storage

    optuna = optuna_or_error()
    study = optuna.load_study(study_name=name, storage=study_storage(sweep_dir))
    dist = followed_distributions(space, study.get_trials(deepcopy=False), maximize)[param]
    return dist.low, dist.high
