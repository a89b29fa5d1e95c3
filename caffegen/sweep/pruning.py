"""Pruning that respects noise: successive halving that stops a run only when it is behind beyond the noise of the
val set at that point, and only against runs at the same stage of their lr schedule.

Optuna's pruners (ASHA, Hyperband, median) compare raw intermediate values: a run whose top-1 is 0.235 against
0.26 at the first test pass is "behind", although on 400 val images the two are one standard error apart and the
curves of a grid still overlap there. Three rules make the cut trustworthy (``pruner = "noise"``):

1. **Behind beyond noise.** At a rung, the promotion threshold is the ceil(k/eta)-th best value of the k comparable
   runs that reached it (successive halving keeps the best 1/eta). A run is pruned only when its value is below that
   threshold by more than z * se, one-sided at ``alpha`` (5%), with se the standard error of the difference of two
   top-1 measured on the n images of a test pass, sqrt(p(1-p)/n + q(1-q)/n) (plus twice a known seed-to-seed
   variance). A loss is compared the other way round, without the binomial term.
2. **Where curves separate.** Rungs start at ``min_resource`` (default: a ninth of the run, the first rung of
   eta = 3 successive halving over the whole run, rounded up to a test pass), never at the first test pass, and a
   rung decides nothing until at least eta comparable runs have reached it; since rule 1 asks for a gap beyond
   noise, nothing is cut while the curves still overlap.
3. **Like with like (short-horizon bias).** A ``step`` or ``sigmoid`` run looks like a ``fixed`` one until it
   decays; judged early against a run that already decayed, it loses a contest it would win at the end (Wu et al.,
   ICLR 2018). Each run's lr schedule says how many decades of decay it still has ahead at iteration t,
   log10(lr(t) / lr(end)); a run is compared only with runs that have at least as much decay ahead as it (less
   half a decade), so no run is cut by one that already enjoyed a decay it has still to come.

Pure decisions (:func:`prune_at`) behind an Optuna :class:`~optuna.pruners.BasePruner` (:class:`NoisePruner`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import optuna

__all__ = ["Rival", "prune_at", "rungs", "NoisePruner", "Z", "DECAY_TOLERANCE"]

DECAY_TOLERANCE = 0.5   # decades: a rival may have this much less decay ahead and still count as comparable


def _z(alpha: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - alpha)


Z = _z(0.05)


@dataclass(frozen=True)
class Rival:
    """A run's value at a rung and the decades of lr decay it still had ahead there."""

    value: float
    decay_left: float


def rungs(max_iter: int, test_interval: int, min_resource: int | None, eta: int) -> list[int]:
    """The iterations at which runs are judged: ``min_resource`` (default max_iter/eta^2, and never the first test
    pass after iteration 0: the curves have not separated there), then eta times as far, ..., each rounded up to a
    test pass, below max_iter."""
    first = min_resource or max(test_interval + 1, math.ceil(max_iter / eta ** 2))
    out, r = [], float(first)
    while r < max_iter:
        step = test_interval * math.ceil(r / test_interval)
        if step >= max_iter:
            break
        if not out or step > out[-1]:
            out.append(step)
        r *= eta
    return out


def prune_at(me: Rival, others: Sequence[Rival], *, eta: int, maximize: bool, test_images: int | None,
             seed_sd: float = 0.0, alpha: float = 0.05) -> tuple[bool, str]:
    """Whether to prune a run at a rung, and why (pure). ``others``: the rung's values of the runs that reached it
    before."""
    comparable = [r for r in others if r.decay_left >= me.decay_left - DECAY_TOLERANCE] + [me]
    if len(comparable) < eta:
        return False, f"{len(comparable)} comparable runs at this rung, fewer than {eta}"
    sign = 1.0 if maximize else -1.0
    ordered = sorted(comparable, key=lambda r: -sign * r.value)
    threshold = ordered[math.ceil(len(comparable) / eta) - 1].value
    gap = sign * (threshold - me.value)
    var = 2 * seed_sd ** 2
    if maximize and test_images and 0 <= me.value <= 1 and 0 <= threshold <= 1:
        var += (me.value * (1 - me.value) + threshold * (1 - threshold)) / test_images
    margin = (_z(alpha) if alpha != 0.05 else Z) * math.sqrt(var)
    if gap > margin:
        return True, (f"{gap:.3f} behind the best 1/{eta} of {len(comparable)} comparable runs ({threshold:.3f}), "
                      f"beyond the noise of the val set ({margin:.3f})")
    return False, f"{max(gap, 0.0):.3f} behind, within noise ({margin:.3f})"


class NoisePruner(optuna.pruners.BasePruner):
    """Successive halving that cuts only beyond the val set's noise (and the seed noise), like with like: the Optuna
    pruner of the rules above. ``decay_left(params, iteration)``: the decades of lr decay a trial of these parameters
    still has ahead at that iteration."""

    def __init__(self, *, max_iter: int, test_interval: int, min_resource: int | None, eta: int, maximize: bool,
                 test_images: int | None, decay_left: Callable[[dict[str, Any], int], float],
                 seed_sd: float = 0.0, alpha: float = 0.05) -> None:
        self.steps = set(rungs(max_iter, test_interval, min_resource, eta))
        self.eta, self.maximize, self.test_images = eta, maximize, test_images
        self.decay_left, self.seed_sd, self.alpha = decay_left, seed_sd, alpha
        self.last_reason = ""   # why the latest decision went as it did (the driver says it when it prunes)

    def prune(self, study, trial) -> bool:
        step = trial.last_step
        if step is None or step not in self.steps:
            return False
        me = Rival(trial.intermediate_values[step], self.decay_left(trial.params, step))
        others = [Rival(t.intermediate_values[step], self.decay_left(t.params, step))
                  for t in study.get_trials(deepcopy=False)
                  if t.number != trial.number and step in t.intermediate_values
                  and math.isfinite(t.intermediate_values[step])]
        cut, why = prune_at(me, others, eta=self.eta, maximize=self.maximize, test_images=self.test_images,
                            seed_sd=self.seed_sd, alpha=self.alpha)
        self.last_reason = why
        return cut
