"""The stages of a tune, one object each: ``wanted`` (does this tune run it), ``run`` (train, return its typed
decision: :mod:`.decisions`), ``check`` (a decision that stops the tune, raised before the stage counts as done),
``after`` (what the later stages take from it: the plan, the search range, the candidates, the verdict).

:class:`~caffegen.tune.tuner.Tuner` runs them in order: a finished stage's decision is read back from ``tune.json``
instead of run again, so ``after`` sees the same decision on a first run and on a resume.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..layout import REPORT_HTML, study_storage
from ..prototxt.options import variant_name
from ..run.status import PRUNED, WITH_RESULT
from .budget import DISTINCT_CANDIDATES, GRID_REPEATS, Plan, Speed, grid_lrs, make_plan
from .confirm import confirm, confirm_run, grid_verdict
from .decide import (SearchOutcome, candidates, scan_best, scan_candidates, scan_points, scan_rate, scan_rates,
                     scan_schedules)
from .decisions import Confirmed, Decision, FinalRun, Looked, LrRange, Measured, SanityCheck, Searched
from .specs import (FALLBACK_RANGE, final_tables, lr_range, lr_within, prior_seed_sd, scan_tables,
                    search_tables, size_text)

if TYPE_CHECKING:
    from .tuner import TuneData, Tuner
    from .specs import TuneNet

__all__ = ["Context", "Stage", "PIPELINE", "SANITY_ITERS", "SANITY_RETRIES", "LRFIND_ITERS", "StopTune"]

SANITY_ITERS = 300
SANITY_RETRIES = 2     # a sanity run whose loss blows up is tried again at x0.1, this many times (seed 002)
LRFIND_ITERS = 100


class StopTune(Exception):
    """A stage's verdict ends the tune (sanity failed, nothing trained): exit ``code`` with ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Context:
    """What the stages share: the data, the net, the two lengths and their tables, then what each stage decides."""

    data: TuneData
    net: TuneNet
    iters: int
    search_iters: int
    short: dict[str, Any]           # the search's tables (search length; the confirm's too when not at the full)
    full: dict[str, Any]            # the final's tables (full length)
    probe_spec: Any                 # the measure, sanity and lr-find probes' spec
    sanity: bool = True
    search_spec: Any = None
    speed: Speed | None = None
    plan: Plan | None = None
    lr: LrRange | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    verdict: Confirmed | None = None

    mode: str = ""                  # the stored plan's: "grid", "scan" or "search" (a resume keeps the first run's)

    @property
    def grid_mode(self) -> bool:
        return self.mode == "grid"


class Stage:
    """One stage (see the module docstring)."""

    name = ""

    def wanted(self, t: Tuner, ctx: Context) -> bool:
        return True

    def before(self, t: Tuner, ctx: Context) -> None:
        """What the stage needs fixed before it runs, kept for a resume (the search's compute budget)."""

    def run(self, t: Tuner, ctx: Context, entry: dict[str, Any]) -> Decision:
        raise NotImplementedError

    def check(self, decision: Decision) -> None:
        """Raise :class:`StopTune` when the decision ends the tune (the stage then stays undone: a rerun retries)."""

    def after(self, t: Tuner, ctx: Context, decision: Decision | None) -> None:
        """Take the decision into the context (on a first run and on a resume alike)."""


class MeasureStage(Stage):
    """The speed of this net here; then the plan (refused before training when it cannot fit)."""

    name = "measure"

    def run(self, t, ctx, entry):
        from ..probes.timing import measure
        from ..run.backends import slot_count

        m = measure(ctx.probe_spec, t.out / "measure", t.caffe, gpus=t.opts.gpus, log=t.log,
                    slots=slot_count(ctx.probe_spec.run))
        entry["compute_s"] = round(m.wall_s, 3)
        return Measured(m.iter_s, m.test_s, m.start_s, m.iters, m.wall_s, m.check_s, m.figure_s)

    def after(self, t, ctx, decision):
        from ..layout import TENSORBOARD
        from ..run.backends import slot_count
        from .budget import CONFIRM_FULL
        m: Measured = decision
        ctx.speed = Speed(m.iter_s, m.test_s, m.start_s, slot_count(ctx.probe_spec.run), m.check_s, m.figure_s)
        state = t.state
        ctx.plan = make_plan(t.budget, ctx.speed, iters=ctx.iters, search_iters=ctx.search_iters,
                             test_interval=ctx.full["solver"]["test_interval"],
                             search_test_interval=ctx.short["solver"]["test_interval"], policies=len(t.opts.policies),
                             sanity_iters=SANITY_ITERS, lrfind_iters=LRFIND_ITERS, final=t.opts.final,
                             skip_sanity=not ctx.sanity, spent=state.spent("measure"),
                             confirm_full=CONFIRM_FULL if state.plan is None else state.plan.get("confirm_full", False),
                             scan=t.opts.strategy == "scan")
        if state.plan is None:
            state.plan = {**ctx.plan.to_json(), "trains_at": size_text(ctx.net)}
            state.save()
        ctx.mode = state.plan.get("mode", "search")
        for line in ctx.plan.lines():
            t.log(line)
        t.log(f"[tune] live: {t.out / REPORT_HTML}; tensorboard --logdir {t.out / TENSORBOARD}")


