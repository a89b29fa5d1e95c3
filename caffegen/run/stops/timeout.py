"""A wall-clock limit on one attempt of a run."""
from __future__ import annotations

from dataclasses import dataclass

from ...logs.follower import LogFollower
from ..status import TIMEOUT
from .base import Decision, StopRule

__all__ = ["Timeout"]


@dataclass
class Timeout(StopRule):
    """Stop (with a snapshot: a resume continues it) a run still going after ``seconds``."""

    seconds: float

    def on_log(self, f: LogFollower, elapsed: float) -> Decision | None:
        if elapsed <= self.seconds:
            return None
        return Decision(TIMEOUT, f"still running after {self.seconds:g} s (iteration {f.iteration})", kill=False)
