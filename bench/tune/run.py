"""`caffegen tune` proven on recorded learning curves: its own decisions replayed over hundreds of seeds against
random search, TPE + ASHA, TPE + Hyperband, the one-seed grid and lr-find + poly, at equal compute.

    .venv/bin/python bench/tables/record.py --commit     # once: the tables (real caffe runs, resumable)
    .venv/bin/python bench/tune/run.py [--problem digits ...] [--seeds 400]

For each recorded table (bench/tables/<problem>.json.gz, caffegen.tune.table) every method of
``caffegen.tune.replay.METHODS`` is replayed ``--seeds`` times (caffegen.tune.replay: the tuner's own plan, search
spec, Optuna sampler and pruner, candidates, confirm rule and choice, on a virtual clock with 2 slots). The search
baselines get the tuner's median compute on that problem (equal compute). Per method:

* **regret**: the best configuration's truth minus the chosen one's (truth: the seed-mean of the best top-1 at the
  full length), median and 90th percentile, and P(regret <= one seed sd), the seed sd pooled within the better half
  of the configurations (the noise among the answers a tuner is judged on);
* **compute**, everything counted (every stage, the final run, the plan's per-sweep overhead), as a fraction of the
  repeated grid's over the tune's space, counted as the live plan counts it (``caffegen.tune.budget.
  repeated_grid_runs``: 5 base_lr a half-decade apart x the default tune's schedules x 3 seeds, at the table's mean
  full-length run);
* what a **random pick** scores (a uniformly random configuration of the space): the criterion's floor.

Also per problem: whether the repeated grid separates its best from its median beyond the seed noise, and the rank
correlation between search-length and full-length results (the short-horizon bias). Writes bench/tune/results.json,
docs/benchmarks/tune-anytime-<problem>.png, and prints the tables BENCHMARKS.md quotes. A missing table, one from
another caffegen version, or an unknown problem: one line, exit 2.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from problems import TABLE_PROBLEMS  # noqa: E402

from caffegen import __version__  # noqa: E402
from caffegen.errors import InputError  # noqa: E402
from caffegen.tune.baselines import repeated_grid_compute  # noqa: E402
from caffegen.tune.replay import METHODS, Method, replay  # noqa: E402
from caffegen.tune.clock import policies_of  # noqa: E402
from caffegen.tune.table import CurveTable, load_table, short_horizon  # noqa: E402

TABLES = ROOT / "bench" / "tables"
FIGURES = ROOT / "docs" / "benchmarks"


def grid_facts(table: CurveTable) -> dict:
    """The repeated grid: its best, its median, the seed noise, and how many configurations could be the best."""
    from caffegen.report.stats import could_be_best, seed_noise

    groups = {}
    for config in table.configs():
        vals = {}
        for s in table.seeds():
            v = table.curve(*config, s).best(table.maximize)
            vals[s] = table.worst if v is None else v
        groups[f"lr{config[0]:g}_{config[1]}"] = vals
    noise = seed_noise(groups)
    scores = {n: statistics.mean(g.values()) for n, g in groups.items()}
    bounds = could_be_best(scores, {n: len(g) for n, g in groups.items()}, noise, maximize=table.maximize)
    best_config, best = table.best_config()
    median = statistics.median(scores.values())
    sd = table.top_half_sd()           # the noise among the answers: what "one seed sd" means below
    se = sd * math.sqrt(2 / len(table.seeds()))
    return {"configs": len(groups), "runs": sum(len(g) for g in groups.values()), "best": list(best_config),
            "best_truth": best, "median_truth": median, "seed_sd": sd, "blocked_sd": noise.sigma,
            "seed_sd_df": noise.df, "best_minus_median_sd": (best - median) / sd, "separated": (best - median) > 1.96 * se,
            "could_be_best": sum(b >= 0 for b in bounds.values()), "table_compute_s": table.compute_of(),
            "compute_s": repeated_grid_compute(table, METHODS[0]),
            "short_horizon_spearman": short_horizon(table),
            # a truth is a mean of len(seeds) seeds: the table resolves two configurations' truths to about this
            # many seed sd (the standard error of their difference); regrets below it are ties the table cannot order
            "truth_resolution_sd": math.sqrt(2 / len(table.seeds()))}


def random_pick(table: CurveTable, sd: float) -> dict:
    """A uniformly random configuration of the tuner's space: its expected regret and P(regret <= sd)."""
    best = table.best_config()[1]
    regrets = [abs(best - table.truth(*c)) for c in table.configs()]
    return {"median_regret": statistics.median(regrets), "p_within_sd": sum(r <= sd for r in regrets) / len(regrets)}


