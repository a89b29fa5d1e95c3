"""``caffegen tune``'s decisions replayed on a recorded table (:mod:`.table`), on a virtual clock: 100 seeds of a
tuner in seconds, and its baselines at equal compute the same way.

The replay is a simulator backend in the manner of AWS Syne Tune's: the **same** decision code as the live tune
(the plan of :mod:`.budget`, the range of :func:`.specs.lr_range`, the search spec of :func:`.specs.search_tables`
parsed by the sweep's own :func:`~caffegen.sweep.search.parse_search`, Optuna's sampler and the pruner from
:func:`~caffegen.sweep.search.make_sampler` / :func:`~caffegen.sweep.search.make_pruner`, the candidates, the
confirm rule and the choice of :mod:`.decide`) runs while a clock advances by each recorded test pass's seconds
with the problem's slots: trials start when a slot frees, report at each test pass, are pruned or finish, and the
search stops asking at its compute budget exactly as the live driver does (finished runs' wall seconds plus the
running ones' so far).

What the table cannot give is charged from the plan's own estimates: the measure probe (recorded once per table),
sanity (its planned worst case), each sweep's start (the pycaffe check) and the look stage. A base_lr between the
table's values is trained as the nearest one on the log scale. The seeds: a replay seed draws which recorded seed
plays the search's ``random_seed 0`` and which the confirm rounds' fresh seeds 1, 2, ... (a permutation per
configuration), so its spread is the seed noise the live tune meets.
"""
from __future__ import annotations

import random
from typing import Any

from .baselines import BASELINES
from .clock import (METHODS, Clock, Method, Outcome, config_name, lrfind_of, outcome_of, policies_of, roles_of,
                    search_on_clock, speed_of)
from .table import Config, CurveTable

__all__ = ["Method", "Outcome", "replay", "METHODS", "speed_of"]


def replay(table: CurveTable, method: Method, seed: int, *, slots: int = 2) -> Outcome:
    """One replayed run of ``method`` on ``table`` with replay seed ``seed`` (the sampler's seed, and which
    recorded seeds play which role)."""
    rng = random.Random(1_000_003 * seed + 17)
    role = roles_of(table, rng)
    (_, best_truth) = table.best_config()
    sign = 1.0 if table.maximize else -1.0

    def regret(config: Config) -> float:
        return sign * (best_truth - table.truth(*config))

    if method.kind == "tune":
        return _replay_tune(table, method, seed, slots, role, regret)
    if method.kind not in BASELINES:
        raise ValueError(f"unknown method kind {method.kind!r}")
    return BASELINES[method.kind](table, method, seed, slots, role, regret)


