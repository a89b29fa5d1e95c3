"""Search vs grid: does TPE or the grid with ASHA pruning find the full grid's answer for a fraction of its compute?

    .venv/bin/pip install -e '.[bench]'        # scikit-learn: the digits image set ships inside it
    .venv/bin/python bench/search/run.py [--only default|digits]

Two problems, three sweeps each, one after the other on this machine:

* ``default``: the default spec (20-class demo set, 400 val images, 7 lr_policy x 3 base_lr, 600 iterations);
* ``digits``: scikit-learn's 1,797 8x8 digit images (10 classes, upscaled to 32x32 PNGs; a 9:1 split leaves about 180 val
  images; a test pass scores 192, 12 batches of 16), the seed net with BatchNorm at crop 32, the same 21-point grid, 400
  iterations.

For each: the full **grid**; the **grid + ASHA** (``[search] sampler = "grid", pruner = "asha"``); **TPE + ASHA**
over base_lr in [1e-4, 0.3] (log) and every policy, with as many trials as the grid has points (the same budget of
runs) and with 14 (two thirds of it: the shipped ``search`` spec's budget). Measured from each sweep's store and logs: total compute (the sum of the runs' wall seconds), the sweep's
wall time, and the time from the sweep's start until some run first reached the full grid's best top-1 (within its
95% Wilson interval: at least its lower bound); and whether its winner is the grid's, or tied with it (the report's
two-proportion z-test). Writes bench/search/results.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from caffegen.logs import parse_log  # noqa: E402
from caffegen.report.stats import proportions_differ, wilson  # noqa: E402
from problems import digits_folder  # noqa: E402

GRID = '[grid]\nbase_lr = [0.1, 0.01, 0.001]\nlr_policy = "all"\n'
TPE = ('[search]\nsampler = "tpe"\ntrials = {trials}\nseed = 0\npruner = "asha"\nreduction_factor = 3\n'
       '[search.space]\nbase_lr = {{ low = 1e-4, high = 0.3, log = true }}\n'
       'lr_policy = ["fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid"]\n')
ASHA = '[search]\nsampler = "grid"\npruner = "asha"\nreduction_factor = 3\n'

DIGITS = """name = "{name}"
[data]
root = "{root}"
val_fraction = 0.1
seed = 0
[net]
num_classes = 10
resize = 36
test_resize = 32
crop = 32
batchnorm = true
train_batch = 16
test_batch = 16
mean = [128.0]
[solver]
max_iter = 400
test_interval = 50
display = 10
momentum = 0.9
weight_decay = 0.0005
random_seed = 0
"""


def base_spec(problem: str, work: Path, name: str) -> str:
    if problem == "default":
        text = (ROOT / "caffegen" / "specs" / "default.toml").read_text()
        head, _, rest = text.partition("[grid]")
        run = rest[rest.index("[run]"):]
        return head.replace('name = "default"', f'name = "{name}"') + run
    return DIGITS.format(name=name, root=digits_folder(work / "digits"))


def runs(out: Path) -> list[dict]:
    con = sqlite3.connect(f"{(out / 'sweep.db').resolve().as_uri()}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM runs")]
    finally:
        con.close()


def first_reach(out: Path, rows: list[dict], target: float, start: float) -> float | None:
    """Seconds from the sweep's start until a test pass of some run first reached ``target`` top-1."""
    best = None
    for r in rows:
        manifest = json.loads((out / r["variant"] / "manifest.json").read_text())
        t0 = dt.datetime.strptime(manifest["started_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
        for row in parse_log(out / r["variant"] / "train.log").resolved().test.rows:
            v = row.get("accuracy_at_1")
            if v is not None and v >= target and row["Seconds"] == row["Seconds"]:
                at = t0 + row["Seconds"] - start
                best = at if best is None else min(best, at)
    return best


def measure(problem: str, work: Path) -> dict:
    results: dict[str, dict] = {}
    grid_best = grid_n = None
    kinds = (("grid", GRID), ("grid_asha", GRID + ASHA), ("tpe_asha", TPE.format(trials=21)),
             ("tpe_asha_14", TPE.format(trials=14)))
    for kind, tail in kinds:
        name = f"{problem}_{kind}"
        spec = work / f"{name}.toml"
        spec.write_text(base_spec(problem, work, name) + "\n" + tail)
        out = work / "runs" / name
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-m", "caffegen", "sweep", str(spec), "--out", str(out),
                               "--no-report"], cwd=work, capture_output=True, text=True)
        wall = time.time() - t0
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows = runs(out)
        scored = [r for r in rows if r["best_top1"] is not None]
        win = max(scored, key=lambda r: (r["best_top1"], -(r["final_loss"] or 1e9)))
        n = win["test_images"]
        if kind == "grid":
            grid_best, grid_n = win["best_top1"], n
        lo = wilson(grid_best, grid_n)[0]
        starts = [dt.datetime.strptime(json.loads((out / r["variant"] / "manifest.json").read_text())["started_at"],
                                       "%Y-%m-%dT%H:%M:%S%z").timestamp() for r in rows]
        results[kind] = {
            "runs": len(rows), "pruned": sum(r["status"] == "pruned" for r in rows),
            "compute_run_s": round(sum(r["wall_s"] or 0 for r in rows), 1), "wall_s": round(wall, 1),
            "s_to_grid_best_interval": (round(x, 1) if (x := first_reach(out, rows, lo, min(starts))) is not None
                                        else None),
            "winner": win["variant"], "winner_top1": win["best_top1"], "test_images": n,
            "tied_with_grid_winner": win["best_top1"] >= grid_best or not proportions_differ(
                win["best_top1"], n, grid_best, grid_n)}
    g = results["grid"]
    for kind in ("grid_asha", "tpe_asha", "tpe_asha_14"):
        r = results[kind]
        r["compute_vs_grid"] = round(r["compute_run_s"] / g["compute_run_s"], 3)
        r["wall_vs_grid"] = round(r["wall_s"] / g["wall_s"], 3)
    results["target_top1_lower_bound"] = round(wilson(grid_best, grid_n)[0], 4)
    return results


def run_problems(measure, prefix: str, results: Path) -> None:
    """A bench's main (this one's and bench/lrfind's): each problem, or ``--only`` one, measured in one temporary
    folder, with the date and the load before and after; results.json written beside the script."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=("default", "digits"), default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp)
        res = {"load_1min_start": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        for problem in ("default", "digits"):
            if args.only in (None, problem):
                res[problem] = measure(problem, work)
                print(json.dumps({problem: res[problem]}, indent=1), flush=True)
        res["load_1min_end"] = round(os.getloadavg()[0], 2)
    results.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


def main() -> None:
    run_problems(measure, "caffegen-search-bench-", Path(__file__).parent / "results.json")


if __name__ == "__main__":
    main()
