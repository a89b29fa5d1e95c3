"""The tune's baselines replayed on a table (:mod:`.replay`: the same clock, seeds and truth): an Optuna search of
full-length runs at a compute budget (random search, TPE with ASHA or Hyperband), the one-seed grid a practitioner
runs by hand, and lr-find's suggestion with poly. One function per kind, in :data:`BASELINES`."""
from __future__ import annotations

import math
from typing import Callable

from .clock import Clock, Method, Outcome, lrfind_of, outcome_of, policies_of, search_on_clock
from .table import CurveTable

__all__ = ["BASELINES", "repeated_grid_compute"]


def _replay_search(table: CurveTable, method: Method, seed: int, slots: int, role, regret) -> Outcome:
    """An Optuna search of full-length runs (ASHA's design: a pruned run is a prefix of a full one) at a compute
    budget, the best value found wins."""
    from .specs import TEST_PASSES_FINAL, TuneNet, base_tables

    iters = table.iters
    common = dict(data={"train_list": "train.txt", "val_list": "val.txt"}, net=TuneNet(), classes=table.problem["classes"],
                  val_images=table.problem["val_images"], run={"backend": "local"})
    full = base_tables("search", iters=iters, passes=TEST_PASSES_FINAL, **common)
    lrs = table.lrs()
    budget = method.compute or table.compute_of() / 10
    search = {"sampler": method.sampler, "trials": 10_000, "seed": seed, "pruner": method.pruner,
              "seconds": round(budget, 1),
              "space": {"base_lr": {"low": lrs[0], "high": lrs[-1], "log": True}, "lr_policy": policies_of(method, table)}}
    if method.pruner in ("asha", "hyperband"):
        search["min_resource"] = max(1, math.ceil(iters / 9))
        search["reduction_factor"] = 3
    clock = Clock(slots)
    anytime: list[tuple[float, float]] = []
    trials, started, pruned = search_on_clock(table, {**full, "search": search}, iters=iters, slots=slots, role=role,
                                      truth_regret=regret, clock=clock, anytime=anytime, compute0=0.0)
    from .decide import candidates

    best = candidates(trials, maximize=table.maximize, k=1)
    if not best:
        raise RuntimeError("no trial finished")
    chosen = table.config(best[0].point["base_lr"], best[0].point["lr_policy"])
    compute = clock.finished_s + clock.overhead_s
    return outcome_of(method, seed, chosen, table, regret, compute, clock.now, stages={"search": compute},
                    anytime=anytime, trials=started, pruned=pruned)


def _replay_grid(table: CurveTable, method: Method, seed: int, slots: int, role, regret) -> Outcome:
    """The one-seed grid a practitioner runs by hand: 3 base_lr a decade apart (the table's highest, a decade and two
    below) x Caffe's seven, best value wins."""
    sign = 1.0 if table.maximize else -1.0
    best, compute, anytime = None, 0.0, []
    top = table.lrs()[-1]
    from ..prototxt.schedule import POLICIES

    for policy in [p for p in POLICIES if p in table.policies()]:
        for lr in (top, top / 10, top / 100):
            config = table.config(lr, policy)
            c = table.curve(*config, role(config, 0))
            compute += c.wall_s + c.overhead_s
            v = c.best(table.maximize)
            if v is not None and (best is None or sign * v > sign * best[0]):
                best = (v, config)
                anytime.append((compute, regret(config)))
    return outcome_of(method, seed, best[1], table, regret, compute, compute / slots, stages={"grid": compute},
                    anytime=anytime, trials=21)


def _replay_oneshot(table: CurveTable, method: Method, seed: int, slots: int, role, regret) -> Outcome:
    """lr-find's valley suggestion with poly, one full-length run: the cheapest answer a practitioner gets."""
    found = lrfind_of(table, role)
    lr = found.get("suggested") or 0.01
    chosen = table.config(lr, "poly")
    c = table.curve(*chosen, role(chosen, 0))
    compute = found["wall_s"] + c.wall_s + c.overhead_s
    return outcome_of(method, seed, chosen, table, regret, compute, compute, stages={"lr-find": found["wall_s"],
                    "final": c.wall_s + c.overhead_s}, anytime=[(compute, regret(chosen))], trials=1)


# Method.kind -> its replay (the tune's own is :func:`caffegen.tune.replay._replay_tune`)
BASELINES: dict[str, Callable[..., Outcome]] = {"search": _replay_search, "grid": _replay_grid,
                                               "oneshot": _replay_oneshot}


def repeated_grid_compute(table: CurveTable, method: Method) -> float:
    """The compute (slot-seconds) of the repeated grid over ``method``'s space, as the live plan counts it
    (:func:`caffegen.tune.budget.repeated_grid_runs` x one full-length run, the table's mean): what a tune's
    compute is a fraction of, in the plan, the bill and bench/tune alike."""
    from .budget import repeated_grid_runs

    walls = [c.wall_s for c in table.curves if c.iters == table.iters]
    return repeated_grid_runs(len(policies_of(method, table))) * sum(walls) / len(walls)
