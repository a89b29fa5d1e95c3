"""``exp``: base_lr x gamma ^ iter."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..knobs import knob
from .base import Params, Policy, f32
from .step import positive_gamma

EXP_END_RATIO = 1e-3        # base_lr/1000 at max_iter


@dataclass(frozen=True)
class ExpKnobs:
    gamma: float | None = knob(None, "the factor each iteration multiplies the lr by (> 0).", derived="0.001^(1/N)")


class Exp(Policy):
    name = "exp"
    Knobs = ExpKnobs

    def check(self, p):
        positive_gamma(self.name, p)

    def defaults(self, max_iter):
        return {"gamma": EXP_END_RATIO ** (1.0 / max_iter)}

    def rate(self, it, p: Params):
        return f32(p.base_lr) * f32(p.gamma) ** it

    def curve(self, its, p: Params):
        return f32(p.base_lr) * np.power(f32(p.gamma), its.astype(np.float64))

    def describe_defaults(self):
        return (f"--gamma ({EXP_END_RATIO:g})^(1/N)", f"base_lr/{1 / EXP_END_RATIO:g}")
