"""``step``: base_lr x gamma ^ floor(iter / stepsize) (integer division, as Caffe's)."""
from __future__ import annotations

import math

import numpy as np

from dataclasses import dataclass

from ...errors import InputError
from ..knobs import knob
from .base import Params, Policy, f32

STEP_GAMMA = 0.1            # step / multistep: divide by 10 at each step


@dataclass(frozen=True)
class StepKnobs:
    gamma: float | None = knob(None, "the factor each step multiplies the lr by (> 0).", derived="0.1")
    stepsize: int | None = knob(None, "iterations per step.", derived="ceil(N/3)", minimum=1)


def positive_gamma(name: str, p: dict) -> None:
    if not p["gamma"] > 0:
        raise InputError(f"lr_policy {name} needs gamma > 0, got {p['gamma']!r}")


class Step(Policy):
    name = "step"
    Knobs = StepKnobs

    def check(self, p):
        positive_gamma(self.name, p)

    def defaults(self, max_iter):
        return {"gamma": STEP_GAMMA, "stepsize": max(1, math.ceil(max_iter / 3))}

    def rate(self, it, p: Params):
        if p.stepsize <= 0:
            raise InputError("lr_policy step needs stepsize >= 1")
        return f32(p.base_lr) * f32(p.gamma) ** (it // int(p.stepsize))

    def curve(self, its, p: Params):
        if p.stepsize <= 0:
            raise InputError("lr_policy step needs stepsize >= 1")
        return f32(p.base_lr) * np.power(f32(p.gamma), (its // int(p.stepsize)).astype(np.float64))

    def describe_defaults(self):
        return (f"--gamma {STEP_GAMMA:g}, --stepsize ceil(N/3)", f"base_lr/{1 / STEP_GAMMA ** 2:g}")
