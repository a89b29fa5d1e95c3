"""What a replay is made of (:mod:`.replay` replays the tune on it, :mod:`.baselines` the baselines): the methods,
their outcomes, the table's speed, the virtual clock with the problem's slots, which recorded seed plays which
role, and one Optuna search (the sweep's own parser, sampler and pruner) run on that clock."""
from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from .budget import (CONFIRM_CANDIDATES, CONFIRM_FULL, CONFIRM_ROUNDS, DEFAULT_BUDGET, DISTINCT_CANDIDATES, SCAN,
                     SEARCH_FIRST_RUNG)
from .table import Config, Curve, CurveTable

__all__ = ["Method", "Outcome", "METHODS", "speed_of", "Clock", "roles_of", "search_on_clock", "policies_of",
           "outcome_of", "lrfind_of", "config_name"]


@dataclass(frozen=True)
class Method:
    """A tuner to replay. ``kind``: ``tune`` (caffegen tune's stages), ``search`` (one Optuna search of full-length
    runs: random search, TPE + ASHA / Hyperband; its best value wins), ``grid`` (3 base_lr a decade apart x Caffe's
    seven, one seed, best value wins) or ``oneshot`` (lr-find's suggestion with poly, one full run)."""

    name: str
    kind: str = "tune"
    sampler: str = "tpe"
    pruner: str = "noise"
    chains: bool = True               # the tune's space (Caffe's seven and the chained linear, cosine, onecycle);
                                      # False: Caffe's seven only
    seed_sd: str = "prior"            # the noise pruner's seed sd: "prior" (the live tune's), "none", "table"
    candidates: int = CONFIRM_CANDIDATES   # tune: the search's best run again in the confirm stage
    confirm_rounds: int = CONFIRM_ROUNDS   # tune: fresh seeds per candidate
    confirm_full: bool = CONFIRM_FULL  # tune: confirm at the full length (else at the search's), no final run
    distinct: bool = DISTINCT_CANDIDATES   # tune: near rates of one schedule are one candidate
    first_rung: float | None = SEARCH_FIRST_RUNG  # tune: the search's pruner judges runs from this share of them
                                                  # on (None: the noise pruner's default rungs)
    startup: int | None = None        # tune: TPE's random trials before its model (None: the tune's rule)
    horizon: tuple[float, ...] = ()   # tune: the best at these x its rate take the confirm's last places
                                      # (decide.longer_horizon)
    range_centre: str = "valley"      # tune: the range test's valley centres the range (live), or "between" it and
                                      # the steepest suggestion (their geometric mean): a lever of the replay
    follow: bool = True               # tune: the search's base_lr range follows its best trials (caffegen.sweep.ranges)
    search_full: bool = False         # tune: search (12 passes) and confirm at the full length, pruned; a lever
                                      # of the replay, not (yet) a live option
    ladder: tuple[float, ...] = ()    # tune: after the confirm, the leader's schedule at these x its rate, one fresh
                                      # seed each at the full length (decide.ladder): the short-horizon bias; a
                                      # lever of the replay, not a live option (it lost on textures and digits)
    ladder_top: int = 1               # tune: the ladder above this many of the confirm's best
    ladder_when: str = "always"       # tune: "rising": only when the confirm's leader has the highest rate tried
    scan: bool = SCAN                 # tune: the plan's scan mode where it fits (else the search of short runs)
    final: bool = True                # tune: the winner retrained at the full length
    budget: str = DEFAULT_BUDGET      # tune: --budget, as the command reads it
    compute: float | None = None      # search: the compute budget in slot-seconds (None: set to match the tune's)


METHODS = (                  # every search over the tune's space at the tune's compute, but the hand-made ones
    Method("caffegen tune"),
    Method("tune --strategy search", scan=False),
    Method("tune, Caffe's seven only", chains=False),
    Method("random search", kind="search", sampler="random", pruner="none"),
    Method("random search, Caffe's seven", kind="search", sampler="random", pruner="none", chains=False),
    Method("TPE + ASHA", kind="search", sampler="tpe", pruner="asha"),
    Method("TPE + Hyperband", kind="search", sampler="tpe", pruner="hyperband"),
    Method("one-seed grid", kind="grid"),
    Method("lr-find + poly", kind="oneshot"),
)


@dataclass
class Outcome:
    """One replayed tune: what it chose, that choice's truth and regret, its compute (slot-seconds, everything
    counted) and its wall time, per stage, and the incumbent's regret as compute grew (the anytime curve)."""

    method: str
    seed: int
    chosen: Config
    truth: float
    regret: float
    compute_s: float
    wall_s: float
    stages: dict[str, float] = field(default_factory=dict)
    anytime: list[tuple[float, float]] = field(default_factory=list)    # (compute so far, regret of the incumbent)
    trials: int = 0
    pruned: int = 0