def _replay_tune(table: CurveTable, method: Method, seed: int, slots: int, role, regret) -> Outcome:
    from .budget import search_seconds
    from .decide import candidates, choose, longer_horizon
    from .specs import lr_within, search_tables

    speed = speed_of(table, slots)
    iters = table.iters
    plan, short, full, policies = _plan_of(table, method, speed)
    search_iters = short["solver"]["max_iter"]
    measure_s = table.meta["speed"]["wall_s"]
    stages: dict[str, float] = {"measure": measure_s}
    planned = {s.name: s.seconds for s in plan.stages}
    stages["sanity"] = planned.get("sanity", 0.0)
    found, (low, high) = _range_of(table, method, role)
    stages["lr-find"] = found["wall_s"]
    wall = sum(stages.values())
    if plan.mode == "grid":
        return _replay_repeated_grid(table, method, seed, slots, role, regret, stages, wall, (low, high), policies,
                                     speed, planned)
    if plan.mode == "scan":
        return _replay_scan(table, method, seed, slots, role, regret, stages, wall, found, policies, plan, planned)
    seconds = search_seconds(plan, speed, spent=wall, run_s=speed.run_s(search_iters, short["solver"]["test_interval"]))
    tables = search_tables(short, lr=(low, high), policies=policies, trials=plan.trials, seconds=seconds, seed=seed,
                           seed_sd=_pruner_sd(table, method, search_iters), first_rung=method.first_rung,
                           within=lr_within(low, high, found.get("blew_up_at")) if method.follow else None,
                           startup=method.startup, run_s=speed.run_s(search_iters, short["solver"]["test_interval"]))
    clock = Clock(slots)
    anytime: list[tuple[float, float]] = []
    compute0 = sum(stages.values())
    trials, started, pruned = search_on_clock(table, tables, iters=search_iters, slots=slots, role=role, truth_regret=regret,
                                      clock=clock, anytime=anytime, compute0=compute0)
    stages["search"] = clock.finished_s + clock.overhead_s + speed.sweep_s
    wall += clock.now + speed.sweep_s
    cands = longer_horizon(candidates(trials, maximize=table.maximize, k=len(trials), distinct=method.distinct),
                           k=method.candidates, factors=method.horizon)
    if not cands:
        raise RuntimeError("no search trial produced a value")
    configs = {c.name: table.config(c.point["base_lr"], c.point["lr_policy"]) for c in cands}
    # confirm: fresh seeds (roles 1, 2, ...), round by round, while the budget holds
    final_s = planned.get("final", 0.0)
    confirm_iters = iters if method.confirm_full else search_iters
    confirm_base = full if confirm_iters == iters else short
    run_s = speed.run_s(confirm_base["solver"]["max_iter"], confirm_base["solver"]["test_interval"])
    if confirm_iters == iters:     # fresh seeds at the full length: the final run is one of them (or the search's)
        final_s = 0.0
    values, alive, wall, stages["confirm"] = _replay_confirm(
        table, method, slots, role, cands, configs, confirm_iters, speed, plan, run_s, final_s, wall, started)
    if method.ladder and confirm_iters == iters and any(values[n] for n in alive):
        wall, stages["confirm"] = _replay_ladder(table, method, slots, role, cands, configs, values, alive, speed,
                                                 plan, run_s, wall, stages["confirm"], started,
                                                 lr_within(low, high, found.get("blew_up_at"))[1])
    if any(values[n] for n in alive):
        verdict = choose(values, [n for n in alive if values[n]], maximize=table.maximize)
        winner = verdict.winner
    else:      # no confirm round fitted: the search's best
        winner = cands[0].name
    chosen = configs[winner]
    anytime.append((sum(stages.values()), regret(chosen)))
    if method.final and (final_s or (not method.search_full and not any(values.values()))):
        final = table.curve(*chosen, role(chosen, 0), iters)
        stages["final"] = final.wall_s + final.overhead_s + speed.sweep_s
        wall += final.wall_s + speed.sweep_s
    stages["look"] = planned.get("look", 0.0)
    wall += stages["look"]
    compute = sum(stages.values())
    anytime.append((compute, regret(chosen)))
    return outcome_of(method, seed, chosen, table, regret, compute, wall, stages=stages, anytime=anytime,
                    trials=started, pruned=pruned)


def _plan_of(table: CurveTable, method: Method, speed) -> tuple[Any, dict, dict, list[str]]:
    """The live tune's plan for this problem at the table's speed, with the search's and the full length's tables
    (as :func:`~caffegen.tune.specs.base_tables` writes them) and the schedules searched."""
    from .budget import make_plan, parse_budget
    from .specs import TEST_PASSES_FINAL, TEST_PASSES_SEARCH, TuneNet, base_tables
    from .stages import LRFIND_ITERS, SANITY_ITERS

    iters = table.iters
    search_iters = iters if method.search_full else table.search_iters     # --search-iters N (the full length)
    common = dict(data={"train_list": "train.txt", "val_list": "val.txt"}, net=TuneNet(), classes=table.problem["classes"],
                  val_images=table.problem["val_images"], run={"backend": "local"})
    short = base_tables("search", iters=search_iters,
                        passes=TEST_PASSES_FINAL if method.search_full else TEST_PASSES_SEARCH, **common)
    full = base_tables("final", iters=iters, passes=TEST_PASSES_FINAL, **common)
    policies = policies_of(method, table)
    plan = make_plan(parse_budget(method.budget), speed, iters=iters,
                     search_iters=search_iters, test_interval=full["solver"]["test_interval"],
                     search_test_interval=short["solver"]["test_interval"], policies=len(policies),
                     sanity_iters=SANITY_ITERS, lrfind_iters=LRFIND_ITERS, final="retrain",
                     spent=table.meta["speed"]["wall_s"], confirm_full=method.confirm_full or method.search_full,
                     candidates=method.candidates, ladder=len(method.ladder) * method.ladder_top,
                     rounds=method.confirm_rounds, scan=method.scan)
    return plan, short, full, policies


