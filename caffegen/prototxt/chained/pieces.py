"""The stuff chains are made of: a :class:`Piece` (iterations trained by one ``caffe train`` with one of Caffe's own
policies), its exact lr, a straight line as an ``inv`` piece, a polyline within a tolerance of a smooth curve."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..schedule import learning_rate

__all__ = ["Piece", "piece_lr", "line", "polyline", "cosine_curve"]


@dataclass(frozen=True)
class Piece:
    """Iterations [start, end) of a chain, trained by one ``caffe train`` with one of Caffe's own policies (its
    solver's max_iter is ``end``)."""

    start: int
    end: int
    policy: str
    base_lr: float
    gamma: float = 0.0
    power: float = 0.0
    stepsize: int = 0
    stepvalue: tuple[int, ...] = ()
    note: str = ""

    @property
    def straight(self) -> bool:
        """Whether its lr is a straight line (a :func:`line`: ``inv`` with power -1), which stretches exactly."""
        return self.policy == "inv" and self.power == -1.0

    def solver_fields(self) -> dict[str, Any]:
        """The SolverParameter fields of this piece (the policy's own only)."""
        from ..policies import REGISTRY

        out: dict[str, Any] = {"lr_policy": self.policy, "base_lr": self.base_lr, "max_iter": self.end}
        for key in REGISTRY[self.policy].fields:
            out[key] = list(self.stepvalue) if key == "stepvalue" else getattr(self, key)
        return out


def piece_lr(p: Piece, it: int) -> float:
    """The lr Caffe uses at iteration ``it`` in this piece (its exact float math)."""
    return learning_rate(p.policy, it, p.base_lr, gamma=p.gamma, stepsize=p.stepsize, stepvalue=p.stepvalue,
                         power=p.power, max_iter=p.end)


def line(start: int, end: int, a: tuple[int, float], b: tuple[int, float], note: str = "") -> Piece:
    """The ``inv``, power -1 piece whose lr is the straight line through points ``a`` and ``b`` (iteration, lr):
    base_lr * (1 + gamma * iter) with base_lr its value at iteration 0 (negative for a line that rises late: the
    product is positive where it runs) and gamma its slope over base_lr."""
    (ia, la), (ib, lb) = a, b
    slope = (lb - la) / (ib - ia) if ib != ia else 0.0
    base = la - slope * ia
    if base == 0.0:       # a line through the origin: nudge it (a float32 ulp of the lr)
        base = la * 1e-7 or 1e-12
    return Piece(start, end, "inv", base, gamma=slope / base, power=-1.0, note=note)


def polyline(f, start: int, end: int, tol: float, note: str, floor: float = 0.0) -> list[Piece]:
    """Lines approximating ``f`` (a vectorised function of the iteration) from ``start`` to ``end``, each as long as
    it can be (greedy, binary search) while no iteration it covers is more than ``tol`` from ``f``: each line is its
    chord moved by the middle of its deviations (the error of a chord, halved; the pieces need not meet), never
    below ``floor`` (a schedule's min_lr: an lr below 0 would climb the loss)."""
    def fit(a: int, b: int) -> tuple[float, float, float]:
        its = np.arange(a, b)
        fa, fb = float(f(np.array([a]))[0]), float(f(np.array([b]))[0])
        chord = fa + (fb - fa) * (its - a) / (b - a)
        dev = f(its) - chord
        shift = (dev.max() + dev.min()) / 2
        lowest = min(fa, fb) + shift
        if lowest < floor:
            shift += floor - lowest
        return fa + shift, fb + shift, float(max(dev.max() - shift, shift - dev.min()))

    out, a = [], start
    while a < end:
        lo, hi = a + 1, end
        while lo < hi:                        # the furthest end b whose line from a stays within tol
            mid = (lo + hi + 1) // 2
            if fit(a, mid)[2] <= tol:
                lo = mid
            else:
                hi = mid - 1
        b = lo
        la, lb, _ = fit(a, b)
        out.append(line(a, b, (a, la), (b, lb), note))
        a = b
    return out


def cosine_curve(lo: float, hi: float, start: int, length: int):
    """A half cosine from ``hi`` at ``start`` to ``lo`` ``length`` iterations later (vectorised)."""
    return lambda its: lo + (hi - lo) * (1 + np.cos(np.pi * np.clip(its - start, 0, length) / length)) / 2