def rate_known(table: CurveTable, sd: float, draws: int = 2000) -> dict:
    """An oracle for the rate: every schedule of the tune's space at the best configuration's base_lr, one recorded
    seed each (drawn), the best value kept. What choosing the schedule alone scores once the rate is right (runs:
    the schedules' count of full-length runs)."""
    import random

    rng = random.Random(0)
    (lr, _), best = table.best_config()
    configs = [table.config(lr, p) for p in policies_of(METHODS[0], table)]
    sign = 1.0 if table.maximize else -1.0
    regrets = []
    for _ in range(draws):
        vals = {c: table.curve(*c, rng.choice(table.seeds())).best(table.maximize) for c in configs}
        win = max((c for c in configs if vals[c] is not None), key=lambda c: sign * vals[c])
        regrets.append(sign * (best - table.truth(*win)))
    return {"runs": len(configs), "median_regret": statistics.median(regrets),
            "p_within_sd": sum(r <= sd for r in regrets) / draws}


def run_method(table: CurveTable, method: Method, seeds: int) -> list:
    return [replay(table, method, s) for s in range(seeds)]


def summary(outs: list, grid_s: float, sd: float) -> dict:
    regrets = sorted(o.regret for o in outs)
    frac = sorted(o.compute_s / grid_s for o in outs)
    q = statistics.quantiles(regrets, n=10, method="inclusive")
    return {"n": len(outs), "median_regret": statistics.median(regrets), "p90_regret": q[-1],
            "median_regret_sd": statistics.median(regrets) / sd, "p_within_sd": sum(r <= sd for r in regrets) / len(outs),
            "median_compute": statistics.median(frac), "max_compute": frac[-1],
            "median_trials": statistics.median(o.trials for o in outs),
            "median_pruned": statistics.median(o.pruned for o in outs),
            "chosen": _counts([f"lr{o.chosen[0]:g}_{o.chosen[1]}" for o in outs])}


def _counts(names: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in names:
        out[n] = out.get(n, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:5])


def anytime_figure(name: str, curves: dict[str, list], grid_s: float, sd: float, path: Path) -> None:
    """Median regret (in seed sd) of the incumbent against compute (a fraction of the repeated grid), a line per
    method."""
    import numpy as np

    from caffegen.plotting import pyplot, save_png

    plt = pyplot()

    xs = np.geomspace(0.003, 0.5, 60)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method, outs in curves.items():
        rows = []
        for o in outs:
            pts = sorted(o.anytime)
            vals = []
            for x in xs:
                seen = [r for c, r in pts if c / grid_s <= x]
                vals.append(seen[-1] / sd if seen else np.nan)
            rows.append(vals)
        arr = np.array(rows, dtype=float)
        have = np.mean(~np.isnan(arr), axis=0) >= 0.5
        med = np.where(have, np.nanmedian(np.where(np.isnan(arr), np.inf, arr), axis=0), np.nan)
        ax.plot(xs, med, label=method, lw=2 if method == "caffegen tune" else 1.2)
    ax.axhline(1.0, color="grey", ls=":", lw=1)
    ax.axhline(0.25, color="grey", ls="--", lw=1)
    ax.axvline(0.1, color="grey", ls="-.", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("compute, fraction of the repeated grid (everything counted)")
    ax.set_ylabel("median regret of the incumbent (seed sd)")
    ax.set_title(f"{name}: anytime regret over {len(next(iter(curves.values())))} seeds per method")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path)


