"""Benchmark: training images/s with the seed's raw-JPEG ImageData input vs an LMDB (convert_imageset).

Same net, same solver, same transform (crop 224, mirror, mean), same machine, one invocation; only the
data layer differs. Throughput comes from the real caffe logs: glog timestamps of the ``Iteration N,
loss`` lines, (last N - first N) x batch / elapsed, with the first ``--warmup`` iterations (net set-up,
first prefetch, page cache) excluded. Backends alternate over ``--rounds`` to spread load noise.

    .venv/bin/python bench/input_pipeline/run.py            # defaults documented in --help
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import nets  # noqa: E402

from caffegen.data.demo import generate  # noqa: E402
from caffegen.data.lists import scan, write_lists  # noqa: E402
from caffegen.data.prepare import to_lmdb  # noqa: E402
from caffegen.toolchain import locate  # noqa: E402

# glog: I20261122 09:34:16.020797 12345 solver.cpp:...] Iteration 20, loss = 2.99  (year optional)
ITER_LINE = re.compile(r"^I(?:\d{4})?\d{4} (\d\d):(\d\d):(\d\d\.\d+)\s+\d+\s+\S+\] Iteration (\d+), loss")


def iteration_times(log: str) -> list[tuple[int, float]]:
    """(iteration, seconds since midnight, unwrapped past midnight) for every ``Iteration N, loss`` line."""
    out: list[tuple[int, float]] = []
    offset = 0.0
    for line in log.splitlines():
        m = ITER_LINE.match(line)
        if not m:
            continue
        t = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) + offset
        if out and t < out[-1][1]:
            offset += 86400.0
            t += 86400.0
        out.append((int(m.group(4)), t))
    return out


def throughput(log: str, batch: int, warmup: int) -> dict:
    """Images/s between the first logged iteration >= ``warmup`` and the last one."""
    pts = [(i, t) for i, t in iteration_times(log) if i >= warmup]
    if len(pts) < 2:
        raise RuntimeError(f"too few 'Iteration N, loss' lines after iteration {warmup} in the log")
    (i0, t0), (i1, t1) = pts[0], pts[-1]
    return {"iters": i1 - i0, "seconds": round(t1 - t0, 3), "images_per_s": round((i1 - i0) * batch / (t1 - t0), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=HERE / "work", help="scratch folder (git-ignored)")
    ap.add_argument("--results", type=Path, default=HERE / "results.json", help="where to write the figures")
    ap.add_argument("--per-class", type=int, default=25, help="demo images per class (x20 classes)")
    ap.add_argument("--resize", type=int, default=256, help="the seed's new_height/new_width")
    ap.add_argument("--crop", type=int, default=224, help="the seed's crop_size")
    ap.add_argument("--batch", type=int, default=16, help="the seed's batch_size")
    ap.add_argument("--width", default="0.125", help="net width multipliers, comma-separated (1 = the seed's 64..256)")
    ap.add_argument("--iters", type=int, default=60, help="training iterations per run")
    ap.add_argument("--warmup", type=int, default=10, help="iterations excluded from the timing")
    ap.add_argument("--display", type=int, default=5, help="solver display interval")
    ap.add_argument("--rounds", type=int, default=3, help="runs per backend, alternating")
    ap.add_argument("--threads", default="0,1",
                    help="OMP/OpenBLAS thread caps to compare, comma-separated (0 = library default = all cores)")
    args = ap.parse_args()

    inst = locate()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    demo = generate(work / f"demo_{args.per_class}", classes=20, per_class=args.per_class, seed=0)
    t_demo = time.perf_counter() - t
    listset = scan(work / f"demo_{args.per_class}", val_fraction=0.1, seed=0)
    files = write_lists(listset, work / "lists")
    t = time.perf_counter()
    lmdb = to_lmdb(files["train"], work / f"train_lmdb_{args.resize}", resize=args.resize, overwrite=True)
    t_lmdb = time.perf_counter() - t

    sources = {"imagedata": str(files["train"]), "lmdb": str(lmdb)}
    runs: list[dict] = []
    summary: list[dict] = []
    for width in [float(w) for w in args.width.split(",")]:
        widths = tuple(max(4, int(round(w * width))) for w in nets.SEED_WIDTHS)
        for threads in [int(t) for t in args.threads.split(",")]:
            cfg = {"width": width, "widths": widths, "threads": threads or "library default"}
            order = [b for _ in range(args.rounds) for b in ("imagedata", "lmdb")]
            for n, backend in enumerate(order):
                d = work / f"run_w{width:g}_t{threads}_{n}_{backend}"
                d.mkdir(exist_ok=True)
                net = nets.data_layer("TRAIN", backend=backend, source=sources[backend], batch=args.batch,
                                      crop=args.crop, resize=args.resize, mirror=True, shuffle=True)
                (d / "train.prototxt").write_text(net + nets.body(20, widths, accuracy=False))
                (d / "solver.prototxt").write_text(nets.solver(str(d / "train.prototxt"), base_lr=0.01,
                                                               max_iter=args.iters, display=args.display))
                load = os.getloadavg()[0]
                proc = subprocess.run([str(inst.binary), "train", f"--solver={d / 'solver.prototxt'}"], cwd=d,
                                      capture_output=True, text=True, env=inst.env(threads=threads or None))
                (d / "caffe.log").write_text(proc.stderr)
                if proc.returncode != 0:
                    fatal = next((ln for ln in proc.stderr.splitlines() if ln.startswith("F")), proc.stderr[-300:])
                    raise SystemExit(f"caffe train ({backend}) failed: {fatal}")
                r = {**cfg, "backend": backend, "loadavg_before": round(load, 2),
                     **throughput(proc.stderr, args.batch, args.warmup)}
                runs.append(r)
                print(f"width {width:g} threads {cfg['threads']}: {backend:>9} {r['images_per_s']:8.2f} images/s "
                      f"({r['iters']} iters in {r['seconds']} s, load avg before {r['loadavg_before']})", flush=True)
            med = {b: statistics.median(r["images_per_s"] for r in runs[-len(order):] if r["backend"] == b)
                   for b in ("imagedata", "lmdb")}
            summary.append({**cfg, "median_images_per_s": med,
                            "lmdb_over_imagedata": round(med["lmdb"] / med["imagedata"], 2)})

    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
                    "caffe": f"{inst.version} ({inst.origin})", "shared": "cores shared with other engineers"},
        "config": {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                   "images": demo.images, "train_images": len(listset.train)},
        "prep_seconds": {"demo_data": round(t_demo, 2), "convert_imageset": round(t_lmdb, 2)},
        "summary": summary,
        "runs": runs,
        "command": " ".join([".venv/bin/python", "bench/input_pipeline/run.py", *sys.argv[1:]]),
    }
    args.results.write_text(json.dumps(result, indent=1) + "\n")
    print("\nwidth  threads           ImageData img/s  LMDB img/s  LMDB/ImageData (target >= 1.5x)")
    for s in summary:
        m = s["median_images_per_s"]
        print(f"{s['width']:<6g} {str(s['threads']):<17} {m['imagedata']:>15.2f} {m['lmdb']:>11.2f} "
              f"{s['lmdb_over_imagedata']:>8.2f}x")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
