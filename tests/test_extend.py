"""`caffegen extend` follows a run as the sweep does (one run path): the sweep's own stop settings, and every signal
the sweep honours, on the real binary."""
from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import write_spec
from sweep_state import store_rows as rows, wait_for

CAFFEGEN = [sys.executable, "-m", "caffegen"]
pytestmark = pytest.mark.caffe


def finished_sweep(tmp_path: Path, run_table: str) -> tuple[Path, Path]:
    """A one-run sweep of 20 iterations at an lr too small to learn anything (its top-1 never improves)."""
    spec = write_spec(tmp_path, name="ex", max_iter=20, test_interval=20, display=10, lrs="[1e-9]")
    spec.write_text(spec.read_text() + run_table)
    proc = subprocess.run(CAFFEGEN + ["sweep", str(spec), "--no-report"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "ex"
    return out, out / "lr1e-09_fixed"


def test_extend_applies_the_sweeps_own_early_stop(tmp_path):
    out, run = finished_sweep(tmp_path, "early_stop = 3\n")
    assert rows(out)[run.name]["status"] == "done"
    proc = subprocess.run(CAFFEGEN + ["extend", str(run), "--iters", "100000"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = rows(out)[run.name]
    assert row["status"] == "early-stopped" and "has not improved" in row["reason"], row
    assert row["last_iter"] < 200 and row["max_iter"] == 100000
    assert list((run / "snapshots").glob("*.solverstate"))        # stopped with a snapshot, as in the sweep


def test_sigterm_stops_an_extension_with_a_snapshot_and_exit_143(tmp_path):
    out, run = finished_sweep(tmp_path, "")
    proc = subprocess.Popen(CAFFEGEN + ["extend", str(run), "--iters", "100000"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def past(it: int) -> bool:
            found = re.findall(r"Iteration (\d+)", (run / "train.log").read_text(errors="replace"))
            return bool(found) and int(found[-1]) > it

        wait_for(lambda: past(60), timeout=120)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("caffegen: error:")]
    assert len(errors) == 1 and "stopped by SIGTERM (snapshot kept)" in errors[0], stderr
    row = rows(out)[run.name]
    assert row["status"] == "interrupted" and row["pid"] is None and row["last_iter"] > 60
    newest = max(int(m) for m in re.findall(r"_iter_(\d+)\.solverstate", " ".join(
        p.name for p in (run / "snapshots").iterdir())))
    assert newest > 20                                             # it snapshotted where SIGTERM found it


def test_a_stop_rule_of_your_own_stops_a_real_run(tmp_path, caffe_install):
    """The plug-in point: a StopRule defined here, told each whole test pass and the log so far, stops a real
    caffe (with a snapshot) through the one run path, beside the built-in divergence rule."""
    from caffegen.run.stops import Decision, Divergence, StopRule
    from caffegen.run.trainer import Training, follow, local_slot
    from caffegen.sweep.store import read_sweep

    out, run = finished_sweep(tmp_path, "")
    solver = run / "solver.prototxt"
    solver.write_text(re.sub(r"max_iter: \d+", "max_iter: 100000", solver.read_text()))
    metric = read_sweep(out)[1].metric

    class ThreeTestPasses(StopRule):
        def __init__(self) -> None:
            self.passes: list[int] = []

        def on_test(self, iteration, value):
            self.passes.append(iteration)
            return Decision("early-stopped", f"{len(self.passes)} test passes are enough",
                            kill=False) if len(self.passes) == 3 else None

    rule = ThreeTestPasses()
    executor, slot = local_slot()
    training = Training(run, caffe_install, executor, slot, metric=metric, stops=[Divergence(), rule], fresh=True)
    status, reason = follow(training, log=lambda line: None)
    assert (status, reason) == ("early-stopped", "3 test passes are enough")
    assert rule.passes == [20, 40, 60]                          # whole passes only, each once (not iteration 0)
    assert training.follower.iteration < 1000 and list((run / "snapshots").glob("*.solverstate"))
