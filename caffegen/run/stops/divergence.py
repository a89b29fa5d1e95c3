"""Divergence: Caffe itself never stops on NaN, so without this a diverged run would burn its whole budget printing
``loss = -nan``."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ...logs.follower import LogFollower
from ..status import DIVERGED
from .base import Decision, StopRule

__all__ = ["Divergence", "first_divergence", "DIVERGE_FACTOR"]

DIVERGE_FACTOR = 10.0    # a loss above this x the first loss is an explosion (nan/inf always is)


def first_divergence(history: list[tuple[int, float]], factor: float) -> tuple[int, float] | None:
    """The first (iteration, loss) of a loss history that is nan/inf or above ``factor`` x the first loss."""
    if not history:
        return None
    first = history[0][1]
    limit = factor * first if math.isfinite(first) and first > 0 else math.inf
    for it, loss in history:
        if not math.isfinite(loss) or loss > limit:
            return it, loss
    return None


@dataclass
class Divergence(StopRule):
    """Kill a run whose train loss became nan/inf or rose above ``factor`` x its first loss (``math.inf``: nan
    only, for a probe that makes the loss explode on purpose). Reported at the first loss line that shows it,
    however many lines were read at once."""

    factor: float = DIVERGE_FACTOR

    def on_log(self, f: LogFollower, elapsed: float) -> Decision | None:
        first, peak = f.first_loss, f.peak_loss
        exploded = first is not None and peak is not None and first > 0 and peak > self.factor * first
        if not (f.nonfinite or exploded):
            return None
        hit = first_divergence(f.loss_history, self.factor)
        if hit is None:  # a nan train output while the smoothed loss still reads finite
            return Decision(DIVERGED, f"a train output became nan/inf at iteration {f.iteration}", kill=True)
        it, loss = hit
        if not math.isfinite(loss):
            return Decision(DIVERGED, f"loss became {loss} at iteration {it}", kill=True)
        return Decision(DIVERGED, f"loss {loss:.4g} > {self.factor:g} x first loss {first:.4g} at iteration {it}",
                        kill=True)
