"""Check that the demo dataset is learnable at the sweep's reduced resolution, and that a bad learning
rate visibly fails on it: short real ``caffe train`` runs, test accuracy read from the logs.

    .venv/bin/python bench/input_pipeline/learnability.py [--lrs 0.01,1.0] [--iters 200] [--widths 16,32]

Default data path: demo-data (20 classes x 50, seed 0) -> `caffegen lists` 9:1 -> ImageData resize 64,
crop 56, mirror, the seed's mean values; batch 16. Widths are the net's conv widths (the seed's
5-conv net is ``--widths 64,64,128,128,256``). Figures are recorded in docs/data.md.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import nets  # noqa: E402

from caffegen.data.demo import generate  # noqa: E402
from caffegen.data.lists import scan, write_lists  # noqa: E402
from caffegen.toolchain import locate  # noqa: E402

TEST_LINE = re.compile(r"Iteration (\d+), Testing net|Test net output #\d+: (\w+) = (\S+)")


def test_curve(log: str) -> list[tuple[int, float, float]]:
    """(iteration, accuracy, loss) at every test pass of a caffe log."""
    out, it, acc = [], None, None
    for line in log.splitlines():
        m = TEST_LINE.search(line)
        if not m:
            continue
        if m.group(1):
            it = int(m.group(1))
        elif m.group(2) == "accuracy_at_1":
            acc = float(m.group(3))
        elif m.group(2) == "loss" and it is not None:
            out.append((it, acc, float(m.group(3))))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=HERE / "work")
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--lrs", default="0.01,1.0")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--widths", default="16,32", help="conv widths, e.g. the seed's 64,64,128,128,256")
    ap.add_argument("--resize", type=int, default=64)
    ap.add_argument("--crop", type=int, default=56)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    inst = locate()
    work = args.work.resolve()
    demo = generate(work / f"demo_{args.per_class}", classes=20, per_class=args.per_class, seed=0)
    listset = scan(demo.out_dir, val_fraction=0.1, seed=0)
    files = write_lists(listset, work / f"lists_{args.per_class}")
    widths = tuple(int(w) for w in args.widths.split(","))
    test_iter = -(-len(listset.val) // 20)
    results = {}
    for lr in [float(x) for x in args.lrs.split(",")]:
        d = work / f"learn_{args.widths.replace(',', '-')}_lr{lr:g}"
        d.mkdir(parents=True, exist_ok=True)
        net = (nets.data_layer("TRAIN", backend="imagedata", source=str(files["train"]), batch=args.batch,
                               crop=args.crop, resize=args.resize, mirror=True, shuffle=True)
               + nets.data_layer("TEST", backend="imagedata", source=str(files["val"]), batch=20,
                                 crop=args.crop, resize=args.resize, mirror=False, shuffle=False)
               + nets.body(20, widths, accuracy=True))
        (d / "net.prototxt").write_text(net)
        (d / "solver.prototxt").write_text(nets.solver(str(d / "net.prototxt"), base_lr=lr, max_iter=args.iters,
                                                       display=50, test_iter=test_iter,
                                                       test_interval=max(1, args.iters // 4)))
        proc = subprocess.run([str(inst.binary), "train", f"--solver={d / 'solver.prototxt'}"], cwd=d,
                              capture_output=True, text=True, env=inst.env(threads=args.threads))
        (d / "caffe.log").write_text(proc.stderr)
        curve = test_curve(proc.stderr)
        results[f"{lr:g}"] = {"rc": proc.returncode, "curve": curve}
        pts = ", ".join(f"it {i}: acc {a:.2f} loss {lo:.3g}" for i, a, lo in curve)
        print(f"lr {lr:g} widths {widths}: rc {proc.returncode}; {pts}", flush=True)
    (work / f"learnability_{args.widths.replace(',', '-')}.json").write_text(json.dumps(
        {"config": {k: str(v) for k, v in vars(args).items()}, "train": len(listset.train),
         "val": len(listset.val), "chance": 1 / 20, "results": results}, indent=1))


if __name__ == "__main__":
    main()
