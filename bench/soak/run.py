"""Soak: a 40-run sweep that is killed again and again, and must end as if nothing had happened.

    .venv/bin/python bench/soak/run.py [--seed 0] [--driver-kills 5] [--run-kills 12]

One tiny net (the test suite's) on a 3-class demo set, 8 base_lr x 5 lr_policy = 40 seeded runs, 4 slots. First a
clean sweep of the spec; then the soak: the same spec in another folder, while at random moments (seeded) a random
running caffe is killed with -9, or the driver itself is (``--driver-kills`` times), and then restarted. At the end:

* every run is ``done``, once (one store row each);
* every ``train.log`` has one writer after each resume point (the glog thread ids never interleave);
* every kept snapshot is its own run's (its solverstate names a caffemodel of the same folder, at an iteration that
  run's log reached) and reads whole;
* no caffe process of the sweep is left;
* the winner is the clean sweep's, or tied with it on best test top-1 (the 3-class val set is small; a resumed run
  sees its data in another order after the resume point, so curves may differ slightly).

Writes bench/soak/results.json (counts: kills survived, runs resumed, anything lost) and prints it.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from caffegen.run.processes import is_running  # noqa: E402
from caffegen.run.folder import check_snapshot, snapshots  # noqa: E402
from conftest import tiny_net  # noqa: E402  (the tests' narrow net)
from sweep_state import writers  # noqa: E402  (the tests' reader of glog thread ids)

SPEC = """
name = "soak"
[data]
demo = { classes = 3, per_class = 10, seed = 0 }
""" + tiny_net() + """[solver]
max_iter = 600
test_interval = 100
display = 20
random_seed = 0
[grid]
base_lr = [0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001]
lr_policy = ["fixed", "step", "poly", "inv", "multistep"]
[run]
jobs = 4
"""
CAFFEGEN = [sys.executable, "-m", "caffegen", "sweep"]


def rows(out: Path) -> dict[str, dict]:
    if not (out / "sweep.db").exists():
        return {}
    con = sqlite3.connect(f"{(out / 'sweep.db').resolve().as_uri()}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        return {r["variant"]: dict(r) for r in con.execute("SELECT * FROM runs")}
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def winner(table: dict[str, dict]) -> tuple[str, float]:
    best = max(table.values(), key=lambda r: (r["best_top1"] or 0.0, -(r["final_loss"] or 1e9)))
    return best["variant"], best["best_top1"] or 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--driver-kills", type=int, default=5)
    ap.add_argument("--run-kills", type=int, default=12)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="caffegen-soak-") as tmp:
        work = Path(tmp)
        spec = work / "soak.toml"
        spec.write_text(SPEC)
        t0 = time.time()
        clean = subprocess.run(CAFFEGEN + [str(spec), "--out", str(work / "clean"), "--no-report"], cwd=work,
                               capture_output=True, text=True)
        assert clean.returncode == 0, clean.stderr[-2000:]
        clean_s = time.time() - t0
        out = work / "soak"
        driver_kills = run_kills = restarts = 0
        seen_pids: set[tuple[int, int]] = set()
        t0 = time.time()
        driver = subprocess.Popen(CAFFEGEN + [str(spec), "--out", str(out), "--no-report"], cwd=work,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while True:
            deadline = time.time() + rng.uniform(1.0, 6.0)
            while time.time() < deadline and driver.poll() is None:
                for r in rows(out).values():
                    if r["status"] == "running" and r["pid"]:
                        seen_pids.add((r["pid"], r["pid_start"]))
                time.sleep(0.05)
            if driver.poll() is not None:
                stderr = driver.stderr.read()
                if driver.returncode == 1 and run_kills:  # runs killed by the soak are "failed": resume them
                    restarts += 1
                else:
                    assert driver.returncode == 0, stderr[-2000:]
                    if all(r["status"] == "done" for r in rows(out).values()) and len(rows(out)) == 40:
                        break
                    restarts += 1
            else:
                live = [r for r in rows(out).values() if r["status"] == "running" and is_running(r["pid"],
                                                                                                  r["pid_start"])]
                if driver_kills < args.driver_kills and (rng.random() < 0.4 or run_kills >= args.run_kills):
                    driver.kill()
                    driver.wait()
                    driver_kills += 1
                    restarts += 1
                elif live and run_kills < args.run_kills:
                    victim = rng.choice(live)
                    try:
                        os.kill(victim["pid"], signal.SIGKILL)
                        run_kills += 1
                    except ProcessLookupError:
                        pass
                    continue
                else:
                    continue
            driver = subprocess.Popen(CAFFEGEN + [str(spec), "--out", str(out), "--no-report"], cwd=work,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        soak_s = time.time() - t0
        table = rows(out)
        problems = []
        if len(table) != 40 or any(r["status"] != "done" for r in table.values()):
            problems.append(f"not every run done once: {sorted((k, r['status']) for k, r in table.items())}")
        interleaved = [name for name in table if len(writers(out / name / "train.log")) !=
                       len(set(writers(out / name / "train.log")))]
        if interleaved:
            problems.append(f"logs with interleaved writers: {interleaved}")
        foreign = []
        for name, r in table.items():
            for it, state in snapshots(out / name):
                bad = check_snapshot(state)
                if bad or it > (r["last_iter"] or 0):
                    foreign.append((name, state.name, bad))
        if foreign:
            problems.append(f"snapshots not whole or not the run's own: {foreign}")
        orphans = [p for p in seen_pids if is_running(*p)]
        if orphans:
            problems.append(f"caffe processes left: {orphans}")
        clean_table = rows(work / "clean")
        (cw, cbest), (sw, sbest) = winner(clean_table), winner(table)
        tied_clean = sorted(k for k, r in clean_table.items() if r["best_top1"] == cbest)
        same_winner = sw == cw or sbest == cbest and sw in tied_clean
        if not same_winner:
            problems.append(f"winner {sw} ({sbest}) is not the clean sweep's {cw} ({cbest}) nor tied with it")
        res = {"runs": len(table), "slots": 4, "seed": args.seed,
               "driver_kills_survived": driver_kills, "run_kills_survived": run_kills, "driver_restarts": restarts,
               "runs_resumed": sum(1 for r in table.values() if (r["attempts"] or 0) > 1),
               "attempts_total": sum(r["attempts"] or 0 for r in table.values()),
               "caffe_processes_seen": len(seen_pids), "caffe_processes_left": len(orphans),
               "runs_lost": sum(1 for r in table.values() if r["status"] != "done") + 40 - len(table),
               "logs_with_two_writers_at_once": len(interleaved), "foreign_or_broken_snapshots": len(foreign),
               "winner_clean": [cw, cbest], "winner_soak": [sw, sbest], "tied_with_clean_winner": tied_clean,
               "same_winner_or_tied": same_winner, "clean_sweep_s": round(clean_s, 1), "soak_s": round(soak_s, 1),
               "loadavg_1min_end": round(os.getloadavg()[0], 2), "problems": problems}
    print(json.dumps(res, indent=1))
    (Path(__file__).parent / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
