"""``poly``: base_lr x (1 - iter / max_iter) ^ power (the base formed in float arithmetic)."""
from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from ...errors import InputError
from ..knobs import knob
from .base import Params, Policy, f32

POLY_POWER = 1.0            # linear decay to 0 at max_iter


@dataclass(frozen=True)
class PolyKnobs:
    power: float | None = knob(None, "the exponent.", derived="1")


class Poly(Policy):
    name = "poly"
    Knobs = PolyKnobs
    stretched = True

    def check(self, p):
        if not p["power"] >= 0:
            raise InputError(f"lr_policy poly needs power >= 0, got {p['power']!r}")

    def defaults(self, max_iter):
        return {"power": POLY_POWER}

    def rate(self, it, p: Params):
        if p.max_iter <= 0:
            raise InputError("lr_policy poly needs max_iter >= 1")
        return f32(p.base_lr) * f32(1.0 - f32(it / p.max_iter)) ** f32(p.power)

    def curve(self, its, p: Params):
        if p.max_iter <= 0:
            raise InputError("lr_policy poly needs max_iter >= 1")
        frac = (its.astype(np.float64) / p.max_iter).astype(np.float32)
        inner = (np.float32(1.0) - frac).astype(np.float64)
        return f32(p.base_lr) * np.power(inner, f32(p.power))

    def describe_defaults(self):
        return (f"--power {POLY_POWER:g} (linear)" if POLY_POWER == 1 else f"--power {POLY_POWER:g}", "0")
