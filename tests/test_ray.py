"""`caffegen sweep --backend ray` on a real two-node Ray cluster (two `ray start` on 127.0.0.1, one CPU each) with
the real caffe: runs spread over the nodes, a node killed mid-run loses nothing, and without Ray the flag is one
error line. One cluster for the session (conftest's ``cluster``), so the tests do not depend on their order."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from caffegen.logs import LogFollower
from helpers import write_spec
from sweep_state import store_rows as rows, wait_for, writers
from ray_cluster import ancestors, caffes, manifest

CAFFEGEN = [sys.executable, "-m", "caffegen"]
# the cluster notices a dead node by 1-s health checks: alone on the machine (`make test` runs these after the rest)
pytestmark = pytest.mark.quiet


@pytest.mark.caffe
def test_runs_spread_over_both_nodes_and_each_manifest_names_its_node(cluster, tmp_path):
    cluster.ensure_workers(1)
    nodes = cluster.nodes()
    ids = {n["name"]: n["NodeID"] for n in nodes}
    ips = {n["NodeID"]: n["NodeManagerAddress"] for n in nodes}
    assert set(ids) == {"head", *(w.name for w in cluster.alive_workers())}
    spec = write_spec(tmp_path, name="spread", max_iter=30, test_interval=15, display=5, lrs="[0.01, 0.02]",
                      policies='["fixed", "onecycle"]', jobs=2)
    done = subprocess.run(CAFFEGEN + ["sweep", str(spec), "--no-report", "--backend", "ray",
                                      "--address", cluster.address], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=cluster.env)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "runs" / "spread"
    table = rows(out)
    assert len(table) == 4 and all(r["status"] == "done" and r["attempts"] == 1 for r in table.values()), table
    assert all(r["pid"] is None for r in table.values())       # nothing local for the leftover check
    seen = set()
    for name in table:
        m = manifest(out / name)
        node = m["node"]
        assert node["id"] in ids.values() and node["ip"] == ips[node["id"]], node
        assert Path(node["caffe"]).name.startswith("caffe") and node["launch_s"] >= 0
        seen.add(node["id"])
        assert "Optimization Done." in (out / name / "train.log").read_text()
        if name.endswith("onecycle"):      # a chain of caffe processes, each segment placed by Ray
            assert len(m["segments"]) >= 3 and all(s["sha256"]["solver"] for s in m["segments"])
            logged = [int(i) for i in re.findall(r"Iteration (\d+), lr = ", (out / name / "train.log").read_text())]
            assert logged == list(range(0, 30, 5))    # display 5: one curve, each iteration once
    assert seen == set(ids.values())                             # 1 CPU per node, 1 per run: both nodes trained
    assert not caffes(tmp_path)


@pytest.mark.caffe
def test_a_node_killed_mid_run_loses_nothing_its_run_resumes_elsewhere(cluster, tmp_path):
    cluster.ensure_workers(1)
    worker = cluster.alive_workers()[0]
    worker_id = cluster.node_id(worker)
    raylet = worker.raylet()
    assert raylet, "the worker node's raylet"
    spec = write_spec(tmp_path, name="lost", max_iter=320, test_interval=40, display=10, lrs="[0.01, 0.02]",
                      policies='["fixed", "step"]', jobs=2)
    out = tmp_path / "runs" / "lost"
    driver = subprocess.Popen(CAFFEGEN + ["sweep", str(spec), "--no-report", "--backend", "ray", "--address",
                                          cluster.address], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=cluster.env)
    try:
        def on_worker_with_snapshot() -> str | None:
            """The run whose caffe descends from the worker's raylet, once it has a snapshot and trained past it."""
            for pid, run in caffes(out).items():
                if raylet in ancestors(pid) and list((run / "snapshots").glob("*.solverstate")):
                    its = re.findall(r"Iteration (\d+)", (run / "train.log").read_text(errors="replace"))
                    if its and int(its[-1]) >= 60:
                        return run.name
            return None

        victim = wait_for(on_worker_with_snapshot, timeout=180)
        os.kill(raylet, signal.SIGKILL)   # the node dies: its raylet first, then the rest of its processes
        stdout, stderr = driver.communicate(timeout=400)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate(timeout=60)
        worker.kill()                     # what is left of the dead node (its `ray start`, agents)
        cluster.ensure_workers(1)         # a whole cluster again for whatever test runs next
    assert driver.returncode == 0, stderr
    assert f"{victim}: lost" in stderr and "retrying from its newest snapshot" in stderr, stderr
    table = rows(out)
    assert sorted(table) == ["lr0.01_fixed", "lr0.01_step", "lr0.02_fixed", "lr0.02_step"], table
    for name, row in table.items():
        assert row["status"] == "done" and row["last_iter"] == 320, row
        assert row["attempts"] == (2 if name == victim else 1), (name, row)
    log = out / victim / "train.log"
    text = log.read_text()
    resumed = re.search(r"Resuming from snapshots/snap_iter_(\d+)\.solverstate", text)
    assert resumed and "SGDSolver: restoring history" in text
    after = re.findall(r"Iteration (\d+)", text.split(resumed.group(0))[1])
    assert after and 0 <= int(after[0]) - int(resumed.group(1)) <= 10, after[:3]   # on from there (display 10)
    stretches = writers(log)
    assert len(stretches) == len(set(stretches)) == 2, stretches   # the lost caffe, then the retry: never both
    m = manifest(out / victim)
    assert m["attempt"] == 2 and m["resumed_from"] and m["node"]["id"] != worker_id
    assert [x["node"]["id"] for x in m["lost"]] == [worker_id] and "died" in m["lost"][0]["reason"], m["lost"]
    follower = LogFollower()
    follower.feed(text)
    tests = [r["NumIters"] for r in follower.test_rows_seen()]
    assert tests[-1] == 320
    assert not caffes(tmp_path)       # the dead node's caffe stopped with its actor