def problem(name: str, seeds: int, tables: Path = TABLES) -> dict:
    table = load_table(tables / f"{name}.json.gz", version=__version__)
    g = grid_facts(table)
    sd, grid_s = g["seed_sd"], g["compute_s"]
    out = {"table": {k: table.meta.get(k) for k in ("commit", "caffegen", "date", "machine", "load")},
           "problem": table.problem, "grid": g, "random_pick": random_pick(table, sd),
           "rate_known": rate_known(table, sd), "methods": {}}
    curves = {}
    t0 = time.time()
    tune = run_method(table, METHODS[0], seeds)
    budget = statistics.median(o.compute_s for o in tune)
    for method in METHODS:
        m = method if method.kind != "search" else replace(method, compute=budget)
        outs = tune if method is METHODS[0] else run_method(table, m, seeds)
        curves[method.name] = outs
        out["methods"][method.name] = summary(outs, grid_s, sd)
    out["replay_seconds"] = round(time.time() - t0, 1)
    anytime_figure(name, curves, grid_s, sd, FIGURES / f"tune-anytime-{name}.png")
    return out


SEARCH_LEVERS = (   # the search strategy's (--strategy search) own design choices
    Method("as it is"),
    Method("the ladder: then the leader's schedule at 3.16x and 10x its rate, full length", ladder=(10 ** 0.5, 10.0)),
    Method("the ladder at 10x only", ladder=(10.0,)),
    Method("the ladder above the best two", ladder=(10 ** 0.5, 10.0), ladder_top=2),
    Method("the ladder only when the leader has the highest rate tried", ladder=(10 ** 0.5, 10.0),
           ladder_when="rising"),
    Method("before: 2 candidates at the search length, pruner from half, Caffe's seven", candidates=2,
           confirm_full=False, first_rung=0.5, chains=False),
    Method("Caffe's seven only", chains=False),
    Method("a fixed base_lr range (the range test's, not followed)", follow=False),
    Method("the confirm's last place: the best at 10x its rate (short-horizon bias)", horizon=(10.0,)),
    Method("the confirm's last two: the best at 3.16x and 10x its rate", horizon=(10 ** 0.5, 10.0)),
    Method("range centred between the valley and the steepest suggestion", range_centre="between"),
    Method("range centred between the valley and the steepest suggestion, search at the full length",
           range_centre="between", search_full=True),
    Method("pruner from half the run", first_rung=0.5),
    Method("pruner's own rungs (from a ninth of the run)", first_rung=None),
    Method("no pruning", first_rung=1.0),
    Method("pruner: no seed noise", seed_sd="none"),
    Method("pruner: the table's seed noise", seed_sd="table"),
    Method("TPE's own 10 random startup trials", startup=10),
    Method("candidates not distinct (near rates of one schedule are two)", distinct=False),
    Method("2 candidates at the full length", candidates=2),
    Method("3 candidates at the full length", candidates=3),
    Method("5 candidates at the full length", candidates=5),
    Method("4 candidates at the search length, then the final run", confirm_full=False),
    Method("no confirm (the search's best, retrained)", candidates=1, confirm_full=False),
    Method("search and confirm at the full length", search_full=True),
    Method("budget 15%", budget="15%"),
    Method("budget 20%", budget="20%"),
)
LEVERS = (        # the tuner's own design choices, each replayed at the same budget (the replay decides, not taste)
    Method("as shipped"),
    Method("the rate scan, Caffe's seven only", chains=False),
    Method("the rate scan, budget 15%", budget="15%"),
    Method("the rate scan, budget 20%", budget="20%"),
    *(replace(m, name=f"--strategy search: {m.name}", scan=False) for m in SEARCH_LEVERS),
)


def levers(name: str, seeds: int, tables: Path = TABLES, only: list[str] | None = None) -> dict:
    table = load_table(tables / f"{name}.json.gz", version=__version__)
    g = grid_facts(table)
    out = {}
    for m in LEVERS:
        if only and not any(word in m.name for word in only):
            continue
        try:
            out[m.name] = summary(run_method(table, m, seeds), g["compute_s"], g["seed_sd"])
        except InputError as exc:      # the plan refuses this design at this budget
            out[m.name] = {"refused": str(exc)}
            print(f"| {m.name} | refused: {exc} | | | | |", flush=True)
            continue
        s = out[m.name]
        print(f"| {m.name} | {s['median_regret']:.4f} ({s['median_regret_sd']:.2f}) | {s['p90_regret']:.4f} | "
              f"{s['p_within_sd']:.2f} | {100 * s['median_compute']:.1f}% | {s['median_trials']:.0f} "
              f"({s['median_pruned']:.0f}) |", flush=True)
    return out


