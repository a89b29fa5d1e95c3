"""`caffegen tune --backend ray` on a real two-node Ray cluster (two `ray start` on 127.0.0.1, one CPU each) with the
real caffe: every stage's runs on the cluster and the plan counting its slots; a node lost mid-search and the driver
killed mid-confirm lose nothing; and what a cluster must give a tune (CPUs, a caffe on each node, the tune's folder
seen by each node) refused in one line before anything trains."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from caffegen.prototxt import NetOptions, render_net
from helpers import make_imageset
from ray_cluster import ancestors, caffes, manifest
from sweep_state import store_rows, wait_for

CAFFEGEN = [sys.executable, "-m", "caffegen"]
pytestmark = pytest.mark.quiet      # node health checks and a wall-clock budget: alone on the machine
TINY = dict(num_classes=3, resize=36, test_resize=32, crop=32, conv_widths=(8, 8, 16, 16, 16), train_batch=8,
            test_batch=4, batchnorm=True)
STAGES = ("measure", "sanity", "lr-find", "search", "confirm", "final", "look")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """3 classes x 16 images and a tiny net of your own."""
    root = tmp_path_factory.mktemp("tune-data")
    make_imageset(root / "images", classes=3, per_class=16)
    net = root / "train_val.prototxt"
    net.write_text(render_net(NetOptions(**TINY)))
    return root / "images", net


def tune_args(data: tuple[Path, Path], out: Path, address: str, budget: str = "100s") -> list[str]:
    folder, net = data
    return CAFFEGEN + ["tune", str(net), "--data", str(folder), "--iters", "60", "--search-iters", "30",
                       "--policies", "all", "--strategy", "search", "--budget", budget, "--out", str(out),
                       "--backend", "ray", "--address", address]


@pytest.mark.caffe
def test_a_tune_on_the_cluster_loses_nothing_to_a_lost_node_or_a_killed_driver(cluster, data, tmp_path):
    """The worker node dies while it trains search trials: each is retried on the head, none is lost or run
    twice. Then kill -9 of the driver while the confirm runs: the rerun resumes and finishes every stage."""
    import optuna

    cluster.ensure_workers(1)
    worker = cluster.alive_workers()[0]
    worker_id, raylet = cluster.node_id(worker), worker.raylet()
    out = tmp_path / "t"
    log = tmp_path / "first.log"
    driver = subprocess.Popen(tune_args(data, out, cluster.address), cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=log.open("w"), env=cluster.env)
    try:
        def trial_on_worker() -> str | None:
            assert driver.poll() is None, log.read_text()[-3000:]
            for pid, run in caffes(out / "search").items():
                if raylet in ancestors(pid):
                    return run.name
            return None

        wait_for(trial_on_worker, timeout=400)
        os.kill(raylet, signal.SIGKILL)      # the worker node dies mid-search (runs of a second: whichever trial
                                             # it holds then is lost)

        def confirming() -> bool:
            assert driver.poll() is None, log.read_text()[-3000:]
            return any(caffes(out / "confirm").values()) if (out / "confirm").exists() else False

        wait_for(confirming, timeout=600)
        driver.send_signal(signal.SIGKILL)   # the driver dies mid-confirm
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(timeout=60)
        worker.kill()
    again = subprocess.run(tune_args(data, out, cluster.address), cwd=tmp_path, capture_output=True, text=True,
                           timeout=900, env=cluster.env)
    cluster.ensure_workers(1)
    assert again.returncode == 0, again.stderr[-4000:]
    first = log.read_text()
    assert "[tune] runs on " in first and "2 nodes, 2 slots" in first, first[-3000:]
    assert "2 runs at once" in first          # the plan counts the cluster's slots
    assert "[tune] stage 5/7: confirm" in first and "[tune] stage 4/7: search" not in again.stderr
    state = json.loads((out / "tune.json").read_text())
    assert all(state["stages"][s]["status"] == "done" for s in STAGES)
    # the probes trained on the cluster, as the runs do (the measure stage times a run where the runs go)
    assert "[timing] trained on Ray node " in first and "[lr-find] trained on Ray node " in first
    assert first.count("trained on Ray node ") >= 3                    # sanity's too
    # the search: every trial once, numbered in order, each a run that finished; the lost one retried elsewhere
    trials = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'search' / 'sweep.db'}").get_trials()
    names = [t.user_attrs.get("variant") for t in trials]
    assert [t.number for t in trials] == list(range(len(trials))) and len(set(names)) == len(names)
    rows = store_rows(out / "search")
    assert sorted(rows) == sorted(names) and all(r["status"] in ("done", "pruned") for r in rows.values())
    victims = [name for name in rows if manifest(out / "search" / name).get("lost")]
    assert victims, [ln for ln in first.splitlines() if ": lost" in ln]
    for name in victims:
        m = manifest(out / "search" / name)
        assert f"[sweep] {name}: lost (" in first and rows[name]["attempts"] == 2 and rows[name]["status"] == "done"
        # (a node that dies while the run's actor starts there never told the run its id: None)
        lost_at = m["lost"][0]["node"]
        assert len(m["lost"]) == 1 and (lost_at is None or lost_at["id"] == worker_id), m["lost"]
        assert m["node"]["id"] != worker_id
    # the confirm: resumed, fresh seeds only, a winner
    verdict = state["stages"]["confirm"]["decision"]
    assert verdict["winner"]["name"] and all("0" not in v for v in verdict["values"].values())
    assert not caffes(tmp_path)


def _refused(done: subprocess.CompletedProcess, out: Path, *words: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("caffegen: error: ") and all(w in lines[0] for w in words), lines[0]
    assert not out.exists() and not caffes(out.parent)        # nothing trained, no half-made folder left


@pytest.mark.caffe
def test_a_node_without_caffe_is_one_line_before_anything_trains(cluster, data, tmp_path):
    cluster.ensure_workers(1)
    bad = cluster.add_worker(env={"CAFFEGEN_CAFFE_BIN": "/nonexistent/caffe"})
    try:
        bad_id = cluster.node_id(bad)
        done = subprocess.run(tune_args(data, tmp_path / "t", cluster.address), cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, env=cluster.env)
    finally:
        bad.kill()
        cluster.ensure_workers(1)
    _refused(done, tmp_path / "t", f"Ray node {bad_id[:8]}", "has no caffe caffegen can drive", "caffegen doctor")


@pytest.mark.caffe
@pytest.mark.skipif(not shutil.which("unshare") or os.geteuid() != 0, reason="a private mount needs root")
def test_a_folder_the_nodes_do_not_see_is_one_line_before_anything_trains(cluster, data, tmp_path):
    """The driver's --out on a tmpfs only the driver's mount namespace has: the nodes see an empty folder."""
    cluster.ensure_workers(1)
    private = tmp_path / "private"
    private.mkdir()
    out = private / "t"
    script = f"mount -t tmpfs -o size=64m tmpfs {private} && exec \"$@\""
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                           *tune_args(data, out, cluster.address)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=cluster.env)
    _refused(done, out, "does not see", str(out), "a filesystem every node mounts at the same path")


@pytest.mark.caffe
def test_a_cluster_without_cpus_is_one_line_before_anything_trains(data, tmp_path):
    """A cluster of one head started with --num-cpus 0, made in a process of its own (this one is the module
    cluster's driver: one Ray connection per process)."""
    script = ("import json, subprocess, sys\n"
              "from ray_cluster import LocalCluster\n"
              "c = LocalCluster(cpus_per_node=0)\n"
              "try:\n"
              "    c.start(workers=0)\n"
              "    d = subprocess.run(json.loads(sys.argv[1]) + ['--address', c.address], env=c.env, text=True,\n"
              "                       capture_output=True, timeout=300)\n"
              "    print(json.dumps({'rc': d.returncode, 'stderr': d.stderr}))\n"
              "finally:\n"
              "    c.stop()\n")
    args = tune_args(data, tmp_path / "t", "")[:-2]
    ran = subprocess.run([sys.executable, "-c", script, json.dumps(args)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=400, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)})
    assert ran.returncode == 0, ran.stderr[-3000:]
    got = json.loads(ran.stdout.strip().splitlines()[-1])
    _refused(subprocess.CompletedProcess(args, got["rc"], "", got["stderr"]), tmp_path / "t", "has no CPUs for runs")
