"""The plan first, the bill last: ``--budget`` parsed, the compute of each stage estimated from this net's measured
speed on this hardware, the number of trials chosen to fit, and the repeated grid's cost beside it. Pure functions.

Costs are in wall-clock seconds on this machine. One run of ``iters`` iterations with a test pass every
``test_interval`` costs ``start + iters * iter_s + passes * test_s`` in one slot; ``slots`` runs go at once
(``[run] jobs``, or one per GPU). A budget in runs (``40runs``) is that many full-length runs' worth of slot time.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InputError

__all__ = ["CONFIRM_FULL", "DEFAULT_BUDGET", "SCAN", "SCAN_AT_RATE_MIN", "DISTINCT_CANDIDATES", "SEARCH_FIRST_RUNG",
           "Budget", "parse_budget", "Speed", "Stage", "Plan", "make_plan", "CONFIRM_CANDIDATES", "SEARCH_TRIALS_MIN",
           "duration", "search_seconds", "repeated_grid_runs", "GRID_LRS", "GRID_REPEATS",
           "grid_lrs", "confirm_round_fits", "round_that_fits"]

# The split the replay chose (bench/tune --levers on the recorded tables, docs/BENCHMARKS.md): the search-length
# ranking is biased (textures: Spearman 0.58 between a third of the run and the whole), so the search's best 4 are
# run again at the full length, one fresh seed each, and the best of those full-length runs wins (2 candidates at
# the search's length: P(regret <= 1 sd) 0.46 on textures; 4 at the full length: 0.92).
CONFIRM_CANDIDATES = 4      # the search's best runs that the confirm stage runs again
CONFIRM_ROUNDS = 1          # fresh seeds for them (each a round: a verdict between rounds may end it early)
DEFAULT_BUDGET = "10%"      # of the repeated grid's compute, everything counted: the product's promise
DISTINCT_CANDIDATES = True  # the confirm compares different answers: near rates of one schedule count as one (replay)
CONFIRM_FULL = True         # the rounds at the full length (the winner's runs then are the final ones); chosen by
                            # bench/tune's replay
SEARCH_FIRST_RUNG = 1 / 3   # the search's pruner judges a run from a third of its length on (a ninth in, with the
                            # short confirm of before, the cuts removed the best configurations; with 4 full-length
                            # candidates behind the search, a ninth, a third and half score alike: bench/tune levers)
SCAN = True                 # the plan's "scan" mode where it fits: the rate scanned at the full length, then the
                            # schedules at that rate (caffegen.tune.decide.scan_rates); chosen by bench/tune's replay
SCAN_AT_RATE_MIN = 4        # ... when the budget has room for at least this many schedules at the scan's rate
SEARCH_TRIALS_MIN = 6       # a search of fewer trials is refused: too few to model anything
SEARCH_TRIALS_MAX = 200
GRID_LRS = 5                # the repeated grid a tune is measured against: base_lr a half-decade apart over the
GRID_REPEATS = 3            # search's two decades x every schedule x 3 seeds, at the full length


def repeated_grid_runs(policies: int) -> int:
    """The runs of the repeated grid over a tune's space (what its compute is a fraction of, in the plan, the bill
    and bench/tune alike)."""
    return GRID_LRS * policies * GRID_REPEATS


@dataclass(frozen=True)
class Budget:
    """``--budget``: wall-clock seconds (``2h``, ``90m``, ``45s``), full-length runs of compute (``40runs``), or a
    share of the repeated grid's compute, everything counted (``10%``: the default, the product's promise)."""

    text: str
    seconds: float | None = None
    runs: float | None = None
    fraction: float | None = None


_UNITS = {"h": 3600, "hr": 3600, "hour": 3600, "hours": 3600, "m": 60, "min": 60, "mins": 60, "minute": 60,
          "minutes": 60, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1}


def parse_budget(text: str) -> Budget:
    """``2h``, ``1h30m``, ``90m``, ``600s``, ``40runs`` (or ``40 runs``), ``10%``; one InputError line otherwise."""
    raw = str(text).strip().lower().replace(" ", "")
    m = re.fullmatch(r"(\d+(?:\.\d+)?)%", raw)
    if m:
        pct = float(m.group(1))
        if not 0 < pct <= 100:
            raise InputError(f"--budget {text!r}: a share of the repeated grid's compute is above 0% and at most "
                             "100% (a budget the whole grid fits: give it in time or runs)")
        return Budget(str(text), fraction=pct / 100)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)runs?", raw)
    if m:
        runs = float(m.group(1))
        if runs <= 0:
            raise InputError(f"--budget {text!r}: a budget of 0 runs trains nothing")
        return Budget(str(text), runs=runs)
    parts = re.findall(r"(\d+(?:\.\d+)?)([a-z]+)", raw)
    if not parts or "".join(a + b for a, b in parts) != raw or any(u not in _UNITS for _, u in parts):
        raise InputError(f"--budget {text!r}: give a share of the repeated grid (10%), a time (2h, 90m, 1h30m, 600s) "
                         "or a number of full-length runs (40runs)")
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise InputError(f"--budget {text!r}: a budget of 0 s trains nothing")
    return Budget(str(text), seconds=seconds)


def duration(seconds: float) -> str:
    """``1h02m``, ``4m05s``, ``12s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


