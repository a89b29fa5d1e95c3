"""Early stop (seed 001): no gain in the ranking metric, in its direction, for ``passes`` test passes (the ``[run]``
knob ``early_stop``, ``--early-stop``)."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ...logs.curves import is_loss_metric
from ...logs.follower import LogFollower
from ..status import EARLY_STOPPED
from .base import Decision, StopRule

__all__ = ["EarlyStop"]


@dataclass
class EarlyStop(StopRule):
    """Stop (with a snapshot) a run whose ``metric`` has not improved for ``passes`` test passes; a loss metric
    improves downwards."""

    metric: str
    passes: int

    def on_log(self, f: LogFollower, elapsed: float) -> Decision | None:
        history = f.test_history(self.metric)
        if len(history) <= self.passes:
            return None
        sign = -1.0 if is_loss_metric(self.metric) else 1.0
        score = [sign * v if math.isfinite(v) else -math.inf for _, v in history]
        best_index = max(range(len(score)), key=lambda i: (score[i], -i))
        if len(history) - 1 - best_index < self.passes:
            return None
        best_iter, best = history[best_index]
        return Decision(EARLY_STOPPED, f"{self.metric} has not improved on {best:.4g} (iteration {best_iter}) for "
                                       f"{self.passes} evaluations", kill=False)