class SanityStage(Stage):
    """Can the net overfit 2 images per class? A FAIL stops the tune with the likely causes."""

    name = "sanity"

    def wanted(self, t, ctx):
        return ctx.sanity

    def run(self, t, ctx, entry):
        from ..probes.sanity import sanity

        t0 = time.time()
        result = sanity(ctx.probe_spec, t.out / "sanity", t.caffe, per_class=2, max_iter=SANITY_ITERS,
                        gpus=t.opts.gpus, log=t.log)
        for retry in range(1, SANITY_RETRIES + 1):   # a guessed rate that blows up says nothing of the net
            if not result.diverged:
                break
            lr = result.lr / 10
            t.log(f"[tune] sanity: the loss blew up at base_lr {result.lr:g}: again at {lr:g} (x10 lower, "
                  f"{retry} of {SANITY_RETRIES})")
            result = sanity(ctx.probe_spec, t.out / f"sanity-lr{lr:g}", t.caffe, per_class=2, max_iter=SANITY_ITERS,
                            lr=lr, gpus=t.opts.gpus, log=t.log)
        entry["compute_s"] = round(time.time() - t0, 3)   # one run in one slot
        t.log(f"[tune] sanity: {result.line}")
        return SanityCheck(result.passed, result.line, list(result.causes), result.lr)

    def check(self, decision):
        if not decision.passed:
            causes = "; ".join(f"{i}. {c}" for i, c in enumerate(decision.causes, 1))
            raise StopTune(1, f"sanity {decision.line} -- likely causes: {causes} (fix the net or data, or skip the "
                              "check with --no-sanity)")


class LrFindStage(Stage):
    """The range test: the decades of base_lr the search covers."""

    name = "lr-find"

    def run(self, t, ctx, entry):
        from ..probes.lrfind import lr_find

        t0 = time.time()
        found = lr_find(ctx.probe_spec, t.out / "lr-find", t.caffe, iters=LRFIND_ITERS, gpus=t.opts.gpus, log=t.log)
        entry["compute_s"] = round(time.time() - t0, 3)
        if found.suggested:
            low, high = lr_range(found.suggested, found.blew_up_at)
            why = (f"valley {found.suggested:.3g} (steep {found.suggestions.get('steep', 0):.3g}, "
                   f"minimum/10 {found.suggestions.get('minimum/10', 0):.3g}), a decade either side"
                   + (f", below a third of where the loss blew up ({found.blew_up_at:.3g})" if found.blew_up_at
                      else ""))
        else:
            (low, high), why = FALLBACK_RANGE, "too few finite losses to suggest a rate: the seed's 1e-4..0.1"
        return LrRange(low, high, why, dict(found.suggestions), found.blew_up_at)

    def after(self, t, ctx, decision):
        ctx.lr = decision
        if ctx.mode == "scan":
            t.log(f"[tune] the rate scan starts at the range test's valley: base_lr {_scan_rates(decision)[0]:g}")
        else:
            t.log(f"[tune] search range: base_lr {decision.low:g} .. {decision.high:g} ({decision.why})")


