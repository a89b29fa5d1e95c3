"""`caffegen tune` against the full grid: a fraction of the compute, the same answer?

    .venv/bin/pip install -e '.[bench]'        # scikit-learn: the digits image set ships inside it
    .venv/bin/python bench/tune/run.py [--only default|digits] [--seeds 5] [--budget 7runs]

Two problems (bench/problems.py: the default spec's demo set, scikit-learn's digits), on this machine, one sweep or
tune after the other. Both train the net ``caffegen tune`` trains without a NET (the seed's net at resize 44 / crop
40 with BatchNorm) for 6 epochs (600 and 540 iterations), on the tune's own lists, so the grid and the tuner see the
same data, net and solver. For each problem:

* the **repeated grid**: base_lr 0.1 / 0.01 / 0.001 x the seven policies x random_seed 0, 1, 2 (63 runs;
  bench/problems.py's, which bench/schedules shares), and the **single-seed grid** (its seed-0 runs:
  21); their compute is the sum of their runs' wall seconds (slot-seconds); the best variant is the one with the
  best mean over its three seeds (the pooled seed noise gives its interval);
* ``caffegen tune --seed S`` for S in 0..4 (default budget): the compute of everything before the final stage (the
  sum of its runs' wall seconds, the probes' included) as a fraction of each grid's, the final stage's on its own;
  the winner retrained to the full length: its best top-1, and whether it is **tied with or better than** the
  repeated grid's best: not below it beyond the seed noise (one-sided 5%, the final's one run against the grid
  best's three: sd * sqrt(1 + 1/3)).

Writes bench/tune/results.json and prints a table. Each sweep resumes when rerun (the grid is reused).
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from problems import KINDS, epochs_iters, folder_of, lists, repeated_grid  # noqa: E402

from caffegen.report.analysis import load_runs, ranked_variants, seed_noise_of, verdict  # noqa: E402
from caffegen.sweep.store import read_sweep  # noqa: E402

Z95 = 1.6448536269514722     # one-sided 5%


def grid(kind: str, work: Path) -> dict:
    """The repeated grid: its compute, its best and how sure that is."""
    out = repeated_grid(kind, work)
    runs, record = load_runs(out)
    ranked = [v for v in ranked_variants(runs, record) if v.score is not None]
    v = verdict(ranked)
    noise = seed_noise_of(ranked)
    best = ranked[0]
    rows = read_sweep(out)[0]
    seed0 = [r for r in rows if r["seed"] == 0]
    best0 = max(seed0, key=lambda r: r["best_top1"] or -1)
    return {"runs": len(rows), "compute_s": sum(r["wall_s"] or 0 for r in rows),
            "seed0_compute_s": sum(r["wall_s"] or 0 for r in seed0), "best": best.name, "best_mean": best.score,
            "best_seeds": best.best, "sd": noise.sigma if noise else None, "df": noise.df if noise else None,
            "tied": [t.name for t in ranked if t.tied and t is not best], "verdict": v.headline,
            "seed0_best": best0.variant, "seed0_best_top1": best0["best_top1"]}


def tune(name: str, work: Path, train: Path, val: Path, iters: int, seed: int, budget: str) -> dict:
    out = work / "runs" / name
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "caffegen", "tune", "--data", f"{train},{val}", "--iters", str(iters),
                           "--seed", str(seed), "--budget", budget, "--out", str(out)], cwd=work, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = json.loads((out / "tune.json").read_text())
    stages = state["stages"]
    before = sum(s.get("compute_s", 0.0) for k, s in stages.items() if k not in ("final", "look"))
    final_rows, _ = read_sweep(out / "final")
    top1 = final_rows[0]["best_top1"]
    verdict = stages["confirm"]["decision"]
    return {"seed": seed, "wall_s": round(time.time() - t0, 1), "spent_s": sum(s["spent_s"] for s in stages.values()),
            "budget_wall_s": state["plan"]["wall_s"], "before_final_compute_s": before,
            "final_compute_s": stages["final"].get("compute_s", 0.0), "winner": verdict["winner"]["name"],
            "tied": verdict["tied"], "final_top1": top1,
            "search_trials": len(read_sweep(out / "search")[0]),
            "pruned": sum(r.status == "pruned" for r in read_sweep(out / "search")[0]),
            "lr_range": [stages["lr-find"]["decision"]["low"], stages["lr-find"]["decision"]["high"]]}


def problem(kind: str, work: Path, seeds: int, budget: str) -> dict:
    train, val, classes, n_val, n_train = lists(folder_of(kind, work), work / f"data-{kind}")
    iters = epochs_iters(n_train)
    g = grid(kind, work)
    tunes = [tune(f"{kind}_tune_s{s}", work, train, val, iters, s, budget) for s in range(seeds)]
    margin = Z95 * g["sd"] * math.sqrt(1 + 1 / 3) if g["sd"] else 0.0
    for t in tunes:
        t["of_repeated_grid"] = t["before_final_compute_s"] / g["compute_s"]
        t["of_single_grid"] = t["before_final_compute_s"] / g["seed0_compute_s"]
        t["gap"] = g["best_mean"] - t["final_top1"]
        t["tied_or_better"] = t["gap"] <= margin
    return {"val_images": n_val, "train_images": n_train, "iters": iters, "grid": g, "tunes": tunes,
            "margin": margin, "median_of_repeated_grid": statistics.median(t["of_repeated_grid"] for t in tunes),
            "median_of_single_grid": statistics.median(t["of_single_grid"] for t in tunes),
            "tied_or_better": sum(t["tied_or_better"] for t in tunes)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=KINDS, default=None)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", default="7runs")
    ap.add_argument("--work", type=Path, default=Path(__file__).parents[1] / "work")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results = {"date": dt.date.today().isoformat(), "cores": os.cpu_count(), "load_before": os.getloadavg(),
               "budget": args.budget}
    for kind in ([args.only] if args.only else KINDS):
        results[kind] = problem(kind, args.work, args.seeds, args.budget)
        r = results[kind]
        g = r["grid"]
        print(f"{kind}: repeated grid {g['runs']} runs, {g['compute_s']:.0f} s; best {g['best']} "
              f"{g['best_mean']:.4f} (sd {g['sd']:.4f}); single-seed best {g['seed0_best']} {g['seed0_best_top1']:.4f}")
        for t in r["tunes"]:
            print(f"  seed {t['seed']}: {100 * t['of_repeated_grid']:.1f}% of the repeated grid "
                  f"({100 * t['of_single_grid']:.1f}% of the single), winner {t['winner']}, final top-1 "
                  f"{t['final_top1']:.4f} ({'tied or better' if t['tied_or_better'] else 'worse'}), "
                  f"{t['search_trials']} trials ({t['pruned']} pruned), {t['spent_s']:.0f}/{t['budget_wall_s']:.0f} s")
        print(f"  median {100 * r['median_of_repeated_grid']:.1f}% of the repeated grid, tied or better in "
              f"{r['tied_or_better']} of {len(r['tunes'])}")
    results["load_after"] = os.getloadavg()
    (Path(__file__).parent / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
