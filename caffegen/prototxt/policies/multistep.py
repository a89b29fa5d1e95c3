"""``multistep``: base_lr x gamma ^ (the steps passed), Caffe's ``current_step_`` advancing at most once per
iteration (so a non-increasing stepvalue list is honoured the way Caffe does)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from ..knobs import knob
from .base import Params, Policy, f32, multistep_switches
from .step import STEP_GAMMA, positive_gamma


@dataclass(frozen=True)
class MultistepKnobs:
    gamma: float | None = knob(None, "the factor each step multiplies the lr by (> 0).", derived="0.1")
    stepvalue: tuple[int, ...] | None = knob(None, "the iterations of the steps, strictly increasing, e.g. 5000,7500.",
                                             derived="N/2,3N/4", minimum=1)


class Multistep(Policy):
    name = "multistep"
    Knobs = MultistepKnobs

    def check(self, p):
        positive_gamma(self.name, p)
        values = list(p["stepvalue"])
        for a, b in zip(values, values[1:]):
            if b <= a:
                raise InputError(f"stepvalue must be strictly increasing, got {','.join(map(str, values))}")

    def defaults(self, max_iter):
        return {"gamma": STEP_GAMMA, "stepvalue": sorted({max(1, max_iter // 2), max(1, (3 * max_iter) // 4)})}

    def rate(self, it, p: Params):
        current = sum(1 for t in multistep_switches(p.stepvalue) if t <= it)
        return f32(p.base_lr) * f32(p.gamma) ** current

    def curve(self, its, p: Params):
        switches = np.asarray(multistep_switches(p.stepvalue), dtype=np.int64)
        current = np.searchsorted(switches, its, side="right")
        return f32(p.base_lr) * np.power(f32(p.gamma), current.astype(np.float64))

    def describe_defaults(self):
        return (f"--gamma {STEP_GAMMA:g}, --stepvalue N/2,3N/4", f"base_lr/{1 / STEP_GAMMA ** 2:g}")
