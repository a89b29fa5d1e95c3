"""``triangular`` (Smith 2017): cyclic between base_lr and ``max_lr``, a half-cycle of ``stepsize`` iterations;
straight lines (exact)."""
from __future__ import annotations

import math

from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from ..knobs import knob
from .base import Chained
from .pieces import line

TRIANGULAR_PEAK = 4.0        # max_lr = 4 x base_lr
TRIANGULAR_CYCLES = 2        # two whole cycles per run: stepsize = max_iter / 4


@dataclass(frozen=True)
class TriangularKnobs:
    max_lr: float | None = knob(None, "the peak lr.", derived="4 x base_lr", minimum=0)
    stepsize: int | None = knob(None, "a half-cycle in iterations.", derived="N/4", minimum=1)


class Triangular(Chained):
    name = "triangular"
    Knobs = TriangularKnobs
    extends = "its cycles go on"

    def defaults(self, max_iter, base_lr):
        return {"max_lr": TRIANGULAR_PEAK * base_lr,
                "stepsize": max(1, math.ceil(int(max_iter) / (2 * TRIANGULAR_CYCLES)))}

    def check(self, name, base_lr, max_iter, p):
        if not p["max_lr"] > base_lr:
            raise InputError(f"{name}: max_lr {p['max_lr']:g} must be above base_lr {base_lr:g}")
        if p["stepsize"] < 1:
            raise InputError(f"{name}: stepsize {p['stepsize']} must be >= 1 iteration")

    def ideal(self, base_lr, max_iter, p, its):
        half = p["stepsize"]
        phase = (its.astype(float) % (2 * half)) / half
        return base_lr + (p["max_lr"] - base_lr) * np.where(phase <= 1, phase, 2 - phase)

    def pieces(self, base_lr, max_iter, p, *, start, tol):
        n, half = int(max_iter), p["stepsize"]
        out, k = [], start // half
        while k * half < n:
            a, b = k * half, min(n, (k + 1) * half)
            rising = k % 2 == 0
            la, lb = (base_lr, p["max_lr"]) if rising else (p["max_lr"], base_lr)
            out.append(line(max(a, start), b, (a, la), ((k + 1) * half, lb), "up" if rising else "down"))
            k += 1
        return out

    def describe(self):
        return (f"max_lr {TRIANGULAR_PEAK:g} x base_lr, stepsize N/{2 * TRIANGULAR_CYCLES} (2 cycles)", "base_lr")