class SearchStage(Stage):
    """TPE over base_lr x the schedules within the budget (or, when the repeated grid fits it, that grid: no search
    beats its power for its compute)."""

    name = "search"

    def before(self, t, ctx):
        entry = t.state.stage("search")
        o, lr = t.opts, ctx.lr
        if ctx.mode == "scan":
            ctx.search_spec = t._write_spec("search", scan_tables(ctx.full, _scan_rates(lr),
                                                                  scan_schedules(o.policies)[0]))
            return
        if ctx.grid_mode:
            ctx.search_spec = t._write_spec("search", {**ctx.full, "name": "search", "grid": {
                "base_lr": grid_lrs(lr.low, lr.high), "lr_policy": list(o.policies), "repeats": GRID_REPEATS}})
            return
        if "seconds" not in entry:    # set when it starts, from what the stages before it really took
            entry["seconds"] = t._search_seconds(ctx.plan, ctx.speed, ctx.short)
            t.state.save()
        ctx.search_spec = t._write_spec("search", search_tables(
            ctx.short, lr=(lr.low, lr.high), policies=list(o.policies), trials=t.state.plan["trials"],
            seconds=entry["seconds"], seed=o.seed, seed_sd=prior_seed_sd(ctx.data.val_images),
            within=lr_within(lr.low, lr.high, lr.blew_up_at),
            run_s=ctx.speed.run_s(ctx.search_iters, ctx.short["solver"]["test_interval"])))

    def run(self, t, ctx, entry):
        search_dir = t.out / "search"
        if ctx.grid_mode:
            t.log("[tune] the repeated grid fits the budget: it runs instead of a search (more power for that "
                  "compute than any search)")
        elif ctx.mode == "scan":
            scanned, rates = scan_schedules(t.opts.policies)[0], _scan_rates(ctx.lr)
            t.log(f"[tune] the rate scan: {' and '.join(scanned)} at base_lr {', '.join(f'{x:g}' for x in rates)} "
                  f"(a half-decade apart up from the range test's valley), at the full length ({ctx.iters} "
                  "iterations); the schedules then train at the rate they like best")
        else:
            t.log(f"[tune] the study: optuna-dashboard {study_storage(search_dir)}")
        t._sweep(ctx.search_spec, search_dir, "search")
        found, moved = search_candidates(search_dir), None
        if ctx.mode == "search":
            from ..sweep.ranges import study_range

            spec = ctx.search_spec
            moved = list(study_range(search_dir, spec.name, spec.search.space, "base_lr",
                                     maximize=found[0]["maximize"] if found else True))
        return Searched(found, moved)

    def after(self, t, ctx, decision):
        ctx.candidates = decision.candidates
        if decision.lr_range and (decision.lr_range[0] < ctx.lr.low or decision.lr_range[1] > ctx.lr.high):
            t.log(f"[tune] the search range followed its best trials: base_lr {decision.lr_range[0]:.3g} .. "
                  f"{decision.lr_range[1]:.3g} (it began at {ctx.lr.low:g} .. {ctx.lr.high:g})")
        if not ctx.candidates:
            raise StopTune(1, f"no trial of the search produced a test result (see {t.out / 'search' / REPORT_HTML})")


class ConfirmStage(Stage):
    """Fresh seeds for the candidates still in contention, round by round (the grid: its own verdict)."""

    name = "confirm"

    def run(self, t, ctx, entry):
        if ctx.grid_mode:
            return grid_verdict(t.out / "search", ctx.candidates)
        if ctx.mode == "scan":
            return _confirm_scan(t, ctx, entry)
        return confirm(t, entry, ctx.full if ctx.plan.confirm_full else ctx.short, ctx.candidates, ctx.speed,
                       ctx.plan)

    def after(self, t, ctx, decision):
        ctx.verdict = decision
        t.log(f"[tune] {decision.headline}")


class FinalStage(Stage):
    """The winner at the full length: retrained, extended, or already trained there (grid mode, confirm at full)."""

    name = "final"

    def wanted(self, t, ctx):
        return t.opts.final != "none"

    def run(self, t, ctx, entry):
        winner = ctx.verdict.winner
        confirmed = ctx.plan.confirm_full and winner.get("seeds")
        if ctx.grid_mode:     # the winner already ran at the full length, with every seed of the grid
            t.log("[tune] final: the grid trained the winner at the full length (3 seeds): nothing to retrain")
        elif ctx.mode == "scan" and not confirmed:     # no confirm round fitted: the scan's run is the final one
            t.log("[tune] final: the rate scan trained the winner at the full length: nothing to retrain")
            return FinalRun("scan", ctx.iters)
        elif confirmed:
            t.log("[tune] final: the confirm stage trained the winner at the full length "
                  f"({winner['seeds']} fresh seeds): nothing to retrain")
        elif t.opts.final == "retrain":
            t._sweep(t._write_spec("final", final_tables(ctx.full, winner["point"])), t.out / "final", "final")
        else:
            from ..probes.extend import extend_run

            t0 = time.time()
            extend_run(t.out / "search" / winner["runs"][0], ctx.iters, t.caffe, log=t.log, gpus=t.opts.gpus)
            entry["compute_s"] = round(entry.get("compute_s", 0.0) + time.time() - t0, 3)
        return FinalRun("grid" if ctx.grid_mode else "confirm" if confirmed else t.opts.final, ctx.iters)


class LookStage(Stage):
    """The winner evaluated per class, every stage's report and TensorBoard log."""

    name = "look"

    def run(self, t, ctx, entry):
        winner = ctx.verdict.winner
        final = t.state.stage("final").get("decision") or {}
        how = final.get("how") or ("confirm" if ctx.plan.confirm_full and winner.get("seeds") else t.opts.final)
        if how == "confirm":       # the winner's best fresh-seed run, in its confirm round's folder
            where = confirm_run(t, winner)
        elif how == "scan":        # its run of the rate scan
            where = t.out / "search" / winner["runs"][0]
        else:
            where = t.out / "final" if how == "retrain" else t.out / "search"
        return Looked(**t._look(where, winner))


