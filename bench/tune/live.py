"""Live agreement: the real `caffegen tune` on a recorded problem, its answers read against the replay's.

    .venv/bin/python bench/tune/live.py --problem digits [--seeds 5]     # after bench/tune/run.py

The replay (bench/tune/run.py) is trusted only as far as the real tune behaves like it. For each tuner seed S the
real command runs on the problem's own lists at the table's length, with the replay's budget:

    caffegen tune --data TRAIN,VAL --iters N --search-iters N/3 --seed S      # the default budget, 10%

and its winner (base_lr, schedule) is read from ``tune.json``; its truth and regret come from the table (the nearest
table base_lr, as the replay reads a rate), and its percentile in the replay's regret distribution for
``caffegen tune`` on that problem (bench/tune/results.json) says whether it falls inside it. Its compute (the
bill, everything counted) is compared with the replay's too. Writes its problem's entry of
bench/tune/live.json (the others kept) and prints a table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from problems import TABLE_PROBLEMS, problem_lists  # noqa: E402

from caffegen import __version__  # noqa: E402
from caffegen.errors import InputError  # noqa: E402
from caffegen.tune.replay import METHODS, replay  # noqa: E402
from caffegen.tune.table import load_table  # noqa: E402

TABLES = ROOT / "bench" / "tables"


def live_tune(name: str, work: Path, table, seed: int, budget: str) -> dict:
    train, val, *_ = problem_lists(name, work)
    out = work / "runs" / f"live-{name}-s{seed}"
    if out.exists():       # a tune folder resumes: an earlier tuner's answer would be read again
        import shutil

        shutil.rmtree(out)
    proc = subprocess.run([sys.executable, "-m", "caffegen", "tune", "--data", f"{train},{val}", "--iters",
                           str(table.iters), "--search-iters", str(table.search_iters), "--seed", str(seed),
                           "--budget", budget, "--out", str(out)], cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench/tune/live: caffegen tune exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    from caffegen.sweep.store import read_sweep
    from caffegen.tune.report import bill_of, grid_compute_s

    state = json.loads((out / "tune.json").read_text())
    point = state["stages"]["confirm"]["decision"]["winner"]["point"]
    config = table.config(float(point["base_lr"]), str(point["lr_policy"]))
    best = table.best_config()[1]
    sign = 1.0 if table.maximize else -1.0
    bill = bill_of(_State(state))
    compute = sum(b["compute_s"] for b in bill)
    return {"seed": seed, "winner": point, "config": list(config), "truth": table.truth(*config),
            "regret": sign * (best - table.truth(*config)), "compute_s": compute,
            "of_grid_plan": compute / grid_compute_s(state["plan"]), "trials": len(read_sweep(out / "search")[0])}


class _State:
    """The parts of a TuneState that :func:`caffegen.tune.report.bill_of` reads, from tune.json's dict."""

    def __init__(self, raw: dict) -> None:
        self.plan, self.stages = raw.get("plan"), raw.get("stages", {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problem", required=True)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", default=None, help="[default: the replayed tune's, caffegen tune's default]")
    ap.add_argument("--replays", type=int, default=400, help="replay seeds the live answers are placed among")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work")
    args = ap.parse_args()
    if args.problem not in TABLE_PROBLEMS:
        print(f"bench/tune/live: no problem {args.problem!r}: the problems are {', '.join(TABLE_PROBLEMS)}",
              file=sys.stderr)
        sys.exit(2)
    try:
        table = load_table(TABLES / f"{args.problem}.json.gz", version=__version__)
    except InputError as exc:
        print(f"bench/tune/live: {exc}", file=sys.stderr)
        sys.exit(2)
    method = METHODS[0]
    budget = args.budget or method.budget
    replayed = sorted(replay(table, method, s).regret for s in range(args.replays))
    args.work.mkdir(parents=True, exist_ok=True)
    lives = []
    for s in range(args.seeds):
        r = live_tune(args.problem, args.work.resolve(), table, s, budget)
        r["percentile"] = 100 * sum(x <= r["regret"] + 1e-12 for x in replayed) / len(replayed)
        lives.append(r)
        print(f"seed {s}: {r['winner']} -> table lr{r['config'][0]:g}_{r['config'][1]}, truth {r['truth']:.4f}, "
              f"regret {r['regret']:.4f} (replay percentile {r['percentile']:.0f}), compute {r['compute_s']:.0f} s "
              f"({100 * r['of_grid_plan']:.1f}% of the plan's repeated grid)", flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out = {"date": dt.date.today().isoformat(), "commit": commit, "problem": args.problem, "budget": budget,
           "load": os.getloadavg(), "replay_regrets": replayed, "live": lives}
    path = Path(__file__).parent / "live.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    problems = old.get("problems", {} if "problem" not in old else {old["problem"]: old})   # (one problem, before)
    path.write_text(json.dumps({"problems": {**problems, args.problem: out}}, indent=2))


if __name__ == "__main__":
    main()