@dataclass(frozen=True)
class _Speed:
    iter_s: float
    test_s: float
    start_s: float
    check_s: float
    figure_s: float


def speed_of(table: CurveTable, slots: int):
    """The :class:`~caffegen.tune.budget.Speed` the live tune would plan with on this problem: the measure probe
    recorded with the table, scaled to the speed its runs went at (a live tune measures its speed on the machine
    its runs then use; a table recorded beside other work ran slower than its quiet probe, and a plan made from the
    probe would buy fewer runs in the replay than it buys live)."""
    from .budget import Speed

    m = table.meta["speed"]
    probe = Speed(m["iter_s"], m["test_s"], m["start_s"], slots, m.get("check_s", 0.0), m.get("figure_s", 0.0))
    # every full-length run: a diverged one (its wall cut short) pulls the ratio down, a chained one (a caffe start
    # per segment) pushes it up; over Caffe's own undiverged runs alone textures' ratio is 1.52 against 1.45
    full = [c for c in table.curves if c.iters == table.iters]
    predicted = sum(probe.start_s + c.iters * probe.iter_s + len(c.steps) * probe.test_s for c in full)
    k = sum(c.wall_s for c in full) / predicted if predicted > 0 else 1.0
    return Speed(probe.iter_s * k, probe.test_s * k, probe.start_s * k, slots, probe.check_s, probe.figure_s)


class Clock:
    """Runs on a virtual clock with ``slots``: each started run is a recorded curve; events are its test passes."""

    def __init__(self, slots: int, t0: float = 0.0):
        self.slots, self.now = slots, t0
        self.events: list[tuple[float, int, int]] = []   # (time, tie-break, run id)
        self.runs: dict[int, dict[str, Any]] = {}
        self.finished_s = 0.0          # wall seconds of runs that ended
        self.overhead_s = 0.0          # the driver's own work per run started (measured, recorded with each run)
        self._n = 0

    def free(self) -> int:
        return self.slots - len(self.runs)

    def start(self, curve: Curve, upto: int | None, payload: Any) -> int:
        rid = self._n
        self._n += 1
        passes = [i for i, s in enumerate(curve.steps) if s > 0 and (upto is None or s <= upto)]
        self.runs[rid] = {"curve": curve, "start": self.now, "passes": passes, "k": 0, "payload": payload}
        self.overhead_s += curve.overhead_s
        self._next(rid)
        return rid

    def _next(self, rid: int) -> None:
        r = self.runs[rid]
        if r["k"] < len(r["passes"]):
            t = r["start"] + r["curve"].times[r["passes"][r["k"]]]
        else:
            t = r["start"] + r["curve"].wall_s
        heapq.heappush(self.events, (t, self._n, rid))
        self._n += 1

    def spent(self) -> float:
        """What the live driver's budget counts: finished runs' wall, running ones' elapsed."""
        return self.finished_s + sum(self.now - r["start"] for r in self.runs.values())

    def step(self) -> tuple[str, int, dict[str, Any], int | None]:
        """The next event: ("pass", rid, run, pass index) or ("end", rid, run, None)."""
        t, _, rid = heapq.heappop(self.events)
        self.now = max(self.now, t)
        r = self.runs[rid]
        if r["k"] < len(r["passes"]):
            i = r["passes"][r["k"]]
            r["k"] += 1
            self._next(rid)
            return "pass", rid, r, i
        self.end(rid)
        return "end", rid, r, None

    def end(self, rid: int) -> None:
        r = self.runs.pop(rid)
        self.finished_s += self.now - r["start"]
        self.events = [e for e in self.events if e[2] != rid]
        heapq.heapify(self.events)


def roles_of(table: CurveTable, rng: random.Random) -> Callable[[Config, int], int]:
    """Which recorded seed plays role r (0: the search's, 1..: the confirm's fresh ones) for a configuration."""
    seeds = table.seeds()
    perms: dict[Config, list[int]] = {}

    def seed(config: Config, role: int) -> int:
        if config not in perms:
            p = list(seeds)
            rng.shuffle(p)
            perms[config] = p
        return perms[config][role % len(seeds)]

    return seed


def _decay_left(iters: int, test_interval: int):
    """decay_left(params, it) as the live planner computes it, from the solver the options build."""
    from ..prototxt.options import SolverOptions

    cache: dict[tuple[float, str], Any] = {}

    def decay(params: dict[str, Any], it: int) -> float:
        key = (float(params["base_lr"]), str(params["lr_policy"]))
        if key not in cache:
            cache[key] = SolverOptions(base_lr=key[0], lr_policy=key[1], max_iter=iters, test_interval=test_interval)
        return cache[key].decay_left(it)

    return decay


