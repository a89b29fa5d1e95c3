"""lr-find against the grid: is the LR range test's suggestion within a decade of the full grid's best base_lr, and
what does it cost next to the grid?

    .venv/bin/pip install -e '.[bench]'        # scikit-learn: the digits image set ships inside it
    .venv/bin/python bench/lrfind/run.py [--only default|digits]

The two problems of ``bench/search`` (the same specs, read from there): ``default`` (the default spec: 20-class demo
set, 400 val images, 600 iterations) and ``digits`` (scikit-learn's 1,797 digit images at 32x32, 400 iterations). For
each, one after the other on this machine: ``caffegen lr-find`` as a user runs it (its defaults: 1e-7 -> 10 over 100
iterations), then the full 3 base_lr x 7 lr_policy grid. Recorded: the three suggestions (valley is the one printed),
the grid's winner and its base_lr, the mean best top-1 of each base_lr over the 7 policies, the decades between the
suggestion and the grid's best base_lr (goal <= 1), and lr-find's wall time as a fraction of the grid's compute (the
sum of its runs' wall seconds; goal <= 5%). Writes bench/lrfind/results.json.
"""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from caffegen.probes.lrfind import lr_find  # noqa: E402
from caffegen.sweep.spec import load_spec  # noqa: E402
from caffegen.toolchain import locate  # noqa: E402

_search = importlib.util.spec_from_file_location("search_bench", ROOT / "bench" / "search" / "run.py")
search = importlib.util.module_from_spec(_search)
_search.loader.exec_module(search)  # the problems, their specs and the store reader are bench/search's


def measure(problem: str, work: Path) -> dict:
    name = f"{problem}_lrfind"
    spec = work / f"{name}.toml"
    spec.write_text(search.base_spec(problem, work, name) + "\n" + search.GRID)
    t0 = time.time()
    found = lr_find(load_spec(str(spec)), work / "runs" / f"{name}-lr-find", locate(), log=lambda line: None)
    lr_find_s = time.time() - t0

    out = work / "runs" / name
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "caffegen", "sweep", str(spec), "--out", str(out), "--no-report"],
                          cwd=work, capture_output=True, text=True)
    grid_wall = time.time() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [r for r in search.runs(out) if r["best_top1"] is not None]
    win = max(rows, key=lambda r: (r["best_top1"], -(r["final_loss"] or 1e9)))
    best_lr = json.loads(win["axes"])["base_lr"]
    by_lr: dict[float, list[float]] = {}
    for r in rows:
        by_lr.setdefault(json.loads(r["axes"])["base_lr"], []).append(r["best_top1"])
    compute = sum(r["wall_s"] or 0 for r in search.runs(out))
    decades = {k: round(abs(math.log10(v / best_lr)), 2) for k, v in found.suggestions.items()}
    return {
        "lr_find": {"suggestions": {k: float(f"{v:.3g}") for k, v in found.suggestions.items()},
                    "grid_around_valley": found.grid, "iterations": len(found.lrs),
                    "blew_up_at": float(f"{found.blew_up_at:.3g}") if found.blew_up_at else None,
                    "wall_s": round(lr_find_s, 1)},
        "grid": {"runs": len(rows), "winner": win["variant"], "winner_top1": win["best_top1"], "best_base_lr": best_lr,
                 "mean_best_top1_by_base_lr": {str(k): round(sum(v) / len(v), 4) for k, v in sorted(by_lr.items())},
                 "compute_run_s": round(compute, 1), "wall_s": round(grid_wall, 1)},
        "decades_from_grid_best": decades,
        "valley_within_a_decade": decades.get("valley", math.inf) <= 1.0,
        "lr_find_vs_grid_compute": round(lr_find_s / compute, 4),
    }


def main() -> None:
    search.run_problems(measure, "caffegen-lrfind-bench-", Path(__file__).parent / "results.json")


if __name__ == "__main__":
    main()
