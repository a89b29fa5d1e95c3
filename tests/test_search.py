"""Search beyond the grid with Optuna, pruning on live Caffe curves, and `caffegen extend`, on the real Caffe."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from caffegen.errors import InputError
from caffegen.sweep import parse_spec
from helpers import tiny_net
from sweep_state import store_rows as rows

CAFFEGEN = [sys.executable, "-m", "caffegen"]

SPEC = """
name = "{name}"
[data]
demo = {{ classes = 3, per_class = 10, seed = 0 }}
""" + tiny_net(test_batch=3).replace("{", "{{").replace("}", "}}") + """[solver]
max_iter = {max_iter}
test_interval = 30
display = 10
random_seed = 0
{grid}
[search]
{search}
[run]
jobs = 2
"""
TPE = 'sampler = "tpe"\ntrials = 6\nseed = 0\npruner = "asha"\n[search.space]\n' \
      'base_lr = { low = 1e-6, high = 0.5, log = true }\nlr_policy = ["fixed", "step", "poly"]'


def write(tmp_path: Path, name: str, search: str = TPE, grid: str = "", max_iter: int = 300) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(SPEC.format(name=name, search=search, grid=grid, max_iter=max_iter))
    return path


def trials(out: Path) -> list[tuple[int, str, str | None]]:
    """(number, state, variant) of every trial in the sweep's study, read with Optuna's own API (none before the
    driver has made the study)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not (out / "sweep.db").exists():
        return []
    try:
        study = optuna.load_study(study_name=out.name, storage=f"sqlite:///{out / 'sweep.db'}")
    except KeyError:   # the driver has not created the study yet
        return []
    return [(t.number, t.state.name, t.user_attrs.get("variant")) for t in study.get_trials(deepcopy=False)]