def config_name(params: dict[str, Any] | Config) -> str:
    """A trial's name as the live tune names its candidates (its sampled rate: two rates that the table reads as one
    configuration stay two candidates, as they are live), or a table configuration's."""
    from ..prototxt.options import variant_name

    if isinstance(params, tuple):
        params = {"base_lr": params[0], "lr_policy": params[1]}
    return variant_name({"base_lr": params["base_lr"], "lr_policy": params["lr_policy"]})


def search_on_clock(table: CurveTable, tables: dict[str, Any], *, iters: int, slots: int, role: Callable[[Config, int], int],
            truth_regret: Callable[[Config], float], clock: Clock, anytime: list,
            compute0: float) -> tuple[list, int, int]:
    """One search (``tables``' [search], parsed by the sweep's own parser) replayed on ``clock``: its trials as
    :class:`~caffegen.tune.decide.SearchOutcome`, how many started and how many were pruned."""
    from ..sweep.ranges import followed_distributions
    from ..sweep.strategies import RunShape, make_pruner, make_sampler, optuna_or_error
    from .decide import SearchOutcome

    optuna = optuna_or_error()
    spec = _parsed(tables)
    interval = tables["solver"]["test_interval"]
    shape = RunShape(max_iter=iters, test_interval=interval, test_images=table.problem["val_images"],
                     decay_left=_decay_left(iters, interval))
    maximize = table.maximize
    study = optuna.create_study(sampler=make_sampler(spec), pruner=make_pruner(spec, interval, maximize, shape),
                                direction="maximize" if maximize else "minimize")
    out: list[SearchOutcome] = []
    started = pruned = 0
    sign = 1.0 if maximize else -1.0
    best: tuple[float, Config] | None = None

    def asking() -> bool:
        return started < (spec.trials or 0) and (spec.seconds is None or clock.spent() < spec.seconds)

    while True:
        while clock.free() > 0 and asking():
            trial = study.ask(followed_distributions(spec.space, study.get_trials(deepcopy=False), maximize))
            params = dict(trial.params)
            config = table.config(params["base_lr"], params["lr_policy"])
            curve = table.curve(*config, role(config, 0), iters)
            clock.start(curve, None, {"trial": trial, "params": params, "config": config})
            started += 1
        if not clock.runs:
            break
        kind, rid, run, i = clock.step()
        trial, curve = run["payload"]["trial"], run["curve"]
        if kind == "pass":
            v = curve.values[i]
            if math.isfinite(v):
                trial.report(v, curve.steps[i])
                if trial.should_prune():
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    clock.end(rid)
                    pruned += 1
                    out.append(SearchOutcome(config_name(run["payload"]["params"]), run["payload"]["params"],
                                             curve.best(maximize, curve.steps[i]), pruned=True))
            continue
        value = curve.best(maximize)
        study.tell(trial, value if value is not None else (0.0 if maximize else float("inf")))   # as TrialSource.end
        out.append(SearchOutcome(config_name(run["payload"]["params"]), run["payload"]["params"], value))
        if value is not None and (best is None or sign * value > sign * best[0]):
            best = (value, run["payload"]["config"])
            anytime.append((compute0 + clock.spent(), truth_regret(best[1])))
    return out, started, pruned


_PARSED: dict[str, Any] = {}


def _parsed(tables: dict[str, Any]):
    """The [search] table as the live sweep parses it (:func:`caffegen.sweep.spec.parse_spec`), cached by content."""
    import json

    from ..sweep.spec import parse_spec

    key = json.dumps(tables, sort_keys=True, default=str)
    if key not in _PARSED:
        _PARSED[key] = parse_spec(tables, "replay").search
    return _PARSED[key]


def policies_of(method: Method, table: CurveTable) -> list[str]:
    """The schedules the method searches (the tune's space, or Caffe's seven), those the table recorded."""
    from ..prototxt.schedule import POLICIES
    from .specs import TUNE_SCHEDULES

    have = set(table.policies())
    return [p for p in (TUNE_SCHEDULES if method.chains else POLICIES) if p in have]


def outcome_of(method: Method, seed: int, chosen: Config, table: CurveTable, regret, compute: float, wall: float,
             **kw) -> Outcome:
    return Outcome(method.name, seed, chosen, table.truth(*chosen), regret(chosen), compute, wall, **kw)


def lrfind_of(table: CurveTable, role, seed_role: int = 0) -> dict[str, Any]:
    seeds = table.seeds()
    s = role(("lr-find", "-"), seed_role) if seeds else 0
    return next((f for f in table.lrfind if f["seed"] == s), table.lrfind[0])
