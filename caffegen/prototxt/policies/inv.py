"""``inv``: base_lr x (1 + gamma x iter) ^ -power (the base formed in float arithmetic)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from ..knobs import knob
from .base import Params, Policy, f32

INV_POWER = 0.75            # Caffe's LeNet example power ...
INV_END_RATIO = 0.1         # ... with gamma chosen so that lr reaches base_lr/10 at max_iter


@dataclass(frozen=True)
class InvKnobs:
    gamma: float | None = knob(None, "lr = base_lr (1 + gamma iter)^-power (gamma >= 0).", derived="to base_lr/10 at N")
    power: float | None = knob(None, "the exponent.", derived="0.75")


class Inv(Policy):
    name = "inv"
    Knobs = InvKnobs

    def check(self, p):
        if not p["gamma"] >= 0:
            raise InputError(f"lr_policy inv needs gamma >= 0, got {p['gamma']!r}")

    def defaults(self, max_iter):
        return {"gamma": (INV_END_RATIO ** (-1.0 / INV_POWER) - 1.0) / max_iter, "power": INV_POWER}

    def rate(self, it, p: Params):
        g = f32(p.gamma)
        return f32(p.base_lr) * f32(1.0 + f32(g * it)) ** (-f32(p.power))

    def curve(self, its, p: Params):
        inner = (np.float32(1.0) + (np.float32(f32(p.gamma)) * its.astype(np.float32))).astype(np.float64)
        return f32(p.base_lr) * np.power(inner, -f32(p.power))

    def describe_defaults(self):
        inv_gamma = f"({1 / INV_END_RATIO:g}^(1/{INV_POWER:g}) - 1)/N"
        return (f"--power {INV_POWER:g}, --gamma {inv_gamma}", f"base_lr/{1 / INV_END_RATIO:g}")
