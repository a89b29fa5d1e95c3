"""Deciding when to stop a run, from what its log says so far.

:func:`decide` is a pure policy over a :class:`~caffegen.logs.follower.LogFollower` (which the driver keeps fed
through a :class:`~caffegen.logs.follower.LogTail`): diverged (nan/inf or an explosion over the first loss),
early-stopped (no gain in the ranking metric for ``patience`` evaluations), timeout. Caffe itself never stops on
NaN, so without this a diverged run would burn its whole budget printing ``loss = -nan``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..logs.follower import LogFollower


@dataclass(frozen=True)
class Decision:
    status: str      # "diverged" | "early-stopped" | "timeout" | "pruned"
    reason: str
    kill: bool       # True: stop at once (nothing worth saving); False: SIGINT, caffe snapshots first


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


def decide(f: LogFollower, *, elapsed: float, diverge_factor: float, patience: int, metric: str,
           timeout: float | None) -> Decision | None:
    """What to do with a running job now, from what its log says so far; ``None`` = let it run.

    A divergence is reported at the first loss line that shows it, however many lines were read at once."""
    first, peak = f.first_loss, f.peak_loss
    exploded = first is not None and peak is not None and first > 0 and peak > diverge_factor * first
    if f.nonfinite or exploded:
        hit = first_divergence(f.loss_history, diverge_factor)
        if hit is None:  # a nan train output while the smoothed loss still reads finite
            return Decision("diverged", f"a train output became nan/inf at iteration {f.iteration}", kill=True)
        it, loss = hit
        if not math.isfinite(loss):
            return Decision("diverged", f"loss became {loss} at iteration {it}", kill=True)
        return Decision("diverged", f"loss {loss:.4g} > {diverge_factor:g} x first loss {first:.4g} "
                        f"at iteration {it}", kill=True)
    if patience > 0:
        history = f.test_history(metric)
        if len(history) > patience:
            score = [v if math.isfinite(v) else -math.inf for _, v in history]
            best_index = max(range(len(score)), key=lambda i: (score[i], -i))
            if len(history) - 1 - best_index >= patience:
                best_iter, best = history[best_index]
                return Decision("early-stopped", f"{metric} has not improved on {best:.4g} (iteration {best_iter}) "
                                f"for {patience} evaluations", kill=False)
    if timeout is not None and elapsed > timeout:
        return Decision("timeout", f"still running after {timeout:g} s (iteration {f.iteration})", kill=False)
    return None