def _range_of(table: CurveTable, method: Method, role) -> tuple[dict, tuple[float, float]]:
    """The lr-find stage on the table: the range test of the seed that plays it, and the search's base_lr range
    (:func:`~caffegen.tune.specs.lr_range`, centred ``between`` the valley and the steepest suggestion as a lever)."""
    from .specs import FALLBACK_RANGE, lr_range

    found = lrfind_of(table, role)
    if method.range_centre == "between" and found.get("suggested"):
        top = max([found["suggested"], *[v for v in (found.get("suggestions") or {}).values() if v]])
        found = {**found, "suggested": (found["suggested"] * top) ** 0.5}
    if not found.get("suggested"):
        return found, FALLBACK_RANGE
    return found, lr_range(found["suggested"], found.get("blew_up_at"))


def _replay_confirm(table: CurveTable, method: Method, slots: int, role, cands, configs, confirm_iters: int, speed,
                    plan, run_s: float, final_s: float, wall: float, searched: int):
    """The confirm stage on the clock: fresh seeds (roles 1, 2, ...) round by round while the budget holds (the live
    :func:`~caffegen.tune.budget.confirm_round_fits`), :func:`~caffegen.tune.decide.confirm_round` after each.
    Returns the values, the candidates alive, the wall so far and the stage's compute."""
    from .budget import confirm_round_fits
    from .decide import confirm_round

    alive = [c.name for c in cands]
    values: dict[str, dict[int, float]] = {n: {} for n in alive}
    confirm_compute = 0.0
    for r in range(1, method.confirm_rounds + 1):
        if len(alive) < 2:
            break
        curves = {n: table.curve(*configs[n], role(configs[n], r), confirm_iters) for n in alive}
        fits, _ = confirm_round_fits(speed, wall_s=plan.wall_s, spent=wall, alive=len(alive), run_s=run_s,
                                     final_s=final_s, runs_before=sum(len(v) for v in values.values()),
                                     rounds_before=r - 1, final=bool(final_s), searched=searched)
        if not fits:
            break
        wall += _round_wall(curves.values(), slots) + speed.sweep_s
        confirm_compute += sum(c.wall_s + c.overhead_s for c in curves.values()) + speed.sweep_s
        for n, c in curves.items():
            v = c.best(table.maximize)
            if v is not None:         # as the live _round_values: a run with no value records nothing
                values[n][r] = v
        alive, _ = confirm_round(values, alive, maximize=table.maximize)
    return values, alive, wall, confirm_compute


def _round_wall(curves, slots: int) -> float:
    """A round's wall: its runs in slots, longest first (what the live sweep does with equal runs)."""
    lanes = [0.0] * slots
    for c in sorted(curves, key=lambda c: -c.wall_s):
        lanes[lanes.index(min(lanes))] += c.wall_s
    return max(lanes)


def _replay_ladder(table: CurveTable, method: Method, slots: int, role, cands, configs, values, alive: list, speed,
                   plan, run_s: float, wall: float, compute: float, searched: int,
                   ceiling: float) -> tuple[float, float]:
    """A lever of the replay, not a live stage: after the confirm, the leader's schedule at higher rates
    (:func:`~caffegen.tune.decide.ladder`, none above ``ceiling``), one fresh seed each (role 1, the confirm round's),
    when it fits the budget (the live confirm's rule). Adds their values to ``values`` and their names to ``alive``;
    returns the wall so far and the stage's compute."""
    from .budget import confirm_round_fits
    from .decide import choose, ladder

    v = choose(values, [n for n in alive if values[n]], maximize=table.maximize)
    leaders = [next(c for c in cands if c.name == n) for n in [v.winner, *v.tied][:method.ladder_top]]
    if method.ladder_when == "rising":
        rates = {c.name: c.point["base_lr"] for c in cands if values.get(c.name)}
        if rates[v.winner] < max(rates.values()):
            return wall, compute
    steps = ladder(leaders, cands, method.ladder, ceiling)
    fits, _ = confirm_round_fits(speed, wall_s=plan.wall_s, spent=wall, alive=len(steps), run_s=run_s, final_s=0.0,
                                 runs_before=sum(len(v) for v in values.values()),
                                 rounds_before=method.confirm_rounds, final=False, searched=searched)
    if not steps or not fits:
        return wall, compute
    curves = {}
    for e in steps:
        configs[e.name] = table.config(e.point["base_lr"], e.point["lr_policy"])
        curves[e.name] = table.curve(*configs[e.name], role(configs[e.name], 1), table.iters)
    if curves:
        wall += _round_wall(curves.values(), slots) + speed.sweep_s
        compute += sum(c.wall_s + c.overhead_s for c in curves.values()) + speed.sweep_s
    for n, c in curves.items():
        best = c.best(table.maximize)
        values[n] = {1: best} if best is not None else {}
        alive.append(n)
    return wall, compute


