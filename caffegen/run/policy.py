"""When to stop a run, from what its log says so far: the stop policy, pure.

:func:`decide` looks at a :class:`~caffegen.logs.follower.LogFollower` (kept fed by the run's
:class:`~caffegen.run.trainer.Training`): diverged (nan/inf or an explosion over the first loss), early-stopped (no
gain in the ranking metric, in its direction, for ``early_stop`` test passes), timeout. Caffe itself never stops on
NaN, so without this a diverged run would burn its whole budget printing ``loss = -nan``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..logs.curves import is_loss_metric
from ..logs.follower import LogFollower
from .status import DIVERGED, EARLY_STOPPED, TIMEOUT

__all__ = ["Decision", "StopPolicy", "decide", "first_divergence", "DIVERGE_FACTOR", "STOP_GRACE_S"]

DIVERGE_FACTOR = 10.0    # a loss above this x the first loss is an explosion (nan/inf always is)
STOP_GRACE_S = 120.0     # seconds a caffe asked to stop may take to snapshot before it is killed


@dataclass(frozen=True)
class Decision:
    """Why a run is being stopped: its status (``diverged``, ``early-stopped``, ``timeout``, ``pruned``, or ``done``
    for a probe whose rule is met), the reason, and how: ``kill`` at once (nothing worth saving) or SIGINT, on
    which caffe snapshots first."""

    status: str
    reason: str
    kill: bool


@dataclass(frozen=True)
class StopPolicy:
    """The run's stop settings (a sweep's ``[run]`` table), the same for a sweep's runs and an extended run."""

    metric: str | None = None        # the ranking metric: early stop watches it, in its direction
    diverge_factor: float = DIVERGE_FACTOR
    early_stop: int = 0              # test passes without a gain before an early stop; 0 = off
    timeout: float | None = None     # seconds of this attempt before a stop
    stop_grace: float = STOP_GRACE_S


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


def decide(f: LogFollower, policy: StopPolicy, *, elapsed: float) -> Decision | None:
    """What to do with a running caffe now, from what its log says so far; ``None`` = let it run.

    A divergence is reported at the first loss line that shows it, however many lines were read at once."""
    first, peak = f.first_loss, f.peak_loss
    factor = policy.diverge_factor
    exploded = first is not None and peak is not None and first > 0 and peak > factor * first
    if f.nonfinite or exploded:
        hit = first_divergence(f.loss_history, factor)
        if hit is None:  # a nan train output while the smoothed loss still reads finite
            return Decision(DIVERGED, f"a train output became nan/inf at iteration {f.iteration}", kill=True)
        it, loss = hit
        if not math.isfinite(loss):
            return Decision(DIVERGED, f"loss became {loss} at iteration {it}", kill=True)
        return Decision(DIVERGED, f"loss {loss:.4g} > {factor:g} x first loss {first:.4g} at iteration {it}",
                        kill=True)
    if policy.early_stop > 0 and policy.metric:
        history = f.test_history(policy.metric)
        if len(history) > policy.early_stop:
            sign = -1.0 if is_loss_metric(policy.metric) else 1.0
            score = [sign * v if math.isfinite(v) else -math.inf for _, v in history]
            best_index = max(range(len(score)), key=lambda i: (score[i], -i))
            if len(history) - 1 - best_index >= policy.early_stop:
                best_iter, best = history[best_index]
                return Decision(EARLY_STOPPED, f"{policy.metric} has not improved on {best:.4g} (iteration "
                                f"{best_iter}) for {policy.early_stop} evaluations", kill=False)
    if policy.timeout is not None and elapsed > policy.timeout:
        return Decision(TIMEOUT, f"still running after {policy.timeout:g} s (iteration {f.iteration})", kill=False)
    return None
