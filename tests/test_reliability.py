"""The driver's own death and other accidents, with the real signals sent to a real `caffegen sweep`: SIGTERM and
SIGHUP, kill -9 (no orphans, one writer per log on the rerun), a full disk, truncated snapshots, readers while the
store is written."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from caffegen.run.processes import is_running
from caffegen.sweep.store import open_store
from helpers import write_spec
from sweep_state import store_rows as rows, wait_for, writers

CAFFEGEN = [sys.executable, "-m", "caffegen"]
pytestmark = pytest.mark.caffe


_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_driver_outlives_its_test():
    """Every driver a test starts is killed when the test ends, also when an assertion or a wait failed first."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)


def start_sweep(tmp_path: Path, spec: Path, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen(CAFFEGEN + ["sweep", str(spec), "--no-report", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _STARTED.append(proc)
    return proc


def running(out: Path, n: int, past: int = 0) -> dict[str, tuple[int, int]] | None:
    """{variant: (pid, start time)} once ``n`` runs are running and each log has passed iteration ``past``."""
    r = {k: (v["pid"], v["pid_start"]) for k, v in rows(out).items() if v["status"] == "running" and v["pid"]}
    if len(r) < n:
        return None
    for name in r:
        log = out / name / "train.log"
        its = [int(m) for m in re.findall(r"Iteration (\d+)", log.read_text(errors="replace"))] if log.exists() else []
        if not its or max(its) < past:
            return None
    return r


class StderrLines:
    """The lines a running process has written to stderr so far (read by a thread, so the test can wait on them)."""

    def __init__(self, proc: subprocess.Popen):
        import threading

        self.lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(iter(proc.stderr.readline, "")), daemon=True)
        self._thread.start()

    def text(self) -> str:
        return "".join(self.lines)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_sigterm_snapshots_every_run_records_interrupted_and_exits_143(tmp_path):
    spec = write_spec(tmp_path, name="term", max_iter=100000, test_interval=100000, display=20,
                      policies='["fixed", "step"]', jobs=2)
    out = tmp_path / "runs" / "term"
    driver = start_sweep(tmp_path, spec)
    pids = wait_for(lambda: running(out, 2, past=40))
    driver.send_signal(signal.SIGTERM)
    _, stderr = finish(driver)
    assert driver.returncode == 143, stderr
    assert "stopping on SIGTERM" in stderr
    wait_for(lambda: not any(is_running(*p) for p in pids.values()), timeout=10)  # no caffe of it remains
    for name, row in rows(out).items():
        assert row["status"] == "interrupted" and row["reason"] == "stopped by SIGTERM (snapshot kept)", row
        assert row["pid"] is None
        assert list((out / name / "snapshots").glob("*.solverstate")), name


def test_a_second_sighup_abandons_at_once_and_still_kills_the_children(tmp_path):
    spec = write_spec(tmp_path, name="hup", max_iter=100000, test_interval=100000, display=20, jobs=1)
    out = tmp_path / "runs" / "hup"
    driver = start_sweep(tmp_path, spec)
    pids = wait_for(lambda: running(out, 1, past=20))
    os.kill(pids["lr0.01_fixed"][0], signal.SIGSTOP)  # a caffe that cannot snapshot: the driver would wait 120 s
    err = StderrLines(driver)
    try:
        driver.send_signal(signal.SIGHUP)
        wait_for(lambda: "stopping on SIGHUP" in err.text(), timeout=30)  # the first signal was handled
        driver.send_signal(signal.SIGHUP)
        driver.wait(timeout=60)
    finally:
        try:
            os.kill(pids["lr0.01_fixed"][0], signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert driver.returncode == 129, err.text()
    wait_for(lambda: not is_running(*pids["lr0.01_fixed"]), timeout=10)
    row = rows(out)["lr0.01_fixed"]
    assert row["status"] == "interrupted" and row["reason"] == "abandoned by a second SIGHUP"


def test_kill_9_of_the_driver_leaves_no_orphan_and_the_rerun_has_one_writer_per_log(tmp_path):
    spec = write_spec(tmp_path, name="k9d", max_iter=600, test_interval=300, display=20,
                      policies='["fixed", "step"]', jobs=2)
    out = tmp_path / "runs" / "k9d"
    driver = start_sweep(tmp_path, spec)
    pids = wait_for(lambda: running(out, 2, past=100))
    driver.kill()  # SIGKILL: no handler runs
    finish(driver)
    # the kernel sends each caffe its death signal (SIGINT: snapshot and stop): none keeps training
    wait_for(lambda: not any(is_running(*p) for p in pids.values()), timeout=60)
    again = subprocess.run(CAFFEGEN + ["sweep", str(spec), "--no-report"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    for name, row in rows(out).items():
        assert row["status"] == "done" and row["last_iter"] == 600 and row["attempts"] == 2, row
        log = out / name / "train.log"
        stretches = writers(log)
        assert len(stretches) == len(set(stretches)) == 2, stretches  # one writer, then the resumed one
        assert "Resuming from snapshots/snap_iter_" in log.read_text()


def test_a_leftover_caffe_of_a_dead_driver_is_never_run_beside(tmp_path):
    """A caffe that outlived its driver (as on a system without PR_SET_PDEATHSIG: here it is stopped with SIGSTOP
    so that it can neither train nor die): the rerun names it and refuses without --force, kills it with it."""
    spec = write_spec(tmp_path, name="left", max_iter=100000, test_interval=100000, display=20, jobs=1)
    out = tmp_path / "runs" / "left"
    driver = start_sweep(tmp_path, spec)
    pid, started = wait_for(lambda: running(out, 1, past=20))["lr0.01_fixed"]
    os.kill(pid, signal.SIGSTOP)
    driver.kill()
    finish(driver)
    try:
        assert is_running(pid, started)
        refused = subprocess.run(CAFFEGEN + ["sweep", str(spec), "--no-report", "--stop-grace", "2"], cwd=tmp_path,
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1
        errors = [ln for ln in refused.stderr.splitlines() if ln.startswith("caffegen: error:")]
        assert len(errors) == 1 and f"caffe pid {pid}" in errors[0] and "--force" in errors[0], refused.stderr
        assert is_running(pid, started) and rows(out)["lr0.01_fixed"]["status"] == "running"
        forced = start_sweep(tmp_path, spec, "--force", "--timeout", "2")
        _, stderr = finish(forced)
        assert forced.returncode == 0, stderr
        assert not is_running(pid, started) and "killing it (--force)" in stderr
        run = out / "lr0.01_fixed"
        # it had no snapshot yet: the rerun started afresh, its log beside the leftover's, one writer each
        assert writers(run / "train.log.attempt1") == [pid]
        assert len(writers(run / "train.log")) == 1 and writers(run / "train.log") != [pid]
    finally:
        if is_running(pid, started):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs the test mounts itself (root only)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a size-limited tmpfs needs root (and mount); this test fills a disk on purpose")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=300)


def test_a_full_disk_fails_the_run_with_that_reason_and_the_store_stays_consistent(small_disk, tmp_path):
    # seed-width convs: a snapshot pair takes ~4.4 MB, so the second one cannot fit in 6 MB
    spec = write_spec(tmp_path, name="full", max_iter=60, test_interval=20, display=5, policies='["fixed", "step"]')
    spec.write_text(spec.read_text().replace("conv_widths = [8, 8, 16, 16, 16]", "conv_widths = [64, 64, 128, 128, 256]"))
    out = small_disk / "sweep"
    proc = subprocess.run(CAFFEGEN + ["sweep", str(spec), "--out", str(out), "--no-report"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr
    open_store(out).close()        # a whole database (a damaged one would raise DamagedStore)
    table = rows(out)
    assert set(table) == {"lr0.01_fixed", "lr0.01_step"}
    for row in table.values():
        assert row["status"] in ("failed", "done", "interrupted"), row
        assert row["pid"] is None
    failed = [r for r in table.values() if r["status"] == "failed"]
    assert failed and all("is full" in r["reason"] for r in failed), failed


def test_a_truncated_snapshot_falls_back_to_the_previous_one_or_restarts_with_a_note(tmp_path):
    spec = write_spec(tmp_path, name="trunc", max_iter=400, test_interval=50, display=10, jobs=1)
    out = tmp_path / "runs" / "trunc"
    run = out / "lr0.01_fixed"
    driver = start_sweep(tmp_path, spec)

    def two_snapshots():
        now = running(out, 1)
        return now if now and len(list((run / "snapshots").glob("*.solverstate"))) >= 2 else None

    pid, _ = wait_for(two_snapshots)["lr0.01_fixed"]
    os.kill(pid, signal.SIGKILL)  # the run fails; the driver keeps its two newest usable snapshot pairs
    finish(driver)
    states = sorted((run / "snapshots").glob("*.solverstate"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    assert len(states) == 2
    older, newest = states
    model = newest.with_suffix(".caffemodel")
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # a kill during the write
    again = subprocess.run(CAFFEGEN + ["sweep", str(spec), "--no-report"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"{model.name} is missing, truncated or corrupt" in again.stderr
    assert f"resuming from {older.name} instead" in again.stderr
    assert f"Resuming from snapshots/{older.name}" in (run / "train.log").read_text()
    m = json.loads((run / "manifest.json").read_text())
    assert rows(out)["lr0.01_fixed"]["status"] == "done" and m["snapshots_discarded"]

    # none usable: a restart from 0, said in a note, the old log kept aside
    store = open_store(out)
    store.update("lr0.01_fixed", status="failed")
    store.close()
    for p in (run / "snapshots").iterdir():
        p.write_bytes(b"\x08")
    third = subprocess.run(CAFFEGEN + ["sweep", str(spec), "--no-report"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert third.returncode == 0, third.stderr
    assert "no usable snapshot left, restarting from iteration 0" in third.stderr
    assert json.loads((run / "manifest.json").read_text())["start"].startswith("restarted from iteration 0")
    assert (run / "train.log.attempt2").exists() and "Resuming" not in (run / "train.log").read_text()


def test_status_and_report_read_a_store_that_is_being_written(tmp_path):
    """A writer commits thousands of run updates (status and result together) while status and report read: no
    "database is locked", and no row is ever seen half-written."""
    out = tmp_path / "runs" / "rw"
    out.mkdir(parents=True)
    store = open_store(out)
    store.set_meta("spec", {"name": "rw", "metric": "accuracy_at_1"})
    for i in range(8):
        store.register(f"v{i}", {"i": i}, {"base_lr": 0.1 * (i + 1)}, 100, i)
        (out / f"v{i}").mkdir()
    store.close()
    writer = subprocess.Popen([sys.executable, "-c", f"""
import sys
from pathlib import Path
from caffegen.sweep.store import open_store
s = open_store(Path({str(out)!r}))
for k in range(3000):
    v = f"v{{k % 8}}"
    done = k % 2 == 0
    s.update(v, status="done" if done else "running", best_top1=(k % 100) / 100 if done else None, last_iter=k)
print("wrote", k + 1)
"""], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reads = 0
    try:
        while writer.poll() is None or reads < 3:
            for argv in (["status", str(out)], ["report", str(out)]):
                proc = subprocess.run(CAFFEGEN + argv, cwd=tmp_path, capture_output=True, text=True, timeout=120)
                assert proc.returncode == 0 and "locked" not in proc.stderr, proc.stderr
            for row in rows(out).values():       # the store's own reader: never half a row
                assert (row["status"] == "done") == (row["best_top1"] is not None) or row["status"] == "pending"
            reads += 1
    finally:
        stdout, stderr = writer.communicate(timeout=120)
    assert writer.returncode == 0 and "wrote 3000" in stdout, stderr
