"""``exp``: base_lr x gamma ^ iter."""
from __future__ import annotations

import numpy as np

from .base import Params, Policy, f32

EXP_END_RATIO = 1e-3        # base_lr/1000 at max_iter


class Exp(Policy):
    name = "exp"
    fields = ("gamma",)

    def defaults(self, max_iter):
        return {"gamma": EXP_END_RATIO ** (1.0 / max_iter)}

    def rate(self, it, p: Params):
        return f32(p.base_lr) * f32(p.gamma) ** it

    def curve(self, its, p: Params):
        return f32(p.base_lr) * np.power(f32(p.gamma), its.astype(np.float64))

    def describe_defaults(self):
        return (f"--gamma ({EXP_END_RATIO:g})^(1/N)", f"base_lr/{1 / EXP_END_RATIO:g}")