@dataclass(frozen=True)
class Speed:
    """This net on this hardware, measured by a short real run (``caffegen.probes.timing``)."""

    iter_s: float        # one training iteration
    test_s: float        # one test pass
    start_s: float       # a caffe's start until its first iteration (net setup, data layers)
    slots: int           # runs at once
    check_s: float = 0.0     # the net built once by pycaffe: what a sweep does before its first run (and evaluate)
    figure_s: float = 0.0    # one run's curves drawn: what a report costs per run

    @property
    def sweep_s(self) -> float:
        """A sweep's own cost beside its runs: its start (the net checked) and its end (the store, a report)."""
        return self.check_s + 1.0

    def look_s(self, runs: int, sweeps: int, search_runs: int = 0) -> float:
        """The look stage: every sweep's report (a few figures of its own, one per run but the search's), one
        evaluation (the net built and a test pass), the TensorBoard logs (all runs)."""
        return ((runs + 6 * sweeps) * self.figure_s + self.check_s + 2 * self.test_s
                + 0.1 * (runs + search_runs) * (1 + self.figure_s))

    def run_s(self, iters: int, test_interval: int) -> float:
        """One run of ``iters`` iterations in one slot: its start, its iterations, its test passes (the one at
        iteration 0 included)."""
        return self.start_s + iters * self.iter_s + (iters // max(1, test_interval) + 1) * self.test_s


@dataclass
class Stage:
    name: str
    what: str
    seconds: float                      # wall-clock estimate (planned) or spent (billed)
    runs: float = 0.0                   # full-length-run equivalents of slot time
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """Each stage with its estimated wall time, and the repeated grid over the same space beside them."""

    budget: Budget
    wall_s: float                        # the budget as wall-clock seconds on this machine
    speed: Speed
    stages: list[Stage]
    grid_s: float                        # the repeated grid (repeated_grid_runs), wall on these slots
    grid_runs: int
    trials: int                          # the study's cap: twice what fits unpruned (its compute budget binds first)
    search_iters: int
    iters: int
    test_interval: int
    search_seconds: float                # the search stage's compute budget ([search] seconds), slot-seconds
    mode: str = "search"                 # "grid": the repeated grid fits the budget and is run instead of a search;
                                         # "scan": the rate scanned at the full length, then the schedules at it
    at_rate: int = 0                     # scan: the schedules the confirm stage trains at the scan's rate
    confirm_full: bool = False           # the confirm stage's fresh seeds at the full length (no final run)

    @property
    def total_s(self) -> float:
        return sum(s.seconds for s in self.stages)

    @property
    def compute_runs(self) -> float:
        """Everything the tune occupies, in full-length runs of slot time (the probes, every sweep's runs and its
        own start, the final run, the look)."""
        return sum(s.runs for s in self.stages)

    @property
    def of_grid(self) -> float:
        """The tune's compute as a fraction of the repeated grid's (what bench/tune reports)."""
        return self.compute_runs / self.grid_runs

    def lines(self) -> list[str]:
        share = " of the repeated grid's compute" if self.budget.fraction is not None else ""
        out = [f"[tune] plan for a budget of {self.budget.text}{share} ({duration(self.wall_s)} here at "
               f"{self.speed.iter_s * 1000:.1f} ms/iteration, {self.speed.test_s:.2f} s/test pass, "
               f"{self.speed.slots} runs at once):"]
        for i, s in enumerate(self.stages, 1):
            out.append(f"  {i}. {s.name:<8} {duration(s.seconds):>7}  {s.what}")
        out.append(f"  total   {duration(self.total_s):>7}  wall; compute, everything counted: "
                   f"{self.compute_runs:.1f} full-length runs = {100 * self.of_grid:.1f}% of the repeated grid over "
                   f"the same space ({self.grid_runs} runs of {self.iters} iterations: {GRID_LRS} base_lr x "
                   f"{self.grid_runs // (GRID_LRS * GRID_REPEATS)} schedules x {GRID_REPEATS} seeds, "
                   f"{duration(self.grid_s)} here)")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"budget": asdict(self.budget), "wall_s": self.wall_s, "speed": asdict(self.speed),
                "stages": [asdict(s) for s in self.stages], "grid_s": self.grid_s, "grid_runs": self.grid_runs,
                "trials": self.trials, "search_iters": self.search_iters, "iters": self.iters,
                "test_interval": self.test_interval, "search_seconds": self.search_seconds, "mode": self.mode,
                "confirm_full": self.confirm_full, "at_rate": self.at_rate}


