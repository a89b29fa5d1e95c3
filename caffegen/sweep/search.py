"""Search beyond the grid, and pruning on live curves, with Optuna (its samplers and pruners; none hand-written).

A spec's ``[search]`` table::

    [search]
    sampler = "tpe"          # "grid" (the [grid] table, the default), "random", "tpe", "qmc"
    trials = 24              # how many runs a sampler may start (the grid: all of its points)
    seed = 0
    pruner = "asha"          # "asha" (asynchronous successive halving), "hyperband", "median", "noise", "none"
    startup = 10             # tpe: random trials before its model (Optuna's default 10; fewer for a small budget)
    [search.space]
    base_lr = { low = 1e-4, high = 0.5, log = true }
    lr_policy = ["step", "poly", "inv"]
    "net.dropout" = { low = 0.0, high = 0.6 }

The study lives in the sweep's own ``sweep.db`` (Optuna's RDB storage: its tables beside the runs table), one trial
per run, linked by the trial's ``variant`` user attribute: after Ctrl-C or kill -9 the rerun resumes the trials that
were running (also one asked for but not yet named when the driver died) and asks for new ones only up to
``trials``, so none is lost, replaced or run twice. Trials are asked for when a
slot frees (asynchronously, as many at once as there are slots), and each run reports its test metric (top-1, or
the test loss when the net has no accuracy) to its trial at every test pass; a pruned run is stopped with a
snapshot (as Ctrl-C does) and marked ``pruned``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..checks import nearest
from ..errors import InputError
from ..layout import study_storage
from ..prototxt.chains import parse_schedules
from ..run.status import PRUNED, WITH_RESULT
from .ranges import followed_distributions
from .strategies import PRUNERS, SAMPLERS, RunShape, make_pruner, make_sampler, optuna_or_error
from .values import typed

__all__ = ["SearchSpec", "parse_search", "Study", "TrialSource", "trial_name"]



@dataclass(frozen=True)
class SearchSpec:
    """The ``[search]`` table, checked."""

    sampler: str = "grid"
    trials: int | None = None
    seed: int = 0
    pruner: str = "none"
    space: dict[str, Any] = field(default_factory=dict)   # name -> {"low", "high", "log", "int"} or [choices]
    reduction_factor: int = 3                            # ASHA / Hyperband: keep the best 1/reduction_factor
    min_resource: int | None = None                      # iterations before a first cut [default: per pruner]
    seconds: float | None = None                         # compute budget: no new trial once the runs together
                                                         # have trained this many seconds (running ones finish)
    seed_sd: float | None = None                         # the noise pruner: the seed-to-seed sd of the metric
                                                         # (beside the val set's binomial noise) [default: 0]
    startup: int | None = None                           # tpe: random trials before its model [default: Optuna's 10]

    @property
    def sampled(self) -> bool:
        return self.sampler != "grid"

    @property
    def uses_study(self) -> bool:
        """Whether runs go through an Optuna study (a sampler picks them, or a pruner compares them)."""
        return self.sampled or self.pruner != "none"


def parse_search(raw: dict[str, Any] | None, fields: dict[str, str], source: str) -> SearchSpec | None:
    """``[search]`` of a spec; ``fields`` maps each searchable name (solver fields, ``net.<field>``) to its type (an
    annotation, as :mod:`caffegen.sweep.values` reads it).
    One InputError line naming the key on any problem."""
    if raw is None:
        return None
    table = dict(raw)
    known = {f.name for f in dataclasses.fields(SearchSpec)}
    for key in table:
        if key not in known:
            raise InputError(f"{source}: [search] unknown key {key!r}{nearest(key, known)}")
    sampler = str(table.get("sampler", "grid")).lower()
    if sampler not in SAMPLERS:
        raise InputError(f"{source}: [search] sampler {table.get('sampler')!r} is not one of {', '.join(SAMPLERS)}"
                         f"{nearest(sampler, set(SAMPLERS))}")
    pruner = str(table.get("pruner", "none")).lower()
    if pruner not in PRUNERS:
        raise InputError(f"{source}: [search] pruner {table.get('pruner')!r} is not one of {', '.join(PRUNERS)}"
                         f"{nearest(pruner, set(PRUNERS))}")
    trials = table.get("trials")
    for name, value, minimum in (("trials", trials, 1), ("seed", table.get("seed", 0), 0), ("startup", table.get("startup"), 1),
                                 ("reduction_factor", table.get("reduction_factor", 3), 2),
                                 ("min_resource", table.get("min_resource", 1), 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise InputError(f"{source}: [search] {name} must be an integer >= {minimum}, got {value!r}")
    space_raw = table.get("space", {})
    if not isinstance(space_raw, dict):
        raise InputError(f"{source}: [search] space must be a table of parameter = {{low, high}} or [choices]")
    if sampler == "grid":
        if space_raw:
            raise InputError(f"{source}: [search] space goes with a sampler (random, tpe, qmc); the grid sampler "
                             "searches the [grid] table")
    else:
        if trials is None:
            raise InputError(f"{source}: [search] sampler {sampler!r} needs trials = N (how many runs to start)")
        if not space_raw:
            raise InputError(f"{source}: [search] sampler {sampler!r} needs a [search.space] table")
    seconds = table.get("seconds")
    if seconds is not None:
        seconds = typed(f"{source}: [search] seconds", seconds, "float")
        if seconds <= 0:
            raise InputError(f"{source}: [search] seconds must be > 0, got {seconds:g}")
        if sampler == "grid":
            raise InputError(f"{source}: [search] seconds goes with a sampler (random, tpe, qmc): a grid runs all its "
                             "points")
    seed_sd = table.get("seed_sd")
    if seed_sd is not None:
        seed_sd = typed(f"{source}: [search] seed_sd", seed_sd, "float")
        if seed_sd < 0:
            raise InputError(f"{source}: [search] seed_sd must be >= 0, got {seed_sd:g}")
        if pruner != "noise":
            raise InputError(f"{source}: [search] seed_sd goes with pruner = \"noise\" (got {pruner!r})")
    space = {name: _distribution(name, value, fields, source) for name, value in space_raw.items()}
    if table.get("startup") is not None and sampler != "tpe":
        raise InputError(f"{source}: [search] startup goes with sampler = \"tpe\" (got {sampler!r})")
    return SearchSpec(sampler=sampler, trials=trials, seed=table.get("seed", 0), pruner=pruner, space=space,
                      reduction_factor=table.get("reduction_factor", 3), min_resource=table.get("min_resource"),
                      seconds=seconds, seed_sd=seed_sd, startup=table.get("startup"))


def _distribution(name: str, value: Any, fields: dict[str, str], source: str) -> Any:
    where = f"{source}: [search.space] {name}"
    if name not in fields:
        raise InputError(f"{where}: unknown parameter{nearest(name, set(fields))} (net options take a net. prefix)")
    if isinstance(value, list):
        if not value:
            raise InputError(f"{where}: an empty list of choices")
        choices = parse_schedules(value) if name == "lr_policy" else [typed(where, v, fields[name]) for v in value]
        if len(set(map(repr, choices))) != len(choices):
            raise InputError(f"{where}: lists a choice twice")
        return choices
    if not isinstance(value, dict) or set(value) - {"low", "high", "log", "step", "within"} or not {"low", "high"} <= set(value):
        raise InputError(f"{where}: give {{ low = ..., high = ... }} (optionally log = true, within = [a, b]) or a "
                         "list of choices")
    low, high = value["low"], value["high"]
    if not _numbers(low, high):
        raise InputError(f"{where}: low and high must be numbers, got {low!r} and {high!r}")
    if low > high:
        raise InputError(f"{where}: low {low:g} is above high {high:g}")
    log = value.get("log", False)
    if not isinstance(log, bool):
        raise InputError(f"{where}: log must be true or false, got {log!r}")
    if log and low <= 0:
        raise InputError(f"{where}: a log scale needs low > 0, got {low:g}")
    kind = fields[name].split(" | ")[0]
    if not (kind.startswith("int") or kind.startswith("float")):
        raise InputError(f"{where}: a range needs a numeric parameter; give {name} a list of choices")
    integer = kind.startswith("int")
    within = _within(where, value.get("within"), low, high, log and not integer and "step" not in value)
    return {"low": low, "high": high, "log": log, "int": integer, **({"step": value["step"]} if "step" in value else {}),
            **({"within": within} if within else {})}


def _numbers(*values: Any) -> bool:
    """Every value a finite int or float (not a bool)."""
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _within(where: str, within: Any, low: float, high: float, log_float: bool) -> list[float] | None:
    """``within = [a, b]``: the bounds a range that follows the evidence may move to (:mod:`.ranges`)."""
    if within is None:
        return None
    if not log_float:
        raise InputError(f"{where}: within goes with a log-scaled float range (log = true, no step)")
    if not isinstance(within, list) or len(within) != 2 or not _numbers(*within):
        raise InputError(f"{where}: within must be [a, b], two numbers, got {within!r}")
    a, b = float(within[0]), float(within[1])
    if not 0 < a <= low or b < high:
        raise InputError(f"{where}: within [{a:g}, {b:g}] must hold the range {low:g} .. {high:g} (and a > 0)")
    return [a, b]


class Study:
    """The sweep's Optuna study in its ``sweep.db``: trials asked, reported to and told, each one a run."""

    def __init__(self, spec: SearchSpec, sweep_dir: Path, name: str, *, maximize: bool, min_resource: int,
                 shape: RunShape | None = None):
        optuna = optuna_or_error()
        self.spec = spec
        self._optuna = optuna
        storage = optuna.storages.RDBStorage(study_storage(sweep_dir),
                                             engine_kwargs={"connect_args": {"timeout": 30}})
        self.study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                         sampler=make_sampler(spec), pruner=make_pruner(spec, min_resource, maximize, shape),
                                         direction="maximize" if maximize else "minimize")
        made = len(self.trials())
        if made:
            self.study.sampler = make_sampler(spec, made)
        self._live: dict[str, Any] = {}  # variant -> its optuna Trial, while it runs

    def trials(self):
        return self.study.get_trials(deepcopy=False)

    def distributions(self, *, widest: bool = False) -> dict[str, Any]:
        """The space's distributions now: a range with ``within`` as the trials so far moved it (:mod:`.ranges`);
        ``widest``: at its bounds."""
        return followed_distributions(self.spec.space, self.trials(), self.study.direction.name == "MAXIMIZE",
                                      widest=widest)

    def variants_of(self, states: tuple[str, ...]) -> list[tuple[int, str, dict[str, Any]]]:
        """(number, variant, params) of the trials in these states (names of optuna.trial.TrialState)."""
        want = {getattr(self._optuna.trial.TrialState, s) for s in states}
        return [(t.number, t.user_attrs["variant"], dict(t.params)) for t in self.trials()
                if t.state in want and "variant" in t.user_attrs]

    def started(self) -> int:
        """Trials started so far, finished or not (the budget counts them)."""
        return len([t for t in self.trials() if "variant" in t.user_attrs])

    def ask(self, name_for, fixed: dict[str, Any] | None = None,
            dists: dict[str, Any] | None = None) -> tuple[int, str | None, dict[str, Any]]:
        """A new trial: its number, its variant name (``name_for(number, params)``; None: the trial is not used and
        is told FAIL) and its parameters. ``fixed``: the grid point it should run, enqueued (so the sampler does not
        choose) over the grid's ``dists``."""
        ts = self._optuna.trial.TrialState
        if fixed is not None and not any(t.state == ts.WAITING for t in self.trials()):
            self.study.enqueue_trial(fixed)  # (a point an earlier driver enqueued but never asked for goes first)
        trial = self.study.ask(dists if dists is not None else self.distributions())
        name = name_for(trial.number, trial.params)
        if name is None:
            self.study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
            return trial.number, None, dict(trial.params)
        trial.set_user_attr("variant", name)
        self._live[name] = trial
        return trial.number, name, dict(trial.params)

    def adopt_orphans(self, name_for, dists: dict[str, Any]) -> None:
        """Trials an earlier driver asked for but never named (killed between Optuna's ask and naming the run, so
        no run was started for them): their parameters are completed and their names given now, so each is run
        under its own number rather than lost and replaced. ``name_for`` as for :meth:`ask`."""
        ts = self._optuna.trial.TrialState
        for frozen in self.trials():
            if frozen.state != ts.RUNNING or "variant" in frozen.user_attrs:
                continue
            trial = self._optuna.trial.Trial(self.study, frozen._trial_id)
            params = {name: _suggest(trial, name, dist) for name, dist in dists.items()}
            name = name_for(frozen.number, params)
            if name is None:
                self.study.tell(trial, state=ts.FAIL)
                continue
            trial.set_user_attr("variant", name)
            self._live[name] = trial

    def restore(self, records: list[dict[str, Any]], dists: dict[str, Any]) -> int:
        """Make the trials anew from the run folders (a store rebuilt after damage; :func:`caffegen.sweep.store.
        rebuild_store`): each run's trial under its own number, with its parameters, the test passes it reported
        (from its log) and its state (pruned, complete with its best value, running for an unfinished run, which
        then resumes). A number no run folder holds (a trial asked for and never used) comes back as FAIL, so new
        trials keep their numbers. What cannot come back: trial timings and Optuna's own system attributes. Does
        nothing when the study already has trials; returns how many it made."""
        if self.trials():
            return 0
        optuna = self._optuna
        ts = optuna.trial.TrialState
        by_number = {r["number"]: r for r in records}
        worst = 0.0 if self.study.direction.name == "MAXIMIZE" else float("inf")
        for number in range(max(by_number, default=-1) + 1):
            r = by_number.get(number)
            if r is None:
                self.study.add_trial(optuna.trial.create_trial(state=ts.FAIL))
                continue
            params = {k: v for k, v in r["params"].items() if k in dists}
            state = ts.PRUNED if r["status"] == PRUNED else ts.COMPLETE if r["status"] in WITH_RESULT else ts.RUNNING
            value = None
            if state == ts.COMPLETE:
                value = r["value"] if r["value"] is not None and math.isfinite(r["value"]) else worst
            self.study.add_trial(optuna.trial.create_trial(
                state=state, value=value, params=params, distributions={k: dists[k] for k in params},
                user_attrs={"variant": r["variant"]}, intermediate_values=dict(r["steps"])))
        return len(by_number)

    def number_of(self, variant: str) -> int | None:
        """The trial number of a run (None: not a trial of this study)."""
        trial = self._trial(variant)
        return trial.number if trial is not None else None

    def _trial(self, variant: str):
        trial = self._live.get(variant)
        if trial is None:  # a trial of an earlier driver, resumed: its handle again, by id
            frozen = next((t for t in self.trials() if t.user_attrs.get("variant") == variant), None)
            if frozen is None:
                return None
            trial = self._live[variant] = self._optuna.trial.Trial(self.study, frozen._trial_id)
        return trial

    def report(self, variant: str, step: int, value: float) -> bool:
        """Report a test pass; True when the pruner says to stop the run."""
        trial = self._trial(variant)
        if trial is None or not math.isfinite(value):
            return False
        trial.report(value, step)
        return trial.should_prune()

    def tell(self, variant: str, state: str, value: float | None) -> None:
        """Close the run's trial: COMPLETE with its value, PRUNED, or FAIL."""
        trial = self._trial(variant)
        if trial is None:
            return
        ts = self._optuna.trial.TrialState
        frozen = self.study._storage.get_trial(trial._trial_id)
        if frozen.state.is_finished():
            return
        if state == "PRUNED":
            self.study.tell(trial, state=ts.PRUNED)
        elif state == "COMPLETE" and value is not None and math.isfinite(value):
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, state=ts.FAIL)
        self._live.pop(variant, None)