@pytest.mark.caffe
def test_doctor_lists_every_node_with_its_caffe(cluster, tmp_path):
    cluster.ensure_workers(1)
    done = subprocess.run(CAFFEGEN + ["doctor", "--backend", "ray", "--address", cluster.address], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=cluster.env)
    assert done.returncode == 0, done.stdout + done.stderr
    for n in cluster.nodes():
        assert n["NodeID"][:8] in done.stdout
    assert "2 nodes" in done.stdout and "1.0.0" in done.stdout, done.stdout


@pytest.mark.caffe
def test_a_node_without_caffe_is_named_by_doctor_and_its_runs_go_elsewhere(cluster, tmp_path):
    cluster.ensure_workers(1)
    bad = cluster.add_worker(env={"CAFFEGEN_CAFFE_BIN": "/nonexistent/caffe"})   # a third node, 1 CPU, no Caffe
    sweep = CAFFEGEN + ["sweep", str(write_spec(tmp_path, name="nocaffe", max_iter=30, test_interval=15, display=5,
                                                lrs="[0.01, 0.02]", policies='["fixed", "step"]', jobs=3)),
                        "--no-report", "--backend", "ray", "--address", cluster.address]   # 3 x 1 CPU: one goes there
    try:
        bad_id = cluster.node_id(bad)
        doctor = subprocess.run(CAFFEGEN + ["doctor", "--backend", "ray", "--address", cluster.address], cwd=tmp_path,
                                capture_output=True, text=True, timeout=300, env=cluster.env)
        no_retry = subprocess.run(sweep + ["--retries", "0"], cwd=tmp_path, capture_output=True, text=True,
                                  timeout=300, env=cluster.env)
        out = tmp_path / "runs" / "nocaffe"
        first = {name: manifest(out / name) for name in rows(out)}
        again = subprocess.run(sweep, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=cluster.env)
    finally:
        bad.kill()
        cluster.ensure_workers(1)
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    errors = [ln for ln in doctor.stderr.splitlines() if ln.startswith("caffegen: error:")]
    assert len(errors) == 1 and bad_id[:8] in errors[0] and "/nonexistent/caffe" in errors[0], doctor.stderr
    assert "3 nodes" in doctor.stdout and "MISSING" in doctor.stdout
    # without retries, the run that landed there fails with the reason; the others are done
    assert no_retry.returncode == 1, no_retry.stderr
    failed = [n for n, m in first.items() if m["status"] == "failed"]
    assert len(failed) == 1 and all(first[n]["status"] == "done" for n in first if n not in failed), first
    # (the node is then known to be broken: the fourth run went elsewhere)
    for name in failed:
        assert "lost 1 times (retries = 0)" in first[name]["reason"] and "/nonexistent/caffe" in first[name]["reason"]
        assert f"run {name} failed" in no_retry.stderr
    # the rerun resumes them; a retry never goes back to the node it was lost on
    assert again.returncode == 0, again.stderr
    for name, row in rows(out).items():
        assert row["status"] == "done", row
        m = manifest(out / name)
        if name not in failed:
            assert m == first[name]                          # not run again
            continue
        assert m["node"]["id"] != bad_id
        lost = m.get("lost", [])
        assert row["attempts"] == 2 + len(lost) and len(lost) <= 1
        assert all(x["node"]["id"] == bad_id and "/nonexistent/caffe" in x["reason"] for x in lost)


@pytest.mark.parametrize("command", [["sweep", "smoke", "--backend", "ray", "--no-report"],
                                     ["doctor", "--backend", "ray"]])
def test_without_ray_the_backend_is_one_error_line_and_exit_2(tmp_path, command):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from caffegen.cli import main\n"
            f"main({command!r})\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("caffegen: error: ") and "pip install 'caffegen[ray]'" in lines[0]
    assert not (tmp_path / "runs").exists()
