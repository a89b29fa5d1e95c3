"""``sgdr``: cosine with warm restarts (Loshchilov & Hutter 2017): a first cycle of ``period`` iterations, each next
one ``period_mult`` times longer, each a cosine from base_lr to ``min_lr``."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from ..knobs import knob
from .base import ToMinLr, ToMinLrKnobs
from .pieces import cosine_curve, polyline

SGDR_CYCLES = 3              # period max_iter / 7, then 2x and 4x: three restarts fill the run
SGDR_MULT = 2.0


def cycles(n: int, period: int, mult: float) -> list[tuple[int, int]]:
    """(start, length) of each cycle in a run of ``n`` (the last one cut at the run's end)."""
    out, s, length = [], 0, float(period)
    while s < n:
        size = max(1, int(round(length)))
        out.append((s, min(size, n - s)))
        s += size
        length *= mult
    return out


@dataclass(frozen=True)
class SgdrKnobs(ToMinLrKnobs):
    period: int | None = knob(None, "the first cycle's length in iterations.", derived="N/7", minimum=1)
    period_mult: float | None = knob(None, "each cycle this many times longer than the last.", derived="2", minimum=0)


class Sgdr(ToMinLr):
    name = "sgdr"
    Knobs = SgdrKnobs
    extends = "its cycles go on"

    def defaults(self, max_iter, base_lr):
        return {**super().defaults(max_iter, base_lr),
                "period": max(1, round(int(max_iter) / (2 ** SGDR_CYCLES - 1))), "period_mult": SGDR_MULT}

    def check(self, name, base_lr, max_iter, p):
        super().check(name, base_lr, max_iter, p)
        if p["period"] < 1:
            raise InputError(f"{name}: period {p['period']} must be >= 1 iteration")
        if p["period_mult"] < 1:
            raise InputError(f"{name}: period_mult {p['period_mult']:g} must be >= 1")

    def ideal(self, base_lr, max_iter, p, its):
        out = np.empty(len(its))
        for s, length in cycles(int(max_iter), p["period"], p["period_mult"]):
            mask = (its >= s) & (its < s + length)
            out[mask] = cosine_curve(p["min_lr"], base_lr, s, length)(its[mask])
        return out

    def pieces(self, base_lr, max_iter, p, *, start, tol):
        out = []
        for k, (s, length) in enumerate(cycles(int(max_iter), p["period"], p["period_mult"])):
            lo = max(s, start)
            if lo < s + length:
                out += polyline(cosine_curve(p["min_lr"], base_lr, s, length), lo, s + length, tol, f"cycle {k + 1}",
                                floor=p["min_lr"])
        return out

    def describe(self):
        return (f"min_lr 0, period N/{2 ** SGDR_CYCLES - 1}, period_mult {SGDR_MULT:g} (3 cycles)", "min_lr")
