"""`caffegen sweep` on the real caffe: tiny nets on a tiny demo set, so each run takes seconds."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from caffegen.errors import InputError
from caffegen.logs import LogFollower
from caffegen.sweep import expand, parse_spec
from caffegen.run.stops import Divergence, EarlyStop, Timeout
from helpers import write_spec
from sweep_state import store_rows as rows, wait_for

CAFFEGEN = [sys.executable, "-m", "caffegen"]

def sweep(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(CAFFEGEN + ["sweep", *args], cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


# ----------------------------------------------------------------------------- pure parts


def test_grid_expands_to_named_variants():
    spec = parse_spec({"data": {"demo": {}}, "grid": {"base_lr": [0.1, 0.01], "lr_policy": "all",
                                                       "net.dropout": [0.0, 0.5]}})
    variants = expand(spec)
    assert len(variants) == 2 * 7 * 2
    names = [v.name for v in variants]
    assert names[0] == "lr0.1_fixed_drop0" and "lr0.01_sigmoid_drop0.5" in names
    assert len(set(names)) == len(names)
    v = next(v for v in variants if v.name == "lr0.01_step_drop0.5")
    assert v.solver["base_lr"] == 0.01 and v.solver["lr_policy"] == "step" and v.net["dropout"] == 0.5


@pytest.mark.parametrize("raw, message", [
    ({"data": {"demo": {}}, "grid": {"base_lr": [0.1], "lr_policy": "stepp"}}, "step"),
    ({"data": {"demo": {}}, "grid": {"base_lr": [-1.0]}}, "base_lr"),
    ({"data": {"demo": {}}, "grid": {"base_lr": [0.1]}, "solver": {"max_iters": 10}}, "max_iter"),
    ({"data": {"demo": {}}, "grid": {"learning_rate": [0.1]}}, "learning_rate"),
    ({"grid": {"base_lr": [0.1]}}, "[data]"),
    ({"data": {"demo": {}}, "grid": {"base_lr": [0.1]}, "run": {"jobs": 0}}, "jobs"),
    ({"data": {"demo": {}}, "grid": {"base_lr": [0.1]}, "run": {"jobs": "two"}}, '[run] jobs = "two" is not an int'),
    # the spec typed once: a value of the wrong type names its table, key and value, before anything is written
    ({"data": {"demo": {}}, "grid": {"base_lr": ["0.1", 0.01]}},
     '[grid] base_lr = "0.1" is not a number (a quoted number is text: write it without quotes)'),
    ({"data": {"demo": {}}, "grid": {"base_lr": [0.1], "momentum": ["0.9"]}}, '[grid] momentum = "0.9" is not a'),
    ({"data": {"demo": {}}, "grid": {"base_lr": [0.1], "max_iter": [20.5]}}, "[grid] max_iter = 20.5 is not an int"),
    ({"data": {"demo": {}}, "grid": {"base_lr": [0.1], "net.crop": ["32"]}}, '[grid] net.crop = "32" is not an int'),
    ({"data": {"demo": {}}, "grid": {"base_lr": [0.1], "weight_decay": [True]}}, "weight_decay = true is not a"),
    ({"data": {"demo": {}}, "grid": {"base_lr": [0.1]}, "solver": {"max_iter": "600"}}, '[solver] max_iter = "600"'),
    ({"data": {"demo": {}}, "grid": {"base_lr": [0.1]}, "net": {"mirror": "yes"}}, '[net] mirror = "yes" is not a'),
    ({"data": {"demo": {}}, "grid": {"base_lr": [0.1]}, "net": {"conv_widths": [8, "16"]}}, "[net] conv_widths"),
    ({"data": {"demo": {}}, "grid": {"base_lr": [0.1]}, "run": {"timeout": "10"}}, '[run] timeout = "10" is not a'),
    ({"data": {"demo": {}, "val_fraction": "0.2"}, "grid": {"base_lr": [0.1]}}, '[data] val_fraction = "0.2"'),
    ({"data": {"demo": {}}, "search": {"sampler": "tpe", "trials": 2, "space": {"momentum": ["0.9"]}}},
     '[search.space] momentum = "0.9" is not a number'),
    ({"data": {"demo": {"clases": 3}}, "grid": {"base_lr": [0.1]}}, "demo must be a table of classes"),
    ({"data": {"demo": {}, "sed": 1}, "grid": {"base_lr": [0.1]}}, "did you mean 'seed'"),
])
def test_bad_specs_name_the_problem(raw, message):
    with pytest.raises(InputError) as exc:
        parse_spec(raw, source="my.toml")
    assert message in str(exc.value) and "\n" not in str(exc.value)


def _follower(lines: list[str]) -> LogFollower:
    f = LogFollower()
    for line in lines:
        f.feed(line)
    return f


def test_stop_rules_on_log_lines():
    pre = "I20261123 10:00:0{} 1 solver.cpp:231] "
    diverge = Divergence(factor=10)
    healthy = _follower([pre.format(0) + "Iteration 0, loss = 3.0", pre.format(1) + "Iteration 10, loss = 2.5"])
    assert diverge.on_log(healthy, elapsed=1) is None
    nan = _follower([pre.format(0) + "Iteration 0, loss = 3.0", pre.format(1) + "Iteration 10, loss = -nan"])
    d = diverge.on_log(nan, elapsed=1)
    assert d.status == "diverged" and d.kill and "iteration 10" in d.reason
    boom = _follower([pre.format(0) + "Iteration 0, loss = 3.0", pre.format(1) + "Iteration 10, loss = 87.3365"])
    assert diverge.on_log(boom, elapsed=1).status == "diverged"
    # read late, in one go: the divergence is still dated to the first line that showed it
    late = _follower([pre.format(0) + "Iteration 0, loss = 1.09861", pre.format(1) + "Iteration 5, loss = 65.5024",
                      pre.format(2) + "Iteration 10, loss = -nan", pre.format(3) + "Iteration 15, loss = -nan"])
    d = diverge.on_log(late, elapsed=1)
    assert d.status == "diverged" and d.reason.endswith("at iteration 5") and "65.5" in d.reason
    d = Divergence(factor=100).on_log(late, elapsed=1)
    assert d.reason == "loss became nan at iteration 10"
    assert Divergence(factor=math.inf).on_log(boom, elapsed=1) is None        # a probe's: nan only
    assert Timeout(50).on_log(healthy, elapsed=40) is None
    slow = Timeout(50).on_log(healthy, elapsed=100)
    assert slow.status == "timeout" and not slow.kill


def test_early_stop_watches_the_metric_in_its_direction():
    """A loss metric improves downwards: a falling test loss never early-stops; a rising one does."""
    pre = "I20261123 10:00:{:02d} 1 solver.cpp:{}] "

    def log(values, name="loss"):
        lines = []
        for k, v in enumerate(values):
            lines += [pre.format(k, 330) + f"Iteration {10 * k}, Testing net (#0)",
                      pre.format(k, 397) + f"    Test net output #0: {name} = {v}"]
        return _follower(lines)

    loss = EarlyStop("loss", passes=2)
    assert loss.on_log(log([2.0, 1.5, 1.2, 1.0]), elapsed=1) is None
    d = loss.on_log(log([1.0, 1.5, 1.6, 1.7]), elapsed=1)
    assert d is not None and d.status == "early-stopped" and "improved on 1 " in d.reason
    top1 = EarlyStop("accuracy", passes=2)
    assert top1.on_log(log([0.1, 0.2, 0.3], "accuracy"), elapsed=1) is None
    assert top1.on_log(log([0.3, 0.2, 0.1], "accuracy"), elapsed=1).status == "early-stopped"


# ----------------------------------------------------------------------------- real caffe


@pytest.mark.caffe
def test_sweep_runs_every_variant_and_records_it(tmp_path, caffe_install):
    spec = write_spec(tmp_path, lrs="[0.01]", policies='["fixed", "step"]', jobs=2)
    proc = sweep(tmp_path, str(spec), "--no-report")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "t"
    table = rows(out)
    assert set(table) == {"lr0.01_fixed", "lr0.01_step"}
    for name, row in table.items():
        assert row["status"] == "done" and row["last_iter"] == 20
        assert 0.0 <= row["best_top1"] <= 1.0
        assert row["best_top5"] is None  # 3 classes: the top-5 layer is left out (it would always be 1)
        run = out / name
        for f in ("train_val.prototxt", "solver.prototxt", "deploy.prototxt", "train.log", "manifest.json"):
            assert (run / f).exists(), f
        m = json.loads((run / "manifest.json").read_text())
        assert m["status"] == "done" and m["exit_status"] == 0 and m["caffe"]["version"] == "1.0.0"
        assert m["params"]["solver"]["lr_policy"] == name.split("_")[1]
        assert m["files"]["solver.prototxt"]["sha256"] and m["wall_s"] > 0 and m["host"]
        assert m["random_seed"] == 0
        assert list((run / "snapshots").glob("*_iter_20.solverstate"))
        assert "GLOG" not in (run / "train.log").read_text()[:200]  # the log is caffe's own output

    again = sweep(tmp_path, str(spec), "--no-report")
    assert again.returncode == 0
    assert "2 of 2 runs already finished" in again.stderr
    assert rows(out)["lr0.01_fixed"]["attempts"] == 1


@pytest.mark.caffe
def test_a_diverging_run_is_killed_within_a_few_display_intervals(tmp_path, caffe_install):
    spec = write_spec(tmp_path, name="div", max_iter=5000, display=5, lrs="[10.0]", policies='["fixed", "cosine"]')
    spec.write_text(spec.read_text().replace("batchnorm = true", "batchnorm = false"))
    proc = sweep(tmp_path, str(spec), "--no-report")
    assert proc.returncode == 0, proc.stderr
    for name in ("lr10_fixed", "lr10_cosine"):      # a chain of segments is watched like any run
        row = rows(tmp_path / "runs" / "div")[name]
        assert row["status"] == "diverged", row
        caught_at = int(re.search(r"at iteration (\d+)", row["reason"]).group(1))
        assert caught_at <= 3 * 5, row                 # caught within its first three display intervals
        assert "loss" in row["reason"]
        assert row["last_iter"] < 5000                 # and stopped: caffe would print nan to the end


@pytest.mark.caffe
def test_kill_9_of_one_run_leaves_the_other_and_rerun_completes_it(tmp_path, caffe_install):
    spec = write_spec(tmp_path, name="k9", max_iter=600, test_interval=300, display=50,
                      lrs="[0.01]", policies='["fixed", "step"]', jobs=2)
    out = tmp_path / "runs" / "k9"
    driver = subprocess.Popen(CAFFEGEN + ["sweep", str(spec), "--no-report"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def running_pids():
            if not (out / "sweep.db").exists():
                return None
            r = rows(out)
            pids = {k: v["pid"] for k, v in r.items() if v["status"] == "running" and v["pid"]}
            return pids if len(pids) == 2 else None

        pids = wait_for(running_pids)
        victim = "lr0.01_step"
        wait_for(lambda: "Iteration 50" in (out / victim / "train.log").read_text(errors="replace"))
        os.kill(pids[victim], signal.SIGKILL)
        stdout, stderr = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 1, stderr
    table = rows(out)
    assert table["lr0.01_fixed"]["status"] == "done"
    assert table[victim]["status"] == "failed" and "SIGKILL" in table[victim]["reason"]
    assert f"run {victim} failed" in stderr
    done_log = (out / "lr0.01_fixed" / "train.log").stat().st_mtime

    again = sweep(tmp_path, str(spec), "--no-report")
    assert again.returncode == 0, again.stderr
    table = rows(out)
    assert table[victim]["status"] == "done" and table[victim]["attempts"] == 2
    assert table["lr0.01_fixed"]["attempts"] == 1
    assert (out / "lr0.01_fixed" / "train.log").stat().st_mtime == done_log   # not re-run
    assert "1 of 2 runs already finished" in again.stderr


@pytest.mark.caffe
def test_ctrl_c_snapshots_and_a_rerun_resumes(tmp_path, caffe_install):
    spec = write_spec(tmp_path, name="cc", max_iter=800, test_interval=400, display=50)
    out = tmp_path / "runs" / "cc"
    driver = subprocess.Popen(CAFFEGEN + ["sweep", str(spec), "--no-report"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (out / "lr0.01_fixed" / "train.log").exists()
                 and "Iteration 100," in (out / "lr0.01_fixed" / "train.log").read_text(errors="replace"))
        driver.send_signal(signal.SIGINT)
        _, stderr = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, stderr
    row = rows(out)["lr0.01_fixed"]
    assert row["status"] == "interrupted" and "snapshot kept" in row["reason"]
    states = list((out / "lr0.01_fixed" / "snapshots").glob("*.solverstate"))
    assert len(states) == 1
    stopped_at = int(states[0].stem.rsplit("_", 1)[1])
    assert 100 <= stopped_at < 800

    again = sweep(tmp_path, str(spec), "--no-report")
    assert again.returncode == 0, again.stderr
    assert f"resumed from snap_iter_{stopped_at}.solverstate" in again.stderr
    row = rows(out)["lr0.01_fixed"]
    assert row["status"] == "done" and row["last_iter"] == 800
    log = (out / "lr0.01_fixed" / "train.log").read_text()
    assert log.count("Iteration 0, loss") == 1      # the resumed run continued, it did not start over


@pytest.mark.caffe
def test_second_sweep_on_the_same_folder_refuses_and_changed_spec_is_refused(tmp_path, caffe_install):
    spec = write_spec(tmp_path, name="lk", max_iter=2000, test_interval=1000, display=100)
    out = tmp_path / "runs" / "lk"
    first = subprocess.Popen(CAFFEGEN + ["sweep", str(spec), "--no-report"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (out / "sweep.db").exists() and rows(out).get("lr0.01_fixed", {}).get("status") == "running")
        second = sweep(tmp_path, str(spec), "--no-report", timeout=60)
        assert second.returncode == 1
        errors = [ln for ln in second.stderr.splitlines() if ln.startswith("caffegen: error:")]
        assert len(errors) == 1 and "another sweep is running" in errors[0]
        status = subprocess.run(CAFFEGEN + ["status", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert status.returncode == 0 and "lr0.01_fixed" in status.stdout and "running" in status.stdout
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    changed = write_spec(tmp_path, name="lk", max_iter=999, test_interval=1000, display=100)
    proc = sweep(tmp_path, str(changed), "--no-report")
    assert proc.returncode == 2
    assert proc.stderr.count("caffegen: error:") == 1 and "different parameters" in proc.stderr
    assert "max_iter" in proc.stderr


@pytest.mark.caffe
def test_early_stop_and_timeout_keep_a_snapshot(tmp_path, caffe_install):
    spec = write_spec(tmp_path, name="es", max_iter=5000, test_interval=20, display=20, lrs="[1e-12]",
                      policies='["fixed", "cosine"]')
    proc = sweep(tmp_path, str(spec), "--no-report", "--early-stop", "2")
    assert proc.returncode == 0, proc.stderr
    for name in ("lr1e-12_fixed", "lr1e-12_cosine"):   # a chained run too, across its segments
        row = rows(tmp_path / "runs" / "es")[name]
        assert row["status"] == "early-stopped" and "has not improved" in row["reason"]
        assert row["last_iter"] < 5000
        assert list((tmp_path / "runs" / "es" / name / "snapshots").glob("*.solverstate"))

    spec = write_spec(tmp_path, name="to", max_iter=100000, test_interval=50000, display=100,
                      policies='["fixed", "cosine"]')
    proc = sweep(tmp_path, str(spec), "--no-report", "--timeout", "3")
    assert proc.returncode == 0, proc.stderr
    for name in ("lr0.01_fixed", "lr0.01_cosine"):
        row = rows(tmp_path / "runs" / "to")[name]
        assert row["status"] == "timeout"
        assert list((tmp_path / "runs" / "to" / name / "snapshots").glob("*.solverstate"))


@pytest.mark.caffe
def test_a_run_crashing_on_a_corrupt_image_is_failed_with_its_fatal_line_and_finished_runs_stay(tmp_path,
                                                                                                caffe_install):
    from caffegen.sweep.store import open_store

    spec = write_spec(tmp_path, name="cr", lrs="[0.01]", policies='["fixed", "step"]', jobs=1)
    out = tmp_path / "runs" / "cr"
    assert sweep(tmp_path, str(spec), "--no-report").returncode == 0
    done = out / "lr0.01_fixed" / "train.log"
    stamp = done.stat().st_mtime_ns
    victim = out / "lr0.01_step"
    shutil.rmtree(victim)
    store = open_store(out)
    store.update("lr0.01_step", status="pending")   # to be run again, from scratch
    store.close()
    # The first image of the train list, corrupted (a copy: the demo set is shared): caffe's ImageData aborts on it.
    lists = out / "lists" / "list_train_shuffle.txt"
    lines = lists.read_text().splitlines()
    path, label = lines[0].rsplit(" ", 1)
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(Path(path).read_bytes()[:64] + b"not a jpeg any more")
    lists.write_text("\n".join([f"{bad} {label}"] + lines[1:]) + "\n")
    proc = sweep(tmp_path, str(spec), "--no-report")
    assert proc.returncode == 1
    row = rows(out)["lr0.01_step"]
    assert row["status"] == "failed" and "Check failed" in row["reason"] and str(bad) in row["reason"], row["reason"]
    assert "run lr0.01_step failed: " in proc.stderr
    fixed = rows(out)["lr0.01_fixed"]
    assert fixed["status"] == "done" and fixed["attempts"] == 1 and done.stat().st_mtime_ns == stamp
