"""A damaged store is not a lost sweep: `sweep.db` cut short, on the real binary. The readers say what to do in one
line; a rerun of the sweep puts the damaged file aside, rebuilds the store (and an Optuna study) from the run folders,
keeps every finished run's outcome and resumes the unfinished ones."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import tiny_net, write_spec
from sweep_state import store_rows, wait_for

CAFFEGEN = [sys.executable, "-m", "caffegen"]
pytestmark = pytest.mark.caffe


def caffegen(tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(CAFFEGEN + list(args), cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def damage(db: Path) -> None:
    """What a full disk or a bad copy leaves: the file cut short, in the middle of its pages."""
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])


def logs(out: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in out.glob("*/train.log")}


def test_readers_of_a_damaged_store_say_what_to_do_and_a_rerun_rebuilds_it(tmp_path):
    spec = write_spec(tmp_path, lrs="[0.01, 0.05]", policies='["fixed"]', jobs=2)
    assert caffegen(tmp_path, "sweep", str(spec), "--no-report").returncode == 0
    out = tmp_path / "runs" / "t"
    before, trained = store_rows(out), logs(out)
    damage(out / "sweep.db")
    for cmd in (["status", str(out)], ["report", str(out)]):
        proc = caffegen(tmp_path, *cmd)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "sweep.db is damaged" in lines[0] and f"caffegen sweep {spec}" in lines[0]
    proc = caffegen(tmp_path, "sweep", str(spec))
    assert proc.returncode == 0, proc.stderr
    assert "rebuilt the store from 2 run folders" in proc.stderr and "already finished" in proc.stderr
    assert len([p for p in out.glob("sweep.db.damaged-*") if not p.name.endswith(("-wal", "-shm"))]) == 1
    after = store_rows(out)
    for name, row in before.items():   # every outcome kept, nothing trained again
        assert {k: after[name][k] for k in ("status", "best_top1", "last_iter", "attempts", "params")} == \
               {k: row[k] for k in ("status", "best_top1", "last_iter", "attempts", "params")}
    assert logs(out) == trained
    assert (out / "report.html").is_file()


def test_an_unfinished_run_resumes_from_its_snapshot_after_the_rebuild(tmp_path):
    spec = write_spec(tmp_path, max_iter=400, test_interval=20, display=10, lrs="[0.01]",
                      policies='["fixed", "step"]', jobs=2)
    proc = subprocess.Popen(CAFFEGEN + ["sweep", str(spec), "--no-report"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out = tmp_path / "runs" / "t"
    try:
        wait_for(lambda: len(list(out.glob("*/snapshots/*.solverstate"))) >= 2, timeout=120)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    stopped = {name: row["last_iter"] for name, row in store_rows(out).items()}
    assert set(stopped) == {"lr0.01_fixed", "lr0.01_step"}
    damage(out / "sweep.db")
    proc = caffegen(tmp_path, "sweep", str(spec), "--no-report")
    assert proc.returncode == 0, proc.stderr
    for name, row in store_rows(out).items():
        assert row["status"] == "done" and row["last_iter"] == 400 and row["attempts"] == 2
        manifest = json.loads((out / name / "manifest.json").read_text())
        assert manifest["resumed_from"] and manifest["start"] == "resumed from its newest snapshot"
        assert "Resuming from snapshots/snap_iter_" in (out / name / "train.log").read_text()


SEARCH = """
name = "s"
[data]
demo = { classes = 3, per_class = 10, seed = 0 }
""" + tiny_net(test_batch=3) + """[solver]
max_iter = 60
test_interval = 20
display = 10
random_seed = 0
[search]
sampler = "tpe"
trials = 3
seed = 0
pruner = "median"
[search.space]
base_lr = { low = 1e-3, high = 0.1, log = true }
[run]
jobs = 2
"""


def test_the_optuna_study_is_rebuilt_from_the_run_folders(tmp_path):
    import optuna

    spec = tmp_path / "s.toml"
    spec.write_text(SEARCH)
    assert caffegen(tmp_path, "sweep", str(spec), "--no-report").returncode == 0
    out = tmp_path / "runs" / "s"
    storage = f"sqlite:///{out / 'sweep.db'}"
    before = optuna.load_study(study_name="s", storage=storage).get_trials()
    trained = logs(out)
    damage(out / "sweep.db")
    proc = caffegen(tmp_path, "sweep", str(spec), "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert "study was rebuilt from the run folders (3 trials" in proc.stderr
    after = optuna.load_study(study_name="s", storage=storage).get_trials()
    assert [(t.number, t.state, t.params, t.value, t.user_attrs["variant"], t.intermediate_values) for t in after] \
        == [(t.number, t.state, t.params, t.value, t.user_attrs["variant"], t.intermediate_values) for t in before]
    assert logs(out) == trained   # no trial was run again, none asked anew
