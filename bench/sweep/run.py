"""Benchmark: caffegen's sweep (parallel slots + diverged-run kill) vs a plain sequential loop of
`caffe train` over the same solvers, measured in one run on the same machine.

    .venv/bin/python bench/sweep/run.py [--spec default] [--work bench/sweep/work]

1. `caffegen sweep SPEC` into WORK/caffegen (wall time T_caffegen, per-run orchestration overhead from
   each manifest: render + validate + launch + log parsing, excluding caffe's own time);
2. the same rendered train_val/solver files, copied to WORK/loop/<variant>/, run one after the other
   with `caffe train -solver solver.prototxt` and Caffe's default threading, each to max_iter
   (T_loop) — what one would do by hand;
3. the winner (best test top-1) of each, from the logs.

Prints a JSON summary and writes it to bench/sweep/results.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from caffegen.logs import parse_log  # noqa: E402
from caffegen.run.trainer import train_argv  # noqa: E402
from caffegen.toolchain import locate  # noqa: E402


def best_top1(log: Path, metric: str = "accuracy_at_1") -> float | None:
    curves = parse_log(log)
    values = [v for _, v in curves.test.series(metric) if v == v]
    return max(values) if values else None


def winner(scores: dict[str, float | None]) -> tuple[str, float]:
    ranked = sorted(((v, k) for k, v in scores.items() if v is not None), key=lambda t: (-t[0], t[1]))
    return ranked[0][1], ranked[0][0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="default")
    ap.add_argument("--work", type=Path, default=HERE / "work")
    args = ap.parse_args()
    caffe = locate()
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    load_before = os.getloadavg()

    # 1. caffegen
    out = work / "caffegen"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "caffegen", "sweep", args.spec, "--out", str(out), "--no-report"],
                          capture_output=True, text=True)
    t_caffegen = time.perf_counter() - t0
    if proc.returncode not in (0,):
        print(proc.stderr, file=sys.stderr)
        return 1
    variants = sorted(p.parent.name for p in out.glob("*/manifest.json"))
    manifests = {v: json.loads((out / v / "manifest.json").read_text()) for v in variants}
    overhead = [m["overhead_s"] for m in manifests.values()]
    statuses = {v: m["status"] for v, m in manifests.items()}
    cg_scores = {v: best_top1(out / v / "train.log") for v in variants}

    # 2. the plain loop, same files
    loop = work / "loop"
    t1 = time.perf_counter()
    for v in variants:
        d = loop / v
        (d / "snapshots").mkdir(parents=True)
        for f in ("train_val.prototxt", "solver.prototxt"):
            shutil.copy(out / v / f, d / f)
        env = dict(os.environ, GLOG_logtostderr="1")
        with open(d / "train.log", "wb") as log:
            subprocess.run(train_argv(caffe), cwd=d, env=env, stdout=log, stderr=subprocess.STDOUT)
    t_loop = time.perf_counter() - t1
    loop_scores = {v: best_top1(loop / v / "train.log") for v in variants}

    w_cg, w_loop = winner(cg_scores), winner(loop_scores)
    result = {
        "spec": args.spec, "runs": len(variants), "statuses": statuses,
        "caffegen_wall_s": round(t_caffegen, 1), "loop_wall_s": round(t_loop, 1),
        "ratio": round(t_caffegen / t_loop, 3),
        "overhead_s_per_run": {"mean": round(statistics.mean(overhead), 3), "max": round(max(overhead), 3),
                               "first": round(manifests[variants[0]]["overhead_s"], 3)},
        "winner_caffegen": {"variant": w_cg[0], "top1": w_cg[1]},
        "winner_loop": {"variant": w_loop[0], "top1": w_loop[1]},
        "same_winner": w_cg[0] == w_loop[0],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_before": load_before,
                    "load_after": os.getloadavg()},
        "caffe": str(caffe.binary),
    }
    (HERE / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
