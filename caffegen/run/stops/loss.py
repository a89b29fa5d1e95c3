"""The probes' rules on the train loss: sanity's "it fell below a threshold" and the LR range test's "it blew up"."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from ...logs.follower import LogFollower
from ..status import DONE
from .base import Decision, StopRule

__all__ = ["LossBelow", "LossBlowsUp"]


@dataclass
class LossBelow(StopRule):
    """Done once the train loss falls below ``threshold`` at iteration ``after`` or later (the sanity check: the
    net can overfit a tiny subset). :attr:`reached` is the first iteration it did; :meth:`read` catches lines the
    last poll missed (a fast net can finish before it)."""

    threshold: float
    after: int = 0
    reached: int | None = None
    _seen: int = field(default=0, repr=False)

    def read(self, f: LogFollower) -> None:
        for it, v in f.loss_history[self._seen:]:
            self._seen += 1
            if self.reached is None and it >= self.after and math.isfinite(v) and v < self.threshold:
                self.reached = it

    def on_log(self, f: LogFollower, elapsed: float) -> Decision | None:
        self.read(f)
        return None if self.reached is None else \
            Decision(DONE, f"train loss below {self.threshold:.3g}", kill=True)


@dataclass
class LossBlowsUp(StopRule):
    """Done once ``blown(losses)`` says the train loss blew up (the LR range test: the rate is past usable)."""

    blown: Callable[[list[float]], bool]

    def on_log(self, f: LogFollower, elapsed: float) -> Decision | None:
        return Decision(DONE, "the smoothed loss blew up", kill=True) \
            if self.blown([v for _, v in f.loss_history]) else None
