"""The same small sweep on the local executor and on Ray: what does one Ray actor per run cost?

    .venv/bin/pip install -e '.[ray]'
    .venv/bin/python bench/cluster/run.py [--repeats 3] [--iters 300]

One 4-run spec (the smoke spec's tiny net with BatchNorm on a 4-class demo set with 16 val images, base_lr 0.1/0.01
x fixed/step, 300 iterations), swept four ways; the first three interleaved in each repeat so that the machine's
load drifts alike for them:

* ``local``: ``caffegen sweep -j 2`` (two child processes, one BLAS thread each);
* ``ray-cluster``: ``--backend ray --address`` on a two-node Ray cluster started on 127.0.0.1 (two ``ray start``,
  one CPU each: one run per node at a time, so the runs are spread over both nodes); the nodes were started with
  ``RAY_kill_child_processes_on_worker_exit=0`` but the driver does not say so, so each actor asks for it in a
  runtime env (a fresh worker process per run);
* ``ray-cluster-preset``: the same, the driver's environment saying the nodes are set up (no runtime env);
* ``ray-local``: ``--backend ray`` with no address: caffegen starts a local Ray instance itself (its start is in the
  wall time); after the others, with the cluster stopped.

``--tune``: instead, the same ``caffegen tune`` (a tiny net of your own on a 3-class demo set, 60 iterations, every
stage, ``--budget 2m``) once on the local executor (``-j 2``) and once on the two-node cluster: the wall-time ratio,
each stage's seconds on both, the slots each plan counted. Writes bench/cluster/tune.json.

Measured: each sweep command's wall time; per run, the seconds from the driver's launch (actor creation) to caffe's
start on its node (``manifest.json`` ``node.launch_s``), and the wall-time difference to the local sweep divided by
the runs; each run's best top-1 and the winner (best top-1, ties broken by the lower final loss, as the report
does); the load average before and after. Writes bench/cluster/results.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from helpers import tiny_net  # noqa: E402  (the tests' narrow net)
from ray_cluster import LocalCluster  # noqa: E402

CHILD_KILL = "RAY_kill_child_processes_on_worker_exit"

SPEC = """
name = "cluster"
[data]
demo = {{ classes = 4, per_class = 40, seed = 0 }}
""" + tiny_net(classes=4).replace("{", "{{").replace("}", "}}") + """[solver]
max_iter = {iters}
test_interval = {test_interval}
display = 10
random_seed = 0
[grid]
base_lr = [0.1, 0.01]
lr_policy = ["fixed", "step"]
[run]
jobs = 2
"""


def sweep(spec: Path, out: Path, *extra: str, env: dict | None = None) -> dict:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "caffegen", "sweep", str(spec), "--out", str(out), "--no-report",
                           *extra], cwd=out.parent, capture_output=True, text=True, timeout=1800, env=env)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"sweep {extra} failed ({done.returncode}): {done.stderr[-2000:]}")
    con = sqlite3.connect(out / "sweep.db")
    con.row_factory = sqlite3.Row
    rows = {r["variant"]: dict(r) for r in con.execute("SELECT * FROM runs")}
    con.close()
    runs = {}
    for name, r in rows.items():
        m = json.loads((out / name / "manifest.json").read_text())
        node = m.get("node") or {}
        runs[name] = {"best_top1": r["best_top1"], "final_loss": r["final_loss"], "wall_s": r["wall_s"],
                      "attempts": r["attempts"], "node": node.get("id", "")[:8] or None,
                      "launch_s": node.get("launch_s")}
    winner = max(runs, key=lambda n: (runs[n]["best_top1"] or -1, -(runs[n]["final_loss"] or 0)))
    best = runs[winner]["best_top1"]
    launches = [x["launch_s"] for x in runs.values() if x["launch_s"] is not None]
    return {"wall_s": round(wall, 2), "runs": runs, "winner": winner, "best_top1": best,
            "nodes": sorted({x["node"] for x in runs.values() if x["node"]}),
            "launch_s_mean": round(statistics.mean(launches), 3) if launches else None,
            "launch_s_max": round(max(launches), 3) if launches else None}


def tune(tmp: Path, name: str, *extra: str, env: dict | None = None) -> dict:
    """One ``caffegen tune`` of the tiny net on the demo set: its wall time and what tune.json says it spent."""
    from caffegen.prototxt import NetOptions, render_net

    net, data = tmp / "train_val.prototxt", tmp / "images"
    if not net.exists():
        net.write_text(render_net(NetOptions(num_classes=3, resize=36, test_resize=32, crop=32, train_batch=8,
                                             test_batch=4, conv_widths=(8, 8, 16, 16, 16), batchnorm=True)))
        subprocess.run([sys.executable, "-m", "caffegen", "demo-data", str(data), "--classes", "3", "--per-class",
                        "40"], check=True, capture_output=True)
    out = tmp / name
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "caffegen", "tune", str(net), "--data", str(data), "--iters", "60",
                           "--search-iters", "30", "--budget", "2m", "--out", str(out), *extra], cwd=tmp,
                          capture_output=True, text=True, timeout=1800, env=env)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"tune {name} failed ({done.returncode}): {done.stderr[-2000:]}")
    state = json.loads((out / "tune.json").read_text())
    slots = next((ln for ln in done.stderr.splitlines() if "runs at once" in ln), "")
    return {"wall_s": round(wall, 2), "plan_wall_s": state["plan"]["wall_s"],
            "spent_s": round(sum(s["spent_s"] for s in state["stages"].values()), 2),
            "stages": {k: round(v["spent_s"], 2) for k, v in state["stages"].items()},
            "winner": state["stages"]["confirm"]["decision"]["winner"]["name"], "plan_line": slots.strip()}


def main_tune() -> int:
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="cg-cluster-tune-"))
    local = tune(tmp, "local", "-j", "2")
    print(f"[bench] local tune: {local['wall_s']} s ({local['plan_line']})", flush=True)
    cluster = LocalCluster(cpus_per_node=1, fast_failure_detection=False)
    cluster.env[CHILD_KILL] = "0"
    try:
        cluster.start(workers=1)
        on = tune(tmp, "ray", "--backend", "ray", "--address", cluster.address, env=cluster.env)
    finally:
        cluster.stop()
    print(f"[bench] cluster tune: {on['wall_s']} s ({on['plan_line']})", flush=True)
    out = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                    text=True).stdout.strip(),
           "machine": {"cores": len(os.sched_getaffinity(0)), "load_before": [round(x, 2) for x in load_before],
                       "load_after": [round(x, 2) for x in os.getloadavg()]},
           "ray": __import__("ray").__version__, "local": local, "cluster": on,
           "wall_ratio": round(on["wall_s"] / local["wall_s"], 3)}
    path = ROOT / "bench" / "cluster" / "tune.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("wall_ratio", "local", "cluster")}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--tune", action="store_true", help="the same tune locally and on the cluster (bench/cluster/tune.json)")
    args = ap.parse_args(argv)
    if args.tune:
        return main_tune()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="cg-cluster-bench-"))
    spec = tmp / "cluster.toml"
    spec.write_text(SPEC.format(iters=args.iters, test_interval=max(10, args.iters // 4)))
    cluster = LocalCluster(cpus_per_node=1, fast_failure_detection=False)
    cluster.env[CHILD_KILL] = "0"    # the nodes as docs/cluster.md recommends
    preset = dict(cluster.env)
    plain = {k: v for k, v in cluster.env.items() if k != CHILD_KILL}
    t0 = time.perf_counter()
    results: dict[str, list[dict]] = {"local": [], "ray-cluster": [], "ray-cluster-preset": [], "ray-local": []}

    def record(way: str, rep: int, r: dict) -> None:
        results[way].append(r)
        print(f"[bench] {way} #{rep}: {r['wall_s']} s, winner {r['winner']} ({r['best_top1']}), "
              f"launch->caffe mean {r['launch_s_mean']} s, nodes {r['nodes']}", flush=True)

    try:
        cluster.start(workers=1)
        cluster_start_s = round(time.perf_counter() - t0, 2)
        print(f"[bench] two-node Ray cluster at {cluster.address} up in {cluster_start_s} s", flush=True)
        at = ("--backend", "ray", "--address", cluster.address)
        for rep in range(args.repeats):
            record("local", rep, sweep(spec, tmp / f"local-{rep}"))
            record("ray-cluster", rep, sweep(spec, tmp / f"ray-cluster-{rep}", *at, env=plain))
            record("ray-cluster-preset", rep, sweep(spec, tmp / f"ray-cluster-preset-{rep}", *at, env=preset))
    finally:
        cluster.stop()   # (before the local instance: the two nodes would compete with it for the cores)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    for rep in range(args.repeats):
        record("ray-local", rep, sweep(spec, tmp / f"ray-local-{rep}", "--backend", "ray", env=env))
    load_after = os.getloadavg()
    runs = len(results["local"][0]["runs"])

    def summary(way: str) -> dict:
        walls = [r["wall_s"] for r in results[way]]
        launches = [x["launch_s"] for r in results[way] for x in r["runs"].values() if x["launch_s"] is not None]
        out = {"wall_s": walls, "wall_s_median": statistics.median(walls)}
        if launches:
            out.update(launch_to_caffe_s_mean=round(statistics.mean(launches), 3),
                       launch_to_caffe_s_max=round(max(launches), 3))
        if way != "local":
            local = statistics.median(r["wall_s"] for r in results["local"])
            out["overhead_per_run_s"] = round((out["wall_s_median"] - local) / runs, 3)
        return out

    same = all(r["winner"] == results["local"][0]["winner"] for rs in results.values() for r in rs)
    same_numbers = all({n: x["best_top1"] for n, x in r["runs"].items()}
                       == {n: x["best_top1"] for n, x in results["local"][0]["runs"].items()}
                       for rs in results.values() for r in rs)
    out = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cores": len(os.sched_getaffinity(0)), "load_before": [round(x, 2) for x in load_before],
                    "load_after": [round(x, 2) for x in load_after]},
        "ray": __import__("ray").__version__,
        "spec": {"runs": runs, "max_iter": args.iters, "jobs": 2}, "repeats": args.repeats,
        "cluster_start_s": cluster_start_s,
        "summary": {way: summary(way) for way in results},
        "same_winner": same, "same_best_top1_every_run": same_numbers,
        "sweeps": results,
    }
    path = ROOT / "bench" / "cluster" / "results.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["summary"], indent=2))
    print(f"[bench] same winner: {same}; same best top-1 for every run: {same_numbers}; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
