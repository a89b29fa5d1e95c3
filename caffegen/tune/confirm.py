"""The confirm stage's work on real runs: fresh seeds of the candidates, round by round, each round an ordinary sweep
(``confirm/seed<N>/``), the rule of :func:`.decide.confirm_round` after each and :func:`.decide.choose` at the end;
and the repeated grid's verdict by the same rule (grid mode). The tuner (:mod:`.tuner`) calls these from its
:class:`~.stages.ConfirmStage`."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..logs.curves import metric_label
from ..prototxt.options import variant_name
from .budget import CONFIRM_CANDIDATES, CONFIRM_ROUNDS, LADDER, Plan, Speed, confirm_round_fits, duration
from .decide import SearchOutcome, choose, confirm_round, ladder
from .decisions import Confirmed
from .specs import confirm_tables

if TYPE_CHECKING:
    from .tuner import Tuner

__all__ = ["confirm", "confirm_run", "confirm_path", "grid_verdict", "round_values", "rows_of"]


def rows_of(sweep_dir: Path) -> list:
    from ..sweep.store import read_sweep

    return read_sweep(sweep_dir)[0]


def confirm(t: Tuner, entry: dict[str, Any], short: dict[str, Any], candidates: list[dict[str, Any]], speed: Speed,
             plan: Plan, ceiling: float | None = None) -> Confirmed:
    """Run the candidates with fresh seeds 1, 2, ... (never their search run: its score was selected for being
    high): after each round :func:`.decide.confirm_round` drops the ones that cannot be the best; stop when one
    is left, the rounds are done, or the budget would not hold; then the ladder (:func:`_ladder`, no rate above
    ``ceiling``). :func:`.decide.choose` names the winner."""
    rounds = entry.setdefault("rounds", [])
    alive = [c["name"] for c in candidates[:CONFIRM_CANDIDATES]]
    by_name = {c["name"]: c for c in candidates}
    values: dict[str, dict[int, float]] = {n: {} for n in alive}
    maximize = candidates[0]["maximize"]
    for done in rounds:        # a resumed confirm: the rounds already run
        for name, v in done["values"].items():
            values.setdefault(name, {})[int(done["seed"])] = v
        alive = [n for n in alive if n in done["alive"]]
    run_s = speed.run_s(short["solver"]["max_iter"], short["solver"]["test_interval"])
    final_s = sum(s.seconds for s in plan.stages if s.name == "final")
    searched = len(rows_of(t.out / "search"))
    method = "no confirm round: the search's best"
    for seed in range(len(rounds) + 1, CONFIRM_ROUNDS + 1):
        if len(alive) < 2:
            break
        fits, cost = confirm_round_fits(
            speed, wall_s=plan.wall_s, spent=t.state.spent() + (time.time() - t.stage_t0),
            alive=len(alive), run_s=run_s, final_s=final_s, runs_before=sum(len(r["values"]) for r in rounds),
            rounds_before=len(rounds), final=t.opts.final != "none" and not plan.confirm_full,
            searched=searched)
        if not fits:
            t.log(f"[tune] confirm: no round {seed}: {duration(cost)} would not fit the budget")
            break
        spec = t._write_spec(f"confirm-seed{seed}", confirm_tables(
            {**short, "name": f"confirm-seed{seed}"}, [by_name[n]["point"] for n in alive], seed))
        out = t.out / "confirm" / f"seed{seed}"
        t._sweep(spec, out, "confirm")
        got = round_values(out, [by_name[n] for n in alive], seed)
        for name, v in got.items():
            values[name][seed] = v
        alive, method = confirm_round(values, alive, maximize=maximize)
        rounds.append({"seed": seed, "values": got, "alive": list(alive), "method": method})
        t.state.save()
    if plan.confirm_full and LADDER and any(values.get(n) for n in alive):
        alive = _ladder(t, entry, short, candidates, by_name, values, alive, speed, plan, searched, ceiling)
    metric = metric_label(candidates[0]["metric"])
    have = [n for n in alive if values.get(n)]
    if have:
        v = choose(values, have, maximize=maximize)
        win, mean, n, tied = by_name[v.winner], v.mean, v.seeds, v.tied
        what = (f"mean best {metric} {mean:.3f} over {n} fresh seed{'s' * (n > 1)} at "
                f"{short['solver']['max_iter']} iterations")
    else:     # no round fitted the budget: the search's best, on its search score alone
        win, mean, n, tied = by_name[alive[0]], by_name[alive[0]]["value"], 0, []
        what = (f"best {metric} {mean:.3f} in the search at {short['solver']['max_iter']} iterations (no fresh "
                "seed: the confirm stage did not fit)")
    head = (f"winner {win['name']}: {what}"
            + (f"; tied with {', '.join(tied)} (not separated at this noise: {method})" if tied else
               f", separated from the other candidates ({method})" if len(candidates) > 1 and n else ""))
    return Confirmed({**win, "mean": mean, "seeds": n}, head, list(tied), method, values)


def _ladder(t: Tuner, entry: dict[str, Any], full: dict[str, Any], candidates: list[dict[str, Any]],
            by_name: dict[str, dict[str, Any]], values: dict[str, dict[int, float]], alive: list[str], speed: Speed,
            plan: Plan, searched: int, ceiling: float | None) -> list[str]:
    """After the rounds: the leader's schedule at :data:`~.budget.LADDER` x its rate (:func:`.decide.ladder`), one
    fresh seed (1) each at the full length (none above ``ceiling``), in ``confirm/seed1-ladder/`` when it fits the
    budget; they join the candidates (``by_name``, ``values``). Returns the candidates alive with them. A resumed
    tune reads a finished ladder from ``entry`` and resumes an unfinished one's sweep."""
    lad = entry.get("ladder")
    if lad is None:
        maximize = candidates[0]["maximize"]
        lead = choose(values, [n for n in alive if values.get(n)], maximize=maximize).winner
        tried = [SearchOutcome(c["name"], c["point"], None) for c in candidates[:CONFIRM_CANDIDATES]]
        steps = ladder([SearchOutcome(lead, by_name[lead]["point"], None)], tried, LADDER, ceiling)
        run_s = speed.run_s(full["solver"]["max_iter"], full["solver"]["test_interval"])
        fits, cost = confirm_round_fits(
            speed, wall_s=plan.wall_s, spent=t.state.spent() + (time.time() - t.stage_t0), alive=len(steps),
            run_s=run_s, final_s=0.0, runs_before=sum(len(v) for v in values.values()),
            rounds_before=len(entry.get("rounds", [])), final=False, searched=searched)
        if not steps or not fits:
            if steps:
                t.log(f"[tune] confirm: no ladder above {lead}: {duration(cost)} would not fit the budget")
            entry["ladder"] = {"points": [], "values": {}}
            return alive
        t.log(f"[tune] confirm: the ladder above {lead} (a short search prefers low rates): "
              + ", ".join(s.name for s in steps))
        spec = t._write_spec("confirm-ladder", confirm_tables({**full, "name": "confirm-ladder"},
                                                              [s.point for s in steps], 1))
        out = t.out / "confirm" / "seed1-ladder"
        t._sweep(spec, out, "confirm")
        points = [{"name": s.name, "point": s.point} for s in steps]
        lad = entry["ladder"] = {"points": points, "values": round_values(out, points, 1)}
        t.state.save()
    for p in lad["points"]:
        by_name.setdefault(p["name"], {**candidates[0], "name": p["name"], "point": p["point"], "value": None,
                                       "runs": []})
        values[p["name"]] = {1: lad["values"][p["name"]]} if p["name"] in lad["values"] else {}
        alive = alive + [p["name"]]
    return alive


