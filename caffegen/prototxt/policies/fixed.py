"""``fixed``: lr = base_lr throughout."""
from __future__ import annotations

import numpy as np

from .base import Params, Policy, f32


class Fixed(Policy):
    name = "fixed"

    def rate(self, it, p: Params):
        return f32(p.base_lr)

    def curve(self, its, p: Params):
        return np.full(its.shape, f32(p.base_lr))
