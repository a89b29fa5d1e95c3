"""``plateau`` (reduce on plateau): not planned ahead: the chain runner drops the lr by ``gamma`` when the test
metric has not improved for ``patience`` test passes (outside a ``cooldown``), never below ``min_lr``."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ...errors import InputError
from ..knobs import knob
from .base import Chained
from .pieces import Piece

__all__ = ["Plateau", "PlateauState", "plateau_replay", "plateau_next"]

PLATEAU_PATIENCE = 2         # test passes without a gain
PLATEAU_FACTOR = 0.1


@dataclass
class PlateauState:
    """Where a plateau run stands: its lr now, the test pass it last improved at, the passes cooling down."""

    lr: float
    best: float | None = None
    best_pass: int = -1
    cooldown_until: int = -1
    drops: list[tuple[int, float]] = field(default_factory=list)   # (iteration, new lr)


def plateau_replay(base_lr: float, p: dict[str, Any], tests: Sequence[tuple[int, float]], maximize: bool,
                   until: int | None = None) -> PlateauState:
    """Replay the rule over the test passes ``tests`` ((iteration, value), in order), up to iteration ``until``:
    after a pass with no gain over the best for ``patience`` passes (outside a cooldown), the lr is multiplied by
    ``gamma`` (never below ``min_lr``) from the next iteration on."""
    s = PlateauState(base_lr)
    sign = 1.0 if maximize else -1.0
    for k, (it, v) in enumerate(tests):
        if until is not None and it > until:
            break
        if s.best is None or (math.isfinite(v) and sign * v > sign * s.best):
            s.best, s.best_pass = v, k
            continue
        if k <= s.cooldown_until:
            continue
        lower = max(p["min_lr"], s.lr * p["gamma"])
        if k - s.best_pass >= p["patience"] and lower < s.lr * (1 - 1e-6):   # (at min_lr already: no drop)
            s.lr = lower
            s.drops.append((it + 1, s.lr))
            s.best_pass = k                      # a new plateau starts counting here
            s.cooldown_until = k + p["cooldown"]
    return s


def plateau_next(base_lr: float, p: dict[str, Any], tests: Sequence[tuple[int, float]], maximize: bool, *,
                 at: int, max_iter: int, test_interval: int) -> Piece:
    """The piece a plateau run trains from iteration ``at``: its lr after the passes so far, up to the first test
    pass where it could drop (just past it: the decision is taken at that pass, the new lr applies from the next
    iteration), or to the end of the run."""
    s = plateau_replay(base_lr, p, tests, maximize, until=at)
    passes = len([t for t in tests if t[0] <= at])
    earliest = max(s.best_pass + p["patience"], s.cooldown_until + 1, passes)   # a pass index
    end = min(max_iter, earliest * test_interval + 1)
    if end <= at:
        end = min(max_iter, at + test_interval)
    why = f"plateau: lr {s.lr:g}" + (f" after {len(s.drops)} drop{'s' * (len(s.drops) > 1)}" if s.drops else "")
    return Piece(at, end, "fixed", s.lr, note=why)


@dataclass(frozen=True)
class PlateauKnobs:
    gamma: float | None = knob(None, "the factor each drop multiplies the lr by, in (0, 1).", derived="0.1")
    patience: int | None = knob(None, "test passes without a gain before a drop.", derived="2", minimum=1)
    cooldown: int | None = knob(None, "test passes after a drop before the next can come.", derived="0", minimum=0)
    min_lr: float | None = knob(None, "its floor.", derived="base_lr/1000", minimum=0)


class Plateau(Chained):
    name = "plateau"
    Knobs = PlateauKnobs
    planned = False
    extends = "it keeps deciding"
    warmup = False

    def defaults(self, max_iter, base_lr):
        return {"gamma": PLATEAU_FACTOR, "patience": PLATEAU_PATIENCE, "cooldown": 0, "min_lr": base_lr * 1e-3}

    def check(self, name, base_lr, max_iter, p):
        if not 0 < p["gamma"] < 1:
            raise InputError(f"{name}: gamma {p['gamma']:g} (the factor a plateau multiplies the lr by) must be in (0, 1)")
        if p["patience"] < 1 or p["cooldown"] < 0:
            raise InputError(f"{name}: patience must be >= 1 and cooldown >= 0 test passes")
        self.check_min_lr(name, base_lr, p)

    def ideal(self, base_lr, max_iter, p, its):
        return np.full(len(its), float(base_lr))       # its drops depend on the run

    def pieces(self, base_lr, max_iter, p, *, start, tol):
        return [Piece(start, int(max_iter), "fixed", base_lr, note="plateau: base_lr until the first drop")]

    def next_piece(self, base_lr, p, tests, maximize, *, at, max_iter, test_interval):
        return plateau_next(base_lr, p, tests, maximize, at=at, max_iter=max_iter, test_interval=test_interval)

    def describe(self):
        return (f"gamma {PLATEAU_FACTOR:g} after patience {PLATEAU_PATIENCE} test passes without a gain, cooldown 0, "
                "min_lr base_lr/1000", "the run decides")
