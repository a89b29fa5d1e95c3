"""Schedules Caffe lacks, as chains of segments: what a boundary costs, and does any schedule help?

    .venv/bin/pip install -e '.[bench]'        # scikit-learn: the digits image set ships inside it
    .venv/bin/python bench/schedules/run.py [--only cost|help] [--repeats 3]

* **cost**: the default spec (`caffegen/specs/default.toml`: 600 iterations, its demo set) with base_lr 0.01 and
  the policies fixed (one caffe) and cosine, onecycle, sgdr (chains), each run ``--repeats`` times one after the
  other (jobs 1, nothing else running); a schedule's overhead is the median of its runs' wall seconds minus fixed's,
  per boundary (segments - 1) and as a share of fixed's run. Target: < 2 s per boundary, < 5% of a run.
* **help**: bench/problems.py's repeated grids (base_lr 0.1 / 0.01 / 0.001 x Caffe's seven, and x the chained
  schedules, x seeds 0, 1, 2: same data, net, solver and seeds) on the default problem and on digits, as one set: the best mean of each schedule over its base_lr values, Hsu's MCB on the pooled
  seed noise (caffegen's own verdict): which schedules could be the best, and whether the best chained schedule
  beats the best of Caffe's seven beyond that noise.

Writes bench/schedules/results.json and prints the tables.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from problems import KINDS, repeated_grid  # noqa: E402

from caffegen.prototxt.schedule import POLICIES  # noqa: E402
from caffegen.report.analysis import load_runs, ranked_variants, seed_noise_of, verdict  # noqa: E402
from caffegen.report.stats import could_be_best  # noqa: E402
from caffegen.sweep.store import read_sweep  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHAINS = ("cosine", "onecycle", "sgdr")


def cost(work: Path, repeats: int) -> dict:
    import tomllib

    import tomli_w

    tables = tomllib.loads((ROOT / "caffegen" / "specs" / "default.toml").read_text())
    tables["name"] = "boundary_cost"
    tables["grid"] = {"base_lr": [0.01], "lr_policy": ["fixed", *CHAINS], "repeats": repeats}
    tables["run"] = {"jobs": 1}
    spec = work / "boundary_cost.toml"
    spec.write_text(tomli_w.dumps(tables))
    out = work / "runs" / "boundary_cost"
    proc = subprocess.run([sys.executable, "-m", "caffegen", "sweep", str(spec), "--out", str(out), "--no-report"],
                          cwd=work, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows, _ = read_sweep(out)
    walls: dict[str, list[float]] = {}
    segments: dict[str, int] = {}
    for r in rows:
        policy = r.axes["lr_policy"]
        walls.setdefault(policy, []).append(r["wall_s"])
        manifest = json.loads((out / r.variant / "manifest.json").read_text())
        segments[policy] = len(manifest.get("segments") or [None])
    base = statistics.median(walls["fixed"])
    result = {"fixed_wall_s": base, "walls": walls, "schedules": {}}
    for policy in CHAINS:
        extra = statistics.median(walls[policy]) - base
        boundaries = segments[policy] - 1
        result["schedules"][policy] = {"segments": segments[policy], "extra_s": extra,
                                       "per_boundary_s": extra / boundaries, "share": extra / base}
    return result


def helps(kind: str, work: Path) -> dict:
    runs, record = load_runs(repeated_grid(kind, work))
    chained_runs, _ = load_runs(repeated_grid(kind, work, chains=True))
    ranked = [v for v in ranked_variants(runs + chained_runs, record) if v.score is not None]
    ver = verdict(ranked)
    noise = seed_noise_of(ranked)
    bounds = could_be_best({v.name: v.score for v in ranked}, {v.name: len(v.best) for v in ranked}, noise)
    per_schedule: dict[str, dict] = {}
    for v in ranked:                                   # best first: the first seen is each schedule's best lr
        policy = v.axes["lr_policy"]
        if policy not in per_schedule:
            per_schedule[policy] = {"variant": v.name, "mean": v.score, "seeds": v.best, "could_be_best": v.tied,
                                    "mcb_upper": bounds.get(v.name)}
    native = next(v for v in ranked if v.axes["lr_policy"] in POLICIES)
    chained = next(v for v in ranked if v.axes["lr_policy"] not in POLICIES)
    return {"runs": sum(len(v.runs) for v in ranked), "winner": ranked[0].name, "headline": ver.headline,
            "sd": noise.sigma, "df": noise.df, "blocked": noise.blocked, "shared_p": noise.shared_p,
            "could_be_best": [v.name for v in ranked if v.tied],
            "best_native": {"variant": native.name, "mean": native.score},
            "best_chained": {"variant": chained.name, "mean": chained.score},
            "chained_beats_native_beyond_noise": all(not v.tied for v in ranked if v.axes["lr_policy"] in POLICIES),
            "schedules": per_schedule}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["cost", "help"], default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path(__file__).parents[1] / "work")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    path = Path(__file__).parent / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results.update(date=dt.date.today().isoformat(), cores=os.cpu_count())
    if args.only in (None, "cost"):
        load = os.getloadavg()
        t0 = time.time()
        c = cost(args.work, args.repeats)
        results["cost"] = {**c, "load_before": load, "load_after": os.getloadavg(), "wall_s": time.time() - t0}
        print(f"cost: fixed {c['fixed_wall_s']:.1f} s per run (median of {args.repeats}); load {load[0]:.2f} -> "
              f"{os.getloadavg()[0]:.2f}")
        for policy, s in c["schedules"].items():
            print(f"  {policy:<9} {s['segments']:>2} segments: +{s['extra_s']:.2f} s, {s['per_boundary_s']:.2f} s "
                  f"per boundary, {100 * s['share']:.1f}% of a run")
        path.write_text(json.dumps(results, indent=2))
    if args.only in (None, "help"):
        for kind in KINDS:
            h = helps(kind, args.work)
            results[kind] = h
            print(f"{kind}: {h['runs']} runs; {h['headline']}")
            print(f"  seed noise sd {h['sd']:.4f} ({h['df']} df); could be the best: {', '.join(h['could_be_best'])}")
            print(f"  best of Caffe's seven {h['best_native']['variant']} {h['best_native']['mean']:.4f}; best chained "
                  f"{h['best_chained']['variant']} {h['best_chained']['mean']:.4f}; a chain beats the seven beyond "
                  f"noise: {'yes' if h['chained_beats_native_beyond_noise'] else 'no'}")
            for policy, s in h["schedules"].items():
                print(f"  {policy:<14} {s['variant']:<26} {s['mean']:.4f}  "
                      f"{'could be the best' if s['could_be_best'] else ''}")
            path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