def _replay_scan(table: CurveTable, method: Method, seed: int, slots: int, role, regret, stages: dict[str, float],
                 wall: float, found: dict, policies: list[str], plan, planned: dict[str, float]) -> Outcome:
    """The plan's scan mode: the scanned schedules at the scan's rates (:func:`~caffegen.tune.decide.scan_rates`
    from the range test's valley) with the search's seed (role 0), the rate their pooled values like best
    (:func:`~caffegen.tune.decide.scan_rate`), then the confirm stage (:func:`_replay_confirm`, as live) on the
    plan's schedules at that rate with fresh seeds, the best winning."""
    from .budget import round_that_fits
    from .decide import SearchOutcome, choose, scan_best, scan_candidates, scan_points, scan_rate

    speed = speed_of(table, slots)
    points = scan_points(found.get("suggested"), found.get("blew_up_at"), policies)
    curves = {k: table.curve(*table.config(*k), role(table.config(*k), 0)) for k in points}
    wall += _round_wall(curves.values(), slots) + speed.sweep_s
    stages["search"] = sum(c.wall_s + c.overhead_s for c in curves.values()) + speed.sweep_s
    scanned_values = {k: c.best(table.maximize) for k, c in curves.items()}
    rate = scan_rate(scanned_values, maximize=table.maximize)
    run_s = speed.run_s(table.iters, plan.test_interval)
    k = round_that_fits(speed, wall_s=plan.wall_s, spent=wall, want=len(policies), planned=plan.at_rate, run_s=run_s,
                        searched=len(points))
    cands = [SearchOutcome(n, point, None) for n, point in scan_candidates(rate, policies, k)]
    configs = {c.name: table.config(rate, c.point["lr_policy"]) for c in cands}
    values, alive, wall, stages["confirm"] = _replay_confirm(table, method, slots, role, cands, configs, table.iters,
                                                             speed, plan, run_s, 0.0, wall, len(points))
    if any(values[n] for n in alive):
        chosen = configs[choose(values, [n for n in alive if values[n]], maximize=table.maximize).winner]
    else:     # no confirm round fitted: the scan's best run at its rate
        chosen = table.config(*scan_best(scanned_values, rate, maximize=table.maximize))
    stages["look"] = planned.get("look", 0.0)
    wall += stages["look"]
    compute = sum(stages.values())
    return outcome_of(method, seed, chosen, table, regret, compute, wall, stages=stages,
                      anytime=[(compute - stages["look"], regret(chosen)), (compute, regret(chosen))],
                      trials=len(points) + sum(len(v) for v in values.values()))


def _replay_repeated_grid(table: CurveTable, method: Method, seed: int, slots: int, role, regret, stages, wall,
                          lr: tuple[float, float], policies: list[str], speed, planned) -> Outcome:
    """The plan's grid mode: the repeated grid over lr-find's range, judged by the confirm rule."""
    from .budget import GRID_REPEATS, grid_lrs
    from .decide import choose, confirm_round

    points = [(x, p) for x in grid_lrs(*lr) for p in policies]       # every one trains, and is paid for
    values: dict[str, dict[int, float]] = {}
    compute = 0.0
    for x, p in points:
        config = table.config(x, p)
        for r in range(GRID_REPEATS):
            c = table.curve(*config, role(config, r))
            compute += c.wall_s + c.overhead_s
            v = c.best(table.maximize)
            if v is not None:         # as the live _grid_verdict: a run with no value is left out
                values.setdefault(config_name(config), {})[r] = v
    configs = {config_name(table.config(x, p)): table.config(x, p) for x, p in points}
    alive, _ = confirm_round(values, list(values), maximize=table.maximize)
    chosen = configs[choose(values, alive, maximize=table.maximize).winner]
    stages["search"] = compute + speed.sweep_s
    stages["look"] = planned.get("look", 0.0)
    total = sum(stages.values())
    return outcome_of(method, seed, chosen, table, regret, total, wall + compute / slots + stages["look"],
                    stages=stages, anytime=[(total, regret(chosen))], trials=len(points) * GRID_REPEATS)


def _pruner_sd(table: CurveTable, method: Method, iters: int) -> float | None:
    """The seed noise the search's pruner is given: the live tune's prior (``prior``), none, or the table's own
    (``table``: what a tune that knew the seed noise would do)."""
    from .specs import prior_seed_sd

    if method.seed_sd == "none":
        return None
    if method.seed_sd == "table":
        return round(table.seed_sd(iters), 4)
    return prior_seed_sd(table.problem["val_images"])
