"""``multistep``: base_lr x gamma ^ (the steps passed), Caffe's ``current_step_`` advancing at most once per
iteration (so a non-increasing stepvalue list is honoured the way Caffe does)."""
from __future__ import annotations

import numpy as np

from .base import Params, Policy, f32, multistep_switches
from .step import STEP_GAMMA


class Multistep(Policy):
    name = "multistep"
    fields = ("gamma", "stepvalue")

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
