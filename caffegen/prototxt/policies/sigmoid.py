"""``sigmoid``: base_lr / (1 + exp(-gamma x (iter - stepsize))) (a negative gamma decays, centred at stepsize)."""
from __future__ import annotations

import math

from dataclasses import dataclass

import numpy as np

from ..knobs import knob
from .base import Params, Policy, f32

SIGMOID_END_RATIO = 1e-3    # centred at max_iter/2, ~base_lr at 0 and ~base_lr/1000 at max_iter


@dataclass(frozen=True)
class SigmoidKnobs:
    gamma: float | None = knob(None, "the slope (negative: the lr decays).", derived="to base_lr/1000 at N")
    stepsize: int | None = knob(None, "the iteration at the sigmoid's centre.", derived="N/2", minimum=1)


class Sigmoid(Policy):
    name = "sigmoid"
    Knobs = SigmoidKnobs

    def defaults(self, max_iter):
        # lr = base / (1 + exp(-gamma (it - stepsize))); at it = 0 and it = n the ratio is 999:1.
        return {"gamma": -2.0 * math.log(1.0 / SIGMOID_END_RATIO - 1.0) / max_iter, "stepsize": max(1, max_iter // 2)}

    def rate(self, it, p: Params):
        arg = f32(-f32(p.gamma) * f32(float(it) - float(p.stepsize)))
        e = f32(math.exp(arg)) if arg < 700.0 else math.inf
        return f32(p.base_lr) * f32(1.0 / f32(1.0 + e))

    def curve(self, its, p: Params):
        f = np.float32
        arg = (f(-f32(p.gamma)) * (its.astype(f) - f(p.stepsize))).astype(np.float64)
        e = np.exp(arg).astype(f)
        denom = (f(1.0) + e).astype(np.float64)
        return f32(p.base_lr) * (1.0 / denom).astype(f).astype(np.float64)

    def describe_defaults(self):
        return (f"--stepsize N/2, --gamma -2 ln({1 / SIGMOID_END_RATIO - 1:g})/N", f"~base_lr/{1 / SIGMOID_END_RATIO:g}")