def confirm_run(t: Tuner, winner: dict[str, Any]) -> Path:
    """The winner's best confirm run (its fresh seed with the best value; a ladder's run in its own folder)."""
    values = t.state.stage("confirm")["decision"]["values"][winner["name"]]
    sign = 1.0 if winner["maximize"] else -1.0
    seed = max(values, key=lambda s: sign * values[s])
    return confirm_path(t.out, winner["point"], seed)


def confirm_path(folder: Path, point: dict[str, Any], seed: Any) -> Path:
    """A candidate's confirm run of ``seed`` in a tune folder: its round's, or the ladder's."""
    name = f"{variant_name(point)}_seed{seed}"
    found = [folder / "confirm" / f"seed{seed}" / name, folder / "confirm" / f"seed{seed}-ladder" / name]
    return next((d for d in found if d.is_dir()), found[0])

def grid_verdict(grid_dir: Path, candidates: list[dict[str, Any]]) -> Confirmed:
    """The repeated grid's verdict, by the confirm stage's own rule (:func:`.decide.confirm_round` over every
    configuration's seeds, :func:`.decide.choose`): no run of its own."""
    by_name = {c["name"]: c for c in candidates}
    values: dict[str, dict[int, float]] = {}
    for r in rows_of(grid_dir):
        name = variant_name({k: r.axes[k] for k in ("base_lr", "lr_policy") if k in r.axes})
        if name in by_name and r["best_top1"] is not None:
            values.setdefault(name, {})[int(r["seed"] or 0)] = r["best_top1"]
    maximize = candidates[0]["maximize"]
    alive, method = confirm_round(values, list(values), maximize=maximize)
    v = choose(values, alive, maximize=maximize)
    metric = metric_label(candidates[0]["metric"])
    head = (f"winner {v.winner}: mean best {metric} {v.mean:.3f} over {v.seeds} seeds of the repeated grid at the "
            "full length" + (f"; tied with {', '.join(v.tied)} (not separated at this noise: {method})" if v.tied
                             else f", separated from the other {len(values) - 1} configurations ({method})"))
    return Confirmed({**by_name[v.winner], "mean": v.mean, "seeds": v.seeds}, head, list(v.tied), method, values)


def round_values(out: Path, alive: list[dict[str, Any]], seed: int) -> dict[str, float]:
    """Each candidate's best value in a confirm round (its run of that seed)."""
    from ..sweep.store import read_sweep

    rows, _ = read_sweep(out)
    got = {}
    for c in alive:
        name = f"{variant_name(c['point'])}_seed{seed}"
        row = next((r for r in rows if r.variant == name), None)
        if row is not None and row["best_top1"] is not None:
            got[c["name"]] = row["best_top1"]
    return got
