"""The one interface every stop rule has (Ray Tune's stoppers are the model): told what the log says so far and each
whole test pass, it answers go on (``None``) or a :class:`Decision` (stop, and why)."""
from __future__ import annotations

from dataclasses import dataclass

from ...logs.follower import LogFollower

__all__ = ["Decision", "StopRule", "STOP_GRACE_S"]

STOP_GRACE_S = 120.0     # seconds a caffe asked to stop may take to snapshot before it is killed


@dataclass(frozen=True)
class Decision:
    """Why a run is being stopped: its status (``diverged``, ``early-stopped``, ``timeout``, ``pruned``, or ``done``
    for a probe whose rule is met), the reason, and how: ``kill`` at once (nothing worth saving) or SIGINT, on
    which caffe snapshots first."""

    status: str
    reason: str
    kill: bool


class StopRule:
    """A rule that may stop a running caffe. :meth:`on_log` sees the run's :class:`~caffegen.logs.follower.LogFollower`
    after each read of its log (train lines, test lines) and the seconds since it started; :meth:`on_test` is told
    each whole test pass of the run's ranking metric. Both default to go on: a rule overrides what it watches.
    Pure: a rule reads what it is given and keeps its own state, nothing else."""

    def on_log(self, follower: LogFollower, elapsed: float) -> Decision | None:
        return None

    def on_test(self, iteration: int, value: float) -> Decision | None:
        return None
