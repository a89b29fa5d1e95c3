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
from .budget import CONFIRM_CANDIDATES, CONFIRM_ROUNDS, Plan, Speed, confirm_round_fits, duration
from .decide import choose, confirm_round
from .decisions import Confirmed
from .specs import confirm_tables

if TYPE_CHECKING:
    from .tuner import Tuner

__all__ = ["confirm", "confirm_run", "grid_verdict", "round_values", "rows_of"]


def rows_of(sweep_dir: Path) -> list:
    from ..sweep.store import read_sweep

    return read_sweep(sweep_dir)[0]


def confirm(t: Tuner, entry: dict[str, Any], short: dict[str, Any], candidates: list[dict[str, Any]], speed: Speed,
            plan: Plan, k: int = CONFIRM_CANDIDATES, found_in: str = "the search") -> Confirmed:
    """Run the first ``k`` candidates with fresh seeds (the tune's seed + 1, + 2, ...; never their search run: its
    score was selected for being high): after each round :func:`.decide.confirm_round` drops the ones that cannot
    be the best; stop when one is left, the rounds are done, or the budget would not hold. :func:`.decide.choose`
    names the winner."""
    rounds = entry.setdefault("rounds", [])
    alive = [c["name"] for c in candidates[:k]]
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
    first = int(short["solver"].get("random_seed", 0)) + 1     # the runs before trained with the tune's seed
    for seed in range(first + len(rounds), first + CONFIRM_ROUNDS):
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
    metric = metric_label(candidates[0]["metric"])
    have = [n for n in alive if values.get(n)]
    if have:
        v = choose(values, have, maximize=maximize)
        win, mean, n, tied = by_name[v.winner], v.mean, v.seeds, v.tied
        what = (f"mean best {metric} {mean:.3f} over {n} fresh seed{'s' * (n > 1)} at "
                f"{short['solver']['max_iter']} iterations")
    else:     # no round fitted the budget: the search's best, on its search score alone
        win, mean, n, tied = by_name[alive[0]], by_name[alive[0]]["value"], 0, []
        what = (f"best {metric} {mean:.3f} in {found_in} (no fresh seed: the confirm stage did not fit)")
    head = f"winner {win['name']}: {what}"
    if n and len(have) > 1 and all(len(values[h]) == 1 for h in have):
        head += (f", the best of {len(have)} (one fresh seed each: no repeats to estimate the seed noise from, so "
                 "no claim of separation)")
    elif tied:
        head += f"; tied with {', '.join(tied)} (not separated at this noise: {method})"
    elif n and len(have) > 1:
        head += f", separated from the other candidates ({method})"
    return Confirmed({**win, "mean": mean, "seeds": n}, head, list(tied), method, values)

def confirm_run(t: Tuner, winner: dict[str, Any]) -> Path:
    """The winner's best confirm run (its fresh seed with the best value)."""
    values = t.state.stage("confirm")["decision"]["values"][winner["name"]]
    sign = 1.0 if winner["maximize"] else -1.0
    seed = max(values, key=lambda s: sign * values[s])
    return t.out / "confirm" / f"seed{seed}" / f"{variant_name(winner['point'])}_seed{seed}"

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