def print_problem(name: str, r: dict) -> None:
    g = r["grid"]
    print(f"\n{name}: {g['configs']} configurations x {g['runs'] // g['configs']} seeds; best "
          f"lr{g['best'][0]:g}_{g['best'][1]} {g['best_truth']:.4f}, median {g['median_truth']:.4f} "
          f"({g['best_minus_median_sd']:.1f} seed sd; separated: {g['separated']}); seed sd {g['seed_sd']:.4f} "
          f"(the better half's; blocked over all {g['blocked_sd']:.4f}, {g['seed_sd_df']} df); {g['could_be_best']} "
          f"could be the best (MCB on the blocked sd); search vs full rank correlation "
          f"{g['short_horizon_spearman']:.2f}; the table resolves truths to {g['truth_resolution_sd']:.2f} seed sd; "
          f"random pick: median regret {r['random_pick']['median_regret']:.4f}, "
          f"P(<= 1 sd) {r['random_pick']['p_within_sd']:.2f}; rate known (every schedule at the best rate, one seed "
          f"each, {r['rate_known']['runs']} full-length runs): median regret {r['rate_known']['median_regret']:.4f}, "
          f"P(<= 1 sd) {r['rate_known']['p_within_sd']:.2f}")
    print("| method | median regret (sd) | p90 regret | P(regret <= 1 sd) | compute (median, max) | trials (pruned) |")
    print("|---|---|---|---|---|---|")
    for m, s in r["methods"].items():
        print(f"| {m} | {s['median_regret']:.4f} ({s['median_regret_sd']:.2f}) | {s['p90_regret']:.4f} | "
              f"{s['p_within_sd']:.2f} | {100 * s['median_compute']:.1f}%, {100 * s['max_compute']:.1f}% | "
              f"{s['median_trials']:.0f} ({s['median_pruned']:.0f}) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problem", nargs="*", default=None, help="default: every recorded table")
    ap.add_argument("--seeds", type=int, default=400)
    ap.add_argument("--tables", type=Path, default=TABLES, help="where the tables are [default: bench/tables]")
    ap.add_argument("--levers", action="store_true", help="replay the tuner's design choices instead (LEVERS)")
    ap.add_argument("--lever", nargs="*", default=None, metavar="WORDS",
                    help="with --levers: only the variants whose name holds one of these (and 'as shipped')")
    args = ap.parse_args()
    names = args.problem or [p for p in TABLE_PROBLEMS if (args.tables / f"{p}.json.gz").exists()]
    for n in names:
        if n not in TABLE_PROBLEMS:
            print(f"bench/tune: no problem {n!r}: the problems are {', '.join(TABLE_PROBLEMS)}", file=sys.stderr)
            sys.exit(2)
    if not names:
        print("bench/tune: no table recorded yet: run bench/tables/record.py", file=sys.stderr)
        sys.exit(2)
    results = {"date": dt.date.today().isoformat(), "commit": subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "cores": os.cpu_count(), "load_before": os.getloadavg(), "seeds": args.seeds, "problems": {}}
    for n in names:
        if args.levers:
            print(f"\n{n}: the tuner's levers, {args.seeds} seeds each\n| variant | median regret (sd) | p90 regret | "
                  "P(regret <= 1 sd) | compute | trials (pruned) |\n|---|---|---|---|---|---|")
            try:
                results["problems"][n] = levers(n, args.seeds, args.tables,
                                                ["as shipped", *args.lever] if args.lever else None)
            except InputError as exc:
                print(f"bench/tune: {exc}", file=sys.stderr)
                sys.exit(2)
            continue
        try:
            results["problems"][n] = problem(n, args.seeds, args.tables)
        except InputError as exc:
            print(f"bench/tune: {exc}", file=sys.stderr)
            sys.exit(2)
        print_problem(n, results["problems"][n])
    results["load_after"] = os.getloadavg()
    path = Path(__file__).parent / ("levers.json" if args.levers else "results.json")
    # each problem says which commit, date and load it was replayed at; the problems not replayed this time are kept
    results["replayed"] = {n: {k: results[k] for k in ("date", "commit", "seeds", "load_before", "load_after")}
                           for n in names}
    if path.exists():
        old = json.loads(path.read_text())
        for key in ("problems", "replayed"):
            results[key] = {**{k: v for k, v in old.get(key, {}).items() if k not in names}, **results[key]}
    path.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