def make_plan(budget: Budget, speed: Speed, *, iters: int, search_iters: int, test_interval: int,
              search_test_interval: int, policies: int, sanity_iters: int, lrfind_iters: int, final: str,
              skip_sanity: bool = False, spent: float = 0.0, confirm_full: bool = CONFIRM_FULL,
              candidates: int = CONFIRM_CANDIDATES, rounds: int = CONFIRM_ROUNDS, ladder: int = 0,
              scan: bool = SCAN) -> Plan:
    """Split ``budget`` over the stages. Fixed costs first (sanity at its worst, the range test, the final run when
    the confirm stage does not train at the full length); then the confirm stage (``candidates`` x ``rounds`` runs:
    of the full length with ``confirm_full``, the default, so the winner needs no final run; else of
    ``search_iters``), and ``ladder`` full-length runs after it (a lever of the replay: the leader at higher
    rates, :func:`caffegen.tune.decide.ladder`); the search gets the rest (with ``scan``: the rate scan instead
    where it fits, :func:`_scan_plan`; the repeated grid where that fits), as a compute budget for its study and a
    number of trials (unpruned: a pruned trial only gives time back). ``spent``: what the budget already paid (the
    measure stage). A budget too small for sanity, lr-find, a minimal search and one full-length run is refused (one
    line)."""
    full = speed.run_s(iters, test_interval)
    short = speed.run_s(search_iters, search_test_interval)
    sanity = 0.0 if skip_sanity else speed.start_s + sanity_iters * speed.iter_s
    lrfind = speed.start_s + lrfind_iters * speed.iter_s
    grid_runs = repeated_grid_runs(policies)
    grid_s = math.ceil(grid_runs / speed.slots) * full
    single = spent + sanity + lrfind + (0.0 if confirm_full or final == "none" else full + speed.sweep_s) + \
        speed.look_s(candidates * rounds + 1, 4, SEARCH_TRIALS_MIN)
    total = _wall_of(budget, speed, full, grid_runs, single)
    wall = total - spent
    measured = _probe_stages(spent, sanity, lrfind, full, sanity_iters=sanity_iters, lrfind_iters=lrfind_iters,
                             skip_sanity=skip_sanity)
    whole = (budget, total, speed, measured, grid_s, grid_runs, policies, iters, test_interval)
    if sanity + lrfind + grid_s + speed.sweep_s + speed.look_s(grid_runs, 1) <= wall:
        return _grid_plan(*whole)     # no search can beat the repeated grid's power for that compute: run it
    if scan and (plan := _scan_plan(*whole, wall=wall, probes=sanity + lrfind)) is not None:
        return plan
    final = "none" if confirm_full else final
    final_s = full + speed.sweep_s if final != "none" else 0.0
    ladder = ladder if confirm_full and candidates > 1 else 0
    confirm_runs = candidates * rounds + ladder
    confirm = _confirm_wall(speed, candidates, rounds, full if confirm_full else short, ladder, full)
    search_min = math.ceil(SEARCH_TRIALS_MIN / speed.slots) * short + speed.sweep_s
    sweeps = 1 + rounds + (final != "none") + bool(ladder)
    look = speed.look_s(confirm_runs + 1, sweeps, SEARCH_TRIALS_MIN)
    minimum = sanity + lrfind + final_s + search_min + look + (full + speed.sweep_s if confirm_full else 0.0)
    if wall < minimum:
        need = duration(minimum + spent)
        runs = (minimum + spent) * speed.slots / full
        raise InputError(f"--budget {budget.text} is {duration(total)} here, too small for sanity, lr-find, a search of "
                         f"{SEARCH_TRIALS_MIN} trials and the final run: give at least {need} "
                         f"(--budget {math.ceil(runs)}runs)")
    # the search gets the rest; the look's cost grows with the trials (a figure each): solve for both
    rest = wall - sanity - lrfind - final_s - confirm - speed.sweep_s - speed.look_s(confirm_runs + 1, sweeps)
    per_trial = short / speed.slots + speed.look_s(0, 0, 1) - speed.look_s(0, 0)
    trials = int(rest // per_trial) if rest > 0 else 0
    if trials < SEARCH_TRIALS_MIN:   # a small budget: the confirm stage gets less
        trials = SEARCH_TRIALS_MIN
        confirm = max(0.0, wall - sanity - lrfind - final_s - search_min - speed.look_s(confirm_runs + 1, sweeps,
                                                                                         trials))
    # never more trials than the repeated grid has configurations: budget left over is not spent on hundreds of
    # tiny trials (whose driver overhead the runs' seconds do not count)
    cap = min(SEARCH_TRIALS_MAX, max(SEARCH_TRIALS_MIN, GRID_LRS * policies))
    trials = min(cap, trials)
    search = math.ceil(trials / speed.slots) * short + speed.sweep_s
    look = speed.look_s(confirm_runs + 1, sweeps, trials)
    # the study stops asking at its compute budget; the runs still going then finish: keep half a round back
    search_seconds = max(short, (search - speed.sweep_s) * speed.slots - speed.slots * short * 0.5)
    stages = measured + [
        Stage("search", f"TPE + noise-aware pruning: {trials} trials of {search_iters} iterations' worth (more when "
                        "some are pruned)", search, search * speed.slots / full, {"trials": trials}),
        Stage("confirm", f"the best {candidates} run again with up to {rounds} fresh seed{'s' * (rounds > 1)}"
                         + (f" at the full length ({iters} iterations: the winner's runs are the final ones)"
                            if confirm_full else "")
                         + (f", then {ladder} run{'s' * (ladder > 1)} of the leader at higher rates" if ladder else ""),
              confirm, confirm * speed.slots / full),
    ]
    if final != "none":
        stages.append(Stage("final", f"the winner {'retrained' if final == 'retrain' else 'extended'} to "
                                     f"{iters} iterations", final_s, final_s / full))
    stages.append(Stage("look", "evaluate per class, every stage's report, TensorBoard", look, look / full))
    return Plan(budget, total, speed, stages, grid_s, grid_runs, min(cap, 2 * trials), search_iters,
                iters, test_interval, search_seconds, confirm_full=confirm_full)


def _probe_stages(spent: float, sanity: float, lrfind: float, full: float, *, sanity_iters: int, lrfind_iters: int,
                  skip_sanity: bool) -> list[Stage]:
    """The stages before the search: the measure stage (already paid), sanity at its worst, the range test."""
    out = [Stage("measure", "this net timed here (done)", spent, spent / full)] if spent else []
    if not skip_sanity:
        out.append(Stage("sanity", f"overfit a tiny subset (at most {sanity_iters} iterations)", sanity, sanity / full))
    out.append(Stage("lr-find", f"LR range test, {lrfind_iters} iterations", lrfind, lrfind / full))
    return out


def _confirm_wall(speed: Speed, candidates: int, rounds: int, run_s: float, ladder: int, full: float) -> float:
    """The confirm stage's wall: ``rounds`` of the ``candidates`` (runs of ``run_s``) in the slots, each a sweep,
    and the ``ladder``'s full-length runs in one more; nothing to confirm with a single candidate."""
    confirm = rounds * (math.ceil(candidates / speed.slots) * run_s + speed.sweep_s) if candidates > 1 else 0.0
    return confirm + (math.ceil(ladder / speed.slots) * full + speed.sweep_s if ladder else 0.0)


def _wall_of(budget: Budget, speed: Speed, full: float, grid_runs: int, single: float) -> float:
    """The whole command's wall seconds a budget allows. A share of the repeated grid's compute, everything
    counted: the stages that hold one slot (``single``: the probes, the final run, the look) cost their wall once,
    the search's and the confirm's their wall on every slot."""
    if budget.fraction is not None:
        return single + max(0.0, budget.fraction * grid_runs * full - single) / speed.slots
    return budget.seconds if budget.seconds is not None else budget.runs * full / speed.slots


def _grid_plan(budget: Budget, total: float, speed: Speed, measured: list[Stage], grid_s: float, grid_runs: int,
               policies: int, iters: int, test_interval: int) -> Plan:
    """The plan when the repeated grid fits the budget: that grid (every schedule, every rate a half-decade apart, 3
    seeds each, at the full length), judged by its own repeats, and nothing shorter."""
    full = speed.run_s(iters, test_interval)
    grid_wall = grid_s + speed.sweep_s
    grid_look = speed.look_s(grid_runs, 1)
    stages = measured + [
        Stage("search", f"the repeated grid fits the budget, so it runs instead of a search: {GRID_LRS} base_lr "
                        f"x {policies} schedules x {GRID_REPEATS} seeds at the full length ({grid_runs} runs)",
              grid_wall, (grid_s * speed.slots + speed.sweep_s) / full, {"trials": grid_runs}),
        Stage("confirm", "the grid's own repeats: Hsu's comparisons with the best on its seed noise", 0.0, 0.0),
        Stage("look", "evaluate per class, every stage's report, TensorBoard", grid_look, grid_look / full)]
    return Plan(budget, total, speed, stages, grid_s, grid_runs, grid_runs, iters, iters, test_interval, 0.0,
                mode="grid")


def _scan_plan(budget: Budget, total: float, speed: Speed, measured: list[Stage], grid_s: float, grid_runs: int,
               policies: int, iters: int, test_interval: int, *, wall: float, probes: float) -> Plan | None:
    """The plan of the rate scan (:func:`caffegen.tune.decide.scan_rates`) when the budget has room for it and for
    :data:`SCAN_AT_RATE_MIN` schedules at its rate with a fresh seed (None: it has not; the search then runs): as
    many schedules there as fit, every run at the full length (the winner's is the final one)."""
    from .decide import SCAN_SCHEDULES, SCAN_STEPS

    full = speed.run_s(iters, test_interval)
    scan_runs = SCAN_STEPS * min(len(SCAN_SCHEDULES), policies)
    scan_wall = math.ceil(scan_runs / speed.slots) * full + speed.sweep_s

    def confirm_wall(n: int) -> float:
        return math.ceil(n / speed.slots) * full + speed.sweep_s

    def look(n: int) -> float:
        return speed.look_s(scan_runs + n, 2)

    need = min(SCAN_AT_RATE_MIN, policies)
    at_rate = next((n for n in range(policies, need - 1, -1) if probes + scan_wall + confirm_wall(n) + look(n) <= wall),
                   0)
    if policies < 2 or at_rate < need:
        return None
    stages = measured + [
        Stage("search", f"the rate scan: {SCAN_STEPS} base_lr a half-decade apart up from the range test's valley x "
                        f"{' and '.join(SCAN_SCHEDULES)} (or the space's first two), at the full length ({scan_runs} "
                        f"runs of {iters} iterations)", scan_wall, (scan_runs * full + speed.sweep_s) / full,
              {"trials": scan_runs}),
        Stage("confirm", f"{at_rate} schedules at the scan's best rate with a fresh seed, at the full length (the best "
                         "wins; its run is the final one)", confirm_wall(at_rate),
              (at_rate * full + speed.sweep_s) / full),
        Stage("look", "evaluate per class, every stage's report, TensorBoard", look(at_rate), look(at_rate) / full)]
    return Plan(budget, total, speed, stages, grid_s, grid_runs, scan_runs, iters, iters, test_interval, 0.0,
                mode="scan", confirm_full=True, at_rate=at_rate)


def confirm_round_fits(speed: Speed, *, wall_s: float, spent: float, alive: int, run_s: float, final_s: float,
                       runs_before: int, rounds_before: int, final: bool, searched: int,
                       slack: float = 1.05) -> tuple[bool, float]:
    """Whether one more confirm round of ``alive`` candidates fits the budget's wall ``wall_s`` (within ``slack``:
    5%) after ``spent``, keeping the final run and the look in reserve; and the round's estimated wall."""
    cost = math.ceil(alive / speed.slots) * run_s + speed.sweep_s
    reserve = final_s + speed.look_s(runs_before + alive + 1, 2 + rounds_before + final, searched)
    return spent + cost + reserve <= slack * wall_s, cost


def round_that_fits(speed: Speed, *, wall_s: float, spent: float, want: int, planned: int, run_s: float,
                    searched: int) -> int:
    """How many of ``want`` candidates one confirm round of runs of ``run_s`` trains, sized again when it starts
    from what the stages before it really took (the scan's confirm): up to the plan's ``planned`` within the
    budget's 5%, more only when they fit it outright (a machine faster than measured), fewer rather than overrun
    (a slower one); 0 when not even two fit (nothing to compare)."""
    for n in range(want, 1, -1):
        if confirm_round_fits(speed, wall_s=wall_s, spent=spent, alive=n, run_s=run_s, final_s=0.0, runs_before=0,
                              rounds_before=0, final=False, searched=searched, slack=1.05 if n <= planned else 1.0)[0]:
            return n
    return 0


def grid_lrs(low: float, high: float) -> list[float]:
    """The repeated grid's base_lr values: a half-decade apart from ``low``, at most ``GRID_LRS``, none above
    ``high`` (3 significant digits)."""
    return [float(f"{low * 10 ** (k / 2):.3g}") for k in range(GRID_LRS) if low * 10 ** (k / 2) <= high * 1.0001]


def search_seconds(plan: Plan, speed: Speed, *, spent: float, run_s: float) -> float:
    """The search's compute budget (slot-seconds) when it starts: the plan's, less what the stages before it
    overran (``spent``: their wall seconds; a machine slower than measured, a busier one), never below one search
    run (``run_s``)."""
    planned = {s.name: s.seconds for s in plan.stages}
    before = sum(planned.get(n, 0.0) for n in ("measure", "sanity", "lr-find"))
    overrun = max(0.0, spent - before)
    return round(max(run_s, plan.search_seconds - overrun * speed.slots), 1)
