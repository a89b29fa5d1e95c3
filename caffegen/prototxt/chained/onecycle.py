"""``onecycle`` (Smith 2018): up from base_lr to ``max_lr`` over ``peak_at`` of the run, back down as long, then an
annihilation to ``anneal_ratio`` x base_lr; three straight lines (exact)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from ..knobs import knob
from .base import Chained
from .pieces import line

ONECYCLE_PEAK = 10.0         # max_lr = 10 x base_lr (Smith: the range test's upper end, base a tenth of it)
ONECYCLE_PEAK_AT = 0.45      # up over 45% of the run, down over the next 45%...
ONECYCLE_ANNEAL = 0.01       # ...then to base_lr/100 over the last 10%


def knots(n: int, peak_at: float) -> tuple[int, int]:
    up = max(1, round(peak_at * n))
    return up, min(n - 1, 2 * up)


@dataclass(frozen=True)
class OneCycleKnobs:
    max_lr: float | None = knob(None, "the peak lr.", derived="10 x base_lr", minimum=0)
    peak_at: float | None = knob(None, "the fraction of the run at the peak.", derived="0.45", minimum=0)
    anneal_ratio: float | None = knob(None, "the final lr as a fraction of base_lr.", derived="0.01", minimum=0)


class OneCycle(Chained):
    name = "onecycle"
    Knobs = OneCycleKnobs
    stretched = True

    def defaults(self, max_iter, base_lr):
        return {"max_lr": ONECYCLE_PEAK * base_lr, "peak_at": ONECYCLE_PEAK_AT, "anneal_ratio": ONECYCLE_ANNEAL}

    def check(self, name, base_lr, max_iter, p):
        if not p["max_lr"] > base_lr:
            raise InputError(f"{name}: max_lr {p['max_lr']:g} must be above base_lr {base_lr:g}")
        if not 0 < p["peak_at"] < 0.5:
            raise InputError(f"{name}: peak_at {p['peak_at']:g} must be in (0, 0.5): up, then as long down, then "
                             "the annihilation")
        if not 0 < p["anneal_ratio"] < 1:
            raise InputError(f"{name}: anneal_ratio {p['anneal_ratio']:g} must be in (0, 1)")

    def ideal(self, base_lr, max_iter, p, its):
        n = int(max_iter)
        up, down = knots(n, p["peak_at"])
        return np.interp(its.astype(float), [0, up, down, n], [base_lr, p["max_lr"], base_lr,
                                                               base_lr * p["anneal_ratio"]])

    def pieces(self, base_lr, max_iter, p, *, start, tol):
        n = int(max_iter)
        up, down = knots(n, p["peak_at"])
        low = base_lr * p["anneal_ratio"]
        return [line(max(a, start), b, (a, la), (b, lb), note)
                for a, b, la, lb, note in ((0, up, base_lr, p["max_lr"], "up"), (up, down, p["max_lr"], base_lr, "down"),
                                           (down, n, base_lr, low, "annihilation")) if b > start]

    def describe(self):
        return (f"max_lr {ONECYCLE_PEAK:g} x base_lr, peak_at {ONECYCLE_PEAK_AT:g}, anneal_ratio {ONECYCLE_ANNEAL:g}",
                f"base_lr/{1 / ONECYCLE_ANNEAL:g}")