PIPELINE: tuple[Stage, ...] = (MeasureStage(), SanityStage(), LrFindStage(), SearchStage(), ConfirmStage(),
                               FinalStage(), LookStage())


def _scan_rates(lr: LrRange) -> list[float]:
    """The rate scan's base_lr: up from the range test's valley (:func:`.decide.scan_rates`)."""
    return scan_rates(lr.suggestions.get("valley"), lr.blew_up_at)


def _confirm_scan(t: Tuner, ctx: Context, entry: dict[str, Any]) -> Confirmed:
    """After the rate scan: the rate its runs like best (:func:`.decide.scan_rate`; a run with no result counts as
    the worst), then the plan's schedules at that rate with a fresh seed (as many as still fit the budget), the
    best winning (:func:`.confirm.confirm`). When none fits: the scan's best run at that rate."""
    from ..prototxt.options import variant_name
    from .budget import round_that_fits

    got = {(c["point"]["base_lr"], c["point"]["lr_policy"]): c["value"] for c in ctx.candidates}
    scanned = scan_schedules(t.opts.policies)[0]
    points = scan_points(ctx.lr.suggestions.get("valley"), ctx.lr.blew_up_at, t.opts.policies)
    values = {k: got.get(k) for k in points}
    maximize = ctx.candidates[0]["maximize"]
    rate = scan_rate(values, maximize=maximize)
    if "k" not in entry:     # fixed when it starts (a resume trains the same schedules)
        entry["k"] = round_that_fits(ctx.speed, wall_s=ctx.plan.wall_s, spent=t.state.spent(),
                                     want=len(t.opts.policies), planned=ctx.plan.at_rate,
                                     run_s=ctx.speed.run_s(ctx.iters, ctx.full["solver"]["test_interval"]),
                                     searched=len(points))
        t.state.save()
    shown = {k: "-" if v is None else f"{v:.3f}" for k, v in values.items()}
    t.log(f"[tune] the rate scan chose base_lr {rate:g} ({' and '.join(scanned)} at each rate: " + ", ".join(
        f"{x:g}: {' '.join(shown[(x, p)] for p in scanned)}" for x in dict.fromkeys(x for x, _ in points)) + ")")
    if rate == max(x for x, _ in points) and len(points) > 2:
        t.log(f"caffegen: note: the rate scan liked its highest rate best ({rate:g}): a higher one may be better "
              f"still (put higher rates in {t.out / 'specs' / 'search.toml'} and run it with caffegen sweep)")
    meta = {"metric": ctx.candidates[0]["metric"], "maximize": maximize}
    cands = [{"name": n, "point": point, "value": None, "runs": [], **meta}
             for n, point in scan_candidates(rate, t.opts.policies, entry["k"])]
    if len(cands) >= 2:
        return confirm(t, entry, ctx.full, cands, ctx.speed, ctx.plan, k=len(cands), found_in="the rate scan")
    best = scan_best(values, rate, maximize=maximize)
    win = next(c for c in ctx.candidates if (c["point"]["base_lr"], c["point"]["lr_policy"]) == best)
    head = (f"winner {variant_name(win['point'])}: best {ctx.candidates[0]['metric']} {win['value']:.3f} in the rate "
            "scan at the full length (no fresh seed: the confirm stage did not fit the budget)")
    return Confirmed({**win, "mean": win["value"], "seeds": 0}, head, [], "no confirm round", {})


def search_candidates(search_dir: Path) -> list[dict[str, Any]]:
    """The search's finished trials with a result, best first, one per point (:func:`.decide.candidates`, every
    one of them: the confirm stage takes its first few)."""
    from ..report.analysis import load_runs, ranked_variants

    runs, record = load_runs(search_dir)
    trials = []
    for v in ranked_variants(runs, record):
        r = v.runs[0]
        point = {k: r.axes[k] for k in ("base_lr", "lr_policy") if k in r.axes}
        point.update({k: val for k, val in r.axes.items() if k not in point})
        ok = v.score is not None and r.status in WITH_RESULT
        trials.append(SearchOutcome(variant_name(point), point, v.score if ok else None, pruned=r.status == PRUNED,
                                    runs=(r.variant,)))
    chosen = candidates(trials, maximize=record.maximize, k=len(trials), distinct=DISTINCT_CANDIDATES)
    return [{"name": t.name, "point": t.point, "value": t.value, "runs": list(t.runs), "metric": record.metric,
             "maximize": record.maximize} for t in chosen]
