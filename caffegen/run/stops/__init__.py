"""Stop rules: one interface (:class:`~.base.StopRule`: a log read, a test pass -> go on, or stop and why), one class
per rule, in the shape of Ray Tune's stoppers. A :class:`~caffegen.run.trainer.Training` takes a list of them.

* :mod:`.base`        the interface, the :class:`~.base.Decision` it returns, ``STOP_GRACE_S``
* :mod:`.divergence`  nan/inf or an explosion over the first loss (``DIVERGE_FACTOR``)
* :mod:`.early_stop`  no gain in the ranking metric for ``early_stop`` test passes
* :mod:`.timeout`     a wall-clock limit per attempt
* :mod:`.prune`       the search's pruner, told each whole test pass
* :mod:`.loss`        the probes' rules: sanity's loss below a threshold, lr-find's loss blown up

(The plateau schedule is not a stop rule: it never stops a run, it picks the next segment's lr at a segment's end,
in the chain code.)
"""
from __future__ import annotations

from typing import Callable

from .base import STOP_GRACE_S, Decision, StopRule
from .divergence import DIVERGE_FACTOR, Divergence, first_divergence
from .early_stop import EarlyStop
from .loss import LossBelow, LossBlowsUp
from .prune import Prune
from .timeout import Timeout

__all__ = ["Decision", "StopRule", "Divergence", "EarlyStop", "Timeout", "Prune", "LossBelow", "LossBlowsUp",
           "run_stops", "first_divergence", "DIVERGE_FACTOR", "STOP_GRACE_S"]


def run_stops(metric: str | None, *, diverge_factor: float = DIVERGE_FACTOR, early_stop: int = 0,
              timeout: float | None = None,
              judge: Callable[[int, float], Decision | None] | None = None) -> list[StopRule]:
    """A sweep's run's rules, from its ``[run]`` settings: divergence always, early stop when ``early_stop`` > 0
    (test passes without a gain in ``metric``), a timeout when given, the pruner's ``judge`` when searching."""
    stops: list[StopRule] = [Divergence(diverge_factor)]
    if early_stop > 0 and metric:
        stops.append(EarlyStop(metric, early_stop))
    if timeout is not None:
        stops.append(Timeout(timeout))
    if judge is not None:
        stops.append(Prune(judge))
    return stops
