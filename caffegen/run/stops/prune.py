"""The search's pruning decision as a stop rule: each whole test pass goes to a judge (a sweep's run source: an
Optuna trial's ``report`` and ``should_prune``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import Decision, StopRule

__all__ = ["Prune"]


@dataclass
class Prune(StopRule):
    """``judge(iteration, value)`` is told every whole test pass of the ranking metric (it must see them all, to
    report them to its study); its Decision (``pruned``, with the pruner's reason) stops the run with a snapshot."""

    judge: Callable[[int, float], "Decision | None"]

    def on_test(self, iteration: int, value: float) -> Decision | None:
        return self.judge(iteration, value)