def sweep(tmp_path: Path, spec: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``caffegen sweep SPEC --no-report ARGS`` from tmp_path, which must succeed."""
    proc = subprocess.run(CAFFEGEN + ["sweep", str(spec), "--no-report", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc


def one_trial_per_run(out: Path) -> tuple[list[tuple[int, str, str]], dict[str, str]]:
    """The study's trials and the runs table ({variant: status}), checked to name each other one to one."""
    study, runs = trials(out), {name: row["status"] for name, row in rows(out).items()}
    assert sorted(v for _, _, v in study) == sorted(runs), (study, runs)
    return study, runs


def left_behind(out: Path, name: str):
    """The Optuna study in a sweep folder as a driver that died early left it (before any run started)."""
    import optuna

    out.mkdir(parents=True)
    return optuna.create_study(study_name=name, storage=f"sqlite:///{out / 'sweep.db'}", direction="maximize")




@pytest.mark.caffe
def test_a_tpe_study_with_asha_prunes_runs_and_keeps_one_run_per_trial(tmp_path):
    proc = subprocess.run(CAFFEGEN + ["sweep", str(write(tmp_path, "tpe"))], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "tpe"
    study, runs = one_trial_per_run(out)
    assert len(runs) == 6 and set(runs.values()) <= {"done", "pruned"}, runs
    pruned = [name for name, status in runs.items() if status == "pruned"]
    assert pruned, runs
    for name in pruned:  # stopped with a snapshot, as Ctrl-C does: resumable later
        assert list((out / name / "snapshots").glob("*.solverstate"))
        assert "pruned at iteration" in rows(out)[name]["reason"]
    assert [n for n, _, _ in study] == list(range(6))
    assert {s for _, s, _ in study} <= {"COMPLETE", "PRUNED"}
    assert all(re.fullmatch(r"t00\d_lr[0-9.e-]+_(fixed|step|poly)", name) for name in runs)
    html = (out / "report.html").read_text()
    assert "optimisation history (Optuna)" in html and "intermediate values" in html


@pytest.mark.caffe
def test_kill_9_mid_study_then_rerun_loses_no_trial_and_runs_none_twice(tmp_path):
    spec = write(tmp_path, "k9s", max_iter=300)
    out = tmp_path / "runs" / "k9s"
    driver = subprocess.Popen(CAFFEGEN + ["sweep", str(spec), "--no-report"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        end = time.time() + 300
        while time.time() < end and len([s for _, s, _ in trials(out) if s == "RUNNING"]) < 2:
            time.sleep(0.2)
        assert len(trials(out)) >= 2
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    sweep(tmp_path, spec, timeout=900)
    study, runs = one_trial_per_run(out)
    assert [n for n, _, _ in study] == list(range(6))  # exactly 6 trials: none lost, none added
    assert set(runs.values()) <= {"done", "pruned"} and {s for _, s, _ in study} <= {"COMPLETE", "PRUNED"}
    resumed = [name for name, row in rows(out).items() if row["attempts"] > 1]
    assert resumed  # the trials that were running when the driver died were resumed, not asked again


@pytest.mark.caffe
def test_a_trial_asked_but_never_named_by_a_killed_driver_is_run_not_replaced(tmp_path):
    search = TPE.replace("trials = 6", "trials = 3").replace('pruner = "asha"', 'pruner = "none"')
    spec = write(tmp_path, "orph", search=search, max_iter=60)
    out = tmp_path / "runs" / "orph"
    # what a driver killed -9 between Optuna's ask and naming the trial's run leaves: a RUNNING trial, no run
    left_behind(out, "orph").ask()
    sweep(tmp_path, spec)
    study, runs = one_trial_per_run(out)
    assert [n for n, _, _ in study] == [0, 1, 2], study  # trial 0 was run, not left behind and replaced
    assert set(runs.values()) == {"done"} and {s for _, s, _ in study} == {"COMPLETE"}


@pytest.mark.caffe
def test_grid_points_a_killed_driver_asked_or_enqueued_are_run_once_each(tmp_path):
    grid = '[grid]\nbase_lr = [0.01, 0.001]\nlr_policy = ["fixed", "step"]'
    spec = write(tmp_path, "gorph", search='sampler = "grid"\npruner = "median"', grid=grid, max_iter=60)
    out = tmp_path / "runs" / "gorph"
    study = left_behind(out, "gorph")
    study.enqueue_trial({"base_lr": 0.001, "lr_policy": "step"})
    study.ask()  # asked, never named
    study.enqueue_trial({"base_lr": 0.01, "lr_policy": "step"})  # enqueued, never asked
    sweep(tmp_path, spec)
    study, _ = one_trial_per_run(out)
    assert [n for n, _, _ in study] == [0, 1, 2, 3], study
    assert study[0][2] == "lr0.001_step" and study[1][2] == "lr0.01_step"


@pytest.mark.caffe
def test_grid_sampler_with_asha_prunes_grid_runs_chained_ones_included(tmp_path):
    """A cosine run is a chain of caffe processes: it is still one trial, pruned (or not) on its whole curve."""
    grid = '[grid]\nbase_lr = [0.01, 0.000001]\nlr_policy = ["fixed", "cosine"]'
    spec = write(tmp_path, "gasha", search='sampler = "grid"\npruner = "asha"\nreduction_factor = 2', grid=grid)
    sweep(tmp_path, spec)
    out = tmp_path / "runs" / "gasha"
    study, runs = one_trial_per_run(out)
    assert set(runs) == {"lr0.01_fixed", "lr0.01_cosine", "lr1e-06_fixed", "lr1e-06_cosine"}
    assert "pruned" in runs.values(), runs
    assert len(study) == 4
    for name in ("lr0.01_cosine", "lr1e-06_cosine"):
        segments = json.loads((out / name / "manifest.json").read_text())["segments"]
        assert len(segments) >= 2, name    # started as a chain; the trial's intermediate values span them


@pytest.mark.caffe
def test_extend_continues_a_finished_run_to_more_iterations(tmp_path):
    grid = '[grid]\nbase_lr = [0.01]\nlr_policy = ["poly"]'
    spec = write(tmp_path, "ext", search='sampler = "grid"', grid=grid, max_iter=60)
    sweep(tmp_path, spec)
    run = tmp_path / "runs" / "ext" / "lr0.01_poly"
    proc = subprocess.run(CAFFEGEN + ["extend", str(run), "--iters", "120"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "from snap_iter_60.solverstate (iteration 60) to max_iter 120 (was 60)" in proc.stderr
    assert "poly: Caffe computes it from max_iter itself" in proc.stderr
    log = (run / "train.log").read_text()
    assert "Resuming from snapshots/snap_iter_60.solverstate" in log and "max_iter: 120" in log
    assert max(int(x) for x in re.findall(r"Iteration (\d+), loss", log)) == 120
    assert (run / "solver.max_iter60.prototxt").exists()
    assert [(r["status"], r["max_iter"], r["last_iter"]) for r in rows(tmp_path / "runs" / "ext").values()] == \
        [("done", 120, 120)]
    assert '"new_max_iter": 120' in (run / "manifest.json").read_text()


@pytest.mark.parametrize("search, message", [
    ('sampler = "tpe"\ntrials = 4\n[search.space]\nbase_lr = { low = 0.1, high = 0.01 }', "low 0.1 is above high 0.01"),
    ('sampler = "tpe"\ntrials = 4\n[search.space]\nbase_lr = { low = 0, high = 0.1, log = true }',
     "a log scale needs low > 0"),
    ('sampler = "tpe"\ntrials = 4\n[search.space]\nbase_lrr = { low = 0.01, high = 0.1 }', "did you mean 'base_lr'"),
    ('sampler = "tpe"\ntrials = 4\n[search.space]\nlr_policy = ["step", "polly"]', "did you mean 'poly'"),
    ('sampler = "tpee"\ntrials = 4', "did you mean 'tpe'"),
    ('sampler = "random"\n[search.space]\nbase_lr = { low = 0.01, high = 0.1 }', "needs trials = N"),
    ('pruner = "hyperbandd"', "did you mean 'hyperband'"),
])
def test_bad_search_tables_are_one_line_and_exit_2(search, message, tmp_path):
    grid = '[grid]\nbase_lr = [0.01]' if "sampler" not in search or 'sampler = "grid"' in search else ""
    proc = subprocess.run(CAFFEGEN + ["sweep", str(write(tmp_path, "bad", search=search, grid=grid)), "--dry-run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("caffegen: error:") == 1 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "runs").exists()


def test_grid_and_a_sampler_together_are_refused():
    with pytest.raises(InputError, match=r"\[grid\] and \[search\] sampler = 'random' both choose the runs"):
        parse_spec({"data": {"demo": {}}, "grid": {"base_lr": [0.1]},
                    "search": {"sampler": "random", "trials": 3, "space": {"base_lr": {"low": 0.01, "high": 0.1}}}})