def _suggest(trial, name: str, dist) -> Any:
    """A parameter of a trial by Optuna's public suggest API: its stored or enqueued value, else a new sample."""
    d = optuna_or_error().distributions
    if isinstance(dist, d.CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, d.IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


class TrialSource:
    """The runs of a sweep with a study (a :class:`~caffegen.sweep.planning.RunSource`): each run is one trial. Trials an earlier driver left running come back
    first (the same run folder resumes from its snapshot); then, for the grid, every point not yet run; for a
    sampler, new trials asked for as slots free, up to ``trials``."""

    def __init__(self, study: Study, *, grid: list | None, budget: int | None, make, register,
                 final: dict[str, tuple[str, float | None]], grid_space: dict[str, list] | None = None,
                 restore: list[dict[str, Any]] | None = None):
        """``grid``: the grid's RunPlans (None for a sampler); ``make(number, params)`` -> a RunPlan, or an
        InputError for a point that cannot be built; ``register(plan)`` records a new run in the store; ``final``:
        {variant: (status, best)} of runs already finished; ``restore``: the trials of a rebuilt store's run folders
        (:meth:`Study.restore`)."""
        self.study, self.budget, self.make, self.register = study, budget, make, register
        self.failed: list[tuple[str, str]] = []
        opt = study._optuna.distributions
        self.grid_dists = {k: opt.CategoricalDistribution(v) for k, v in (grid_space or {}).items()}
        if restore:
            study.restore(restore, self.grid_dists if grid is not None else study.distributions(widest=True))
        for _, name, _ in study.variants_of(("RUNNING",)):  # finished runs whose trial was never told
            if name in final:
                self.end(name, *final[name])
        if grid is not None:
            self.pending = [p for p in grid if p.variant.name not in final]
            study.adopt_orphans(self._pending_named, self.grid_dists)
            return
        study.adopt_orphans(trial_name, study.distributions())
        self.pending = []
        for number, name, params in study.variants_of(("RUNNING",)):  # resumed from their snapshots
            if name not in final and (plan := self._made(number, name, params)) is not None:
                self.pending.append(plan)
                register(plan)

    spent: Callable[[], float] | None = None   # set by the driver: seconds the runs have trained ([search] seconds)

    def _within_budget(self) -> bool:
        """More trials may be asked: fewer than ``trials`` started, and the compute budget (``seconds``) not spent."""
        if self.budget is None or self.study.started() >= self.budget:
            return False
        seconds = self.study.spec.seconds
        return seconds is None or self.spent is None or self.spent() < seconds

    def remaining(self) -> bool:
        return bool(self.pending) or self._within_budget()

    def _pending_named(self, number: int, params: dict[str, Any]) -> str | None:  # noqa: ARG002
        """The pending grid run these trial parameters are (None: no pending one)."""
        key = sorted(params.items())
        return next((p.variant.name for p in self.pending if sorted(self._point(p).items()) == key), None)

    @staticmethod
    def _point(plan) -> dict[str, Any]:
        v = plan.variant
        return {**v.axes, **({"random_seed": v.seed} if v.seed is not None else {})}

    def next_plan(self):
        while True:
            if self.pending:
                plan = self.pending[0]
                if self.study._trial(plan.variant.name) is None:  # a grid point's trial, asked as it starts
                    _, name, _ = self.study.ask(self._pending_named, fixed=self._point(plan), dists=self.grid_dists)
                    if name is None:  # a stale enqueued point of an earlier driver that is already run: not used
                        continue
                    plan = next(p for p in self.pending if p.variant.name == name)
                self.pending.remove(plan)
                return plan
            if not self._within_budget():
                return None
            plan = self._made(*self.study.ask(trial_name))
            if plan is not None:
                self.register(plan)
                return plan

    def _made(self, number: int, name: str, params: dict[str, Any]):
        """The RunPlan of a sampled trial; None, with the trial failed, for a point the options refuse (crop >
        resize...)."""
        try:
            return self.make(number, params)
        except InputError as exc:
            self.study.tell(name, "FAIL", None)
            self.failed.append((name, str(exc)))
            return None

    def test_pass(self, name: str, iteration: int, value: float) -> bool:
        """A run's test pass: True when the pruner stops it."""
        return iteration > 0 and self.study.report(name, iteration, value)

    def prune_reason(self, name: str, iteration: int, value: float) -> str:  # noqa: ARG002
        why = getattr(self.study.study.pruner, "last_reason", "") or "behind the other runs at this point"
        return f"{why} ({self.study.spec.pruner})"

    def trial_of(self, name: str) -> int | None:
        """The run's trial number (the manifest records it: what a rebuilt store's study is made from)."""
        return self.study.number_of(name)

    def end(self, name: str, status: str, best: float | None) -> None:
        """A run reached a final status: its trial is told (pruned -> PRUNED, a result -> COMPLETE)."""
        if status == PRUNED:
            self.study.tell(name, "PRUNED", None)
        elif status in WITH_RESULT:
            worst = 0.0 if self.study.study.direction.name == "MAXIMIZE" else float("inf")
            self.study.tell(name, "COMPLETE", best if best is not None else worst)


def trial_name(number: int, params: dict[str, Any]) -> str:
    """``t007_lr0.0123_poly_wd0.00031``: the trial number, then its sampled values at 3 significant digits."""
    from ..prototxt.options import variant_name

    order = [k for k in ("base_lr", "lr_policy") if k in params] + sorted(set(params) - {"base_lr", "lr_policy"})
    rounded = {k: float(f"{params[k]:.3g}") if isinstance(params[k], float) else params[k] for k in order}
    return f"t{number:03d}_{variant_name(rounded)}"
