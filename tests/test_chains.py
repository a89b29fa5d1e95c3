"""Schedules Caffe 1.0 lacks, as chains of segments on the unmodified binary: the lr Caffe logs equals the
prediction iteration by iteration, a plateau drops where its rule says, the training data carries on across the
boundaries (every image once per epoch, whatever the segmentation), and a kill -9 mid-segment resumes the schedule."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from caffegen.errors import InputError
from caffegen.prototxt import SolverOptions
from caffegen.prototxt.chains import (CHAINED, SCHEDULES, chain_lr, ideal_lr, parse_schedules, plateau_replay,
                                      resolve_schedule)
from caffegen.prototxt.schedule import POLICIES, format_lr
from helpers import write_spec
from sweep_state import store_rows, wait_for

CAFFEGEN = [sys.executable, "-m", "caffegen"]
LR_LINE = re.compile(r"Iteration (\d+), lr = (\S+)")


# ------------------------------------------------------------------------------------------ pure


def test_names_every_and_warmup_and_the_nearest_on_a_typo():
    assert parse_schedules("all") == list(POLICIES)            # "all" keeps meaning the seed's seven
    assert parse_schedules("every") == list(SCHEDULES) and set(CHAINED) < set(SCHEDULES)
    assert resolve_schedule("Cosine+Warmup") == "cosine+warmup" and resolve_schedule("step+warmup") == "step+warmup"
    for typo, near in (("cosin", "cosine"), ("onecylce", "onecycle"), ("step+warmpu", "step+warmup")):
        with pytest.raises(InputError, match=f"did you mean '{re.escape(near)}'"):
            resolve_schedule(typo)


@pytest.mark.parametrize("name", ["linear", "onecycle", "triangular", "step+warmup", "linear+warmup"])
def test_piecewise_linear_schedules_are_exact(name):
    s = SolverOptions(base_lr=0.02, lr_policy=name, max_iter=900, test_interval=50)
    its = np.arange(900)
    ours, ideal = chain_lr(s.pieces(), its), ideal_lr(name, 0.02, 900, s.policy_params(), its)
    np.testing.assert_allclose(ours, ideal, rtol=1e-4, atol=1e-9)      # exact, but for float32 rounding


@pytest.mark.parametrize("name", ["cosine", "sgdr", "cosine+warmup"])
def test_smooth_schedules_stay_within_one_percent_and_never_go_below_min_lr(name):
    s = SolverOptions(base_lr=0.02, lr_policy=name, max_iter=3000, test_interval=100, min_lr=0.0)
    its = np.arange(3000)
    ours = chain_lr(s.pieces(), its)
    assert np.max(np.abs(ours - ideal_lr(name, 0.02, 3000, s.policy_params(), its))) <= 0.01 * 0.02 + 1e-12
    assert ours.min() >= 0.0 and len(s.pieces()) <= (16 if name == "sgdr" else 7)


def test_knots_on_a_test_pass_move_one_iteration_on_where_the_schedule_is_continuous():
    s = SolverOptions(base_lr=0.01, lr_policy="triangular", max_iter=400, stepsize=100, test_interval=50)
    assert [(p.start, p.end) for p in s.pieces()] == [(0, 101), (101, 201), (201, 301), (301, 400)]


@pytest.mark.parametrize("fields, message", [
    ({"lr_policy": "cosine", "min_lr": 0.5}, "min_lr 0.5 must be >= 0 and below base_lr 0.01"),
    ({"lr_policy": "step+warmup", "warmup_iter": 700}, "warmup_iter 700 must be in 1..599"),
    ({"lr_policy": "sgdr", "period": 0}, "period must be >= 1"),
    ({"lr_policy": "onecycle", "max_lr": 0.001}, "max_lr 0.001 must be above base_lr"),
    ({"lr_policy": "cosine+warmup", "warmup_start": 0.0}, "warmup_start 0.0 must be in (0, 1)"),
])
def test_parameters_out_of_range_are_one_line(fields, message):
    with pytest.raises(InputError, match=re.escape(message)):
        SolverOptions(base_lr=0.01, max_iter=600, **fields)


def test_the_plateau_rule_drops_after_patience_passes_without_a_gain_in_the_metrics_direction():
    p = {"gamma": 0.1, "patience": 2, "cooldown": 0, "min_lr": 1e-6}
    tests = [(0, 0.1), (10, 0.3), (20, 0.3), (30, 0.25), (40, 0.4), (50, 0.39), (60, 0.38)]
    s = plateau_replay(0.01, p, tests, maximize=True)
    assert s.drops == [(31, pytest.approx(0.001)), (61, pytest.approx(0.0001))]
    loss = plateau_replay(0.01, p, [(0, 2.0), (10, 1.0), (20, 1.5), (30, 1.2)], maximize=False)
    assert loss.drops == [(31, pytest.approx(0.001))]


def test_bad_spec_values_for_schedules_are_one_line_and_name_the_variant():
    from caffegen.sweep import parse_spec

    with pytest.raises(InputError, match=r"did you mean 'cosine'"):
        parse_spec({"data": {"demo": {}}, "grid": {"base_lr": [0.1], "lr_policy": ["cosinus"]}}, source="s.toml")
    with pytest.raises(InputError, match=r"variant lr0.1_sgdr: period must be >= 1, got 0"):
        parse_spec({"data": {"demo": {}}, "solver": {"period": 0}, "grid": {"base_lr": [0.1], "lr_policy": ["sgdr"]}},
                   source="s.toml")


# ------------------------------------------------------------------------------------------ real caffe

def chained_sweep(tmp_path: Path, name: str, policies: str, max_iter: int = 60, solver: str = "") -> Path:
    return write_spec(tmp_path, name=name, max_iter=max_iter, test_interval=10, display=1, policies=policies, jobs=2,
                      solver=solver)


def logged_lr(log: Path) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for it, lr in LR_LINE.findall(log.read_text()):
        out.setdefault(int(it), set()).add(lr)
    return out


@pytest.mark.caffe
def test_every_new_schedule_logs_the_lr_caffegen_schedule_predicts(tmp_path):
    from caffegen.logs import parse_log
    from caffegen.sweep.spec import load_spec

    names = ["linear", "cosine", "sgdr", "onecycle", "triangular", "step+warmup", "cosine+warmup"]
    spec = chained_sweep(tmp_path, "lr", json.dumps(names), max_iter=90)
    proc = subprocess.run(CAFFEGEN + ["sweep", str(spec), "--no-report"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "runs" / "lr"
    for v in load_spec(spec).variants:
        run = out / v.name
        opts = SolverOptions(**{**v.solver, "net": "train_val.prototxt"})
        printed = logged_lr(run / "train.log")
        assert sorted(printed) == list(range(90)), v.name
        predicted = {it: format_lr(chain_lr(opts.pieces(), [it])[0]) for it in printed}
        assert {it: lrs for it, lrs in printed.items()} == {it: {lr} for it, lr in predicted.items()}, v.name
        tests = re.findall(r"Iteration (\d+), Testing net", (run / "train.log").read_text())
        assert [int(t) for t in tests] == list(range(0, 91, 10)), v.name      # a boundary's pass once
        segments = json.loads((run / "manifest.json").read_text())["segments"]
        assert [s["start"] for s in segments] == [p.start for p in opts.pieces()]
        assert store_rows(out)[v.name]["status"] == "done"
        lines, native = (parse_log(run / "train.log", engine=e) for e in ("lines", "native"))
        assert native.engine == "native" and native.train.rows == lines.train.rows, v.name   # the engines agree
        assert native.test.rows == lines.test.rows, v.name
    # the TensorBoard export: one lr point per iteration, continuous across the boundaries
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert subprocess.run(CAFFEGEN + ["export", "tensorboard", str(out), "--out", "tb"], cwd=tmp_path,
                          capture_output=True, timeout=300).returncode == 0
    ea = EventAccumulator(str(tmp_path / "tb" / "lr0.01_onecycle"), size_guidance={"scalars": 0}).Reload()
    lrs = [(e.step, e.value) for e in ea.Scalars("train/lr")]
    assert [step for step, _ in lrs] == list(range(90))
    onecycle = SolverOptions(**{**next(v for v in load_spec(spec).variants if v.name.endswith("onecycle")).solver,
                                "net": "train_val.prototxt"})
    predicted = chain_lr(onecycle.pieces(), list(range(90)))
    # a row's LearningRate is the last "lr =" printed before it (parse_log.py's rule): the previous iteration's
    assert [lr for _, lr in lrs][1:] == pytest.approx(list(predicted[:-1]), rel=1e-5)
    # evaluate a chained run's last snapshot
    ev = subprocess.run(CAFFEGEN + ["evaluate", str(out / "lr0.01_cosine"), "--snapshot", "last"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert json.loads((out / "lr0.01_cosine" / "eval" / "summary.json").read_text())["images"] > 0


@pytest.mark.caffe
def test_a_plateau_drops_the_lr_where_its_rule_says_on_the_test_metric(tmp_path):
    from caffegen.logs import parse_log

    spec = chained_sweep(tmp_path, "pl", '["plateau"]', max_iter=80, solver="patience = 1\nmin_lr = 1e-13")
    spec.write_text(spec.read_text().replace("base_lr = [0.01]", "base_lr = [1e-9]"))   # it cannot learn: plateaus
    proc = subprocess.run(CAFFEGEN + ["sweep", str(spec), "--no-report"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "pl" / "lr1e-09_plateau"
    tests = [(r["NumIters"], r["accuracy_at_1"]) for r in parse_log(run / "train.log").resolved().test.rows]
    state = plateau_replay(1e-9, {"gamma": 0.1, "patience": 1, "cooldown": 0, "min_lr": 1e-13}, tests, True)
    printed = logged_lr(run / "train.log")
    for it, lr in state.drops:
        assert printed[it] == {format_lr(np.float32(lr))}, (it, printed.get(it))
    assert len({next(iter(v)) for v in printed.values()}) == 1 + len(state.drops)


PROBE = """name: "probe"
layer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TRAIN }
  image_data_param { source: "train.txt" batch_size: 2 shuffle: true new_height: 8 new_width: 8 } }
layer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TEST }
  image_data_param { source: "val.txt" batch_size: 2 new_height: 8 new_width: 8 } }
layer { name: "seen" type: "Power" bottom: "label" top: "seen" }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  inner_product_param { num_output: 12 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


def seen(log: Path) -> list[int]:
    """The label of every image the TRAIN net read, in order (its unconsumed "seen" blob, printed each iteration)."""
    return [int(float(v)) for v in re.findall(r"Train net output #\d+: seen = (\S+)", log.read_text())]


def probe_images(folder: Path) -> None:
    """12 tiny images, each its own label, listed in train.txt (all) and val.txt (4), and the probe net."""
    from PIL import Image

    images = folder / "img"
    images.mkdir()
    lines = []
    for k in range(12):
        Image.new("RGB", (8, 8), (20 * k, 100, 200 - 10 * k)).save(images / f"{k:02d}.png")
        lines.append(f"{images / f'{k:02d}.png'} {k}")
    (folder / "list_train_shuffle.txt").write_text("\n".join(lines) + "\n")
    (folder / "list_val_shuffle.txt").write_text("\n".join(lines[:4]) + "\n")
    (folder / "probe.prototxt").write_text(PROBE)


PROBE_SPEC = """
name = "{name}"
[data]
train_list = "{folder}/list_train_shuffle.txt"
val_list = "{folder}/list_val_shuffle.txt"
{lmdb}
[net]
prototxt = "probe.prototxt"
{net}
[solver]
max_iter = 24
test_interval = 100
display = 1
random_seed = 3
[grid]
points = [{{ base_lr = 0.01, lr_policy = "triangular", stepsize = 2 }},
          {{ base_lr = 0.01, lr_policy = "triangular", stepsize = 3 }},
          {{ base_lr = 0.01, lr_policy = "linear", stepsize = 1 }},
          {{ base_lr = 0.01, lr_policy = "fixed", stepsize = 1 }}]
"""


def probe_sweep(tmp_path: Path, name: str, lmdb: str = "", net: str = "") -> dict[str, list[int]]:
    spec = tmp_path / f"{name}.toml"
    spec.write_text(PROBE_SPEC.format(name=name, folder=tmp_path, lmdb=lmdb, net=net))
    proc = subprocess.run(CAFFEGEN + ["sweep", str(spec), "--no-report"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "runs" / name
    return {n: seen(out / n / "train.log")[:48] for n in store_rows(out)}   # 24 iterations x batch 2


@pytest.mark.caffe
def test_a_chained_run_reads_every_image_once_per_epoch_whatever_its_segments(tmp_path):
    """12 images, each its own label; batch 2: an epoch is 6 iterations. Over 4 epochs, a triangular schedule cut
    into segments of 2 and of 3 iterations, a one-segment linear one and Caffe's own fixed policy each see every
    image once per epoch; the chained runs see the same sequence, whatever their segmentation. On an LMDB (read in
    key order) the chained runs see exactly what the unchained one sees."""
    probe_images(tmp_path)
    runs = probe_sweep(tmp_path, "probe")
    assert len(runs) == 4
    for name, labels in runs.items():
        epochs = [labels[i:i + 12] for i in range(0, 48, 12)]
        assert all(sorted(e) == list(range(12)) for e in epochs), (name, epochs)
    chained = [runs[n] for n in runs if "fixed" not in n]
    assert chained[0] == chained[1] == chained[2]       # the same stream, however it is cut
    manifest = json.loads((tmp_path / "runs" / "probe" / "lr0.01_triangular_stepsize2" / "manifest.json").read_text())
    assert len(manifest["segments"]) >= 12 and all(s["sha256"]["solver"] for s in manifest["segments"])
    prep = subprocess.run(CAFFEGEN + ["prepare", "--lmdb", "--resize", "8", "--lists", str(tmp_path), "--out", "db"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert prep.returncode == 0, prep.stderr[-2000:]
    (tmp_path / "probe.prototxt").write_text(PROBE.replace('type: "ImageData"', 'type: "Data"').replace(
        "image_data_param { source: \"train.txt\" batch_size: 2 shuffle: true new_height: 8 new_width: 8 }",
        "data_param { source: \"x\" batch_size: 2 backend: LMDB }").replace(
        "image_data_param { source: \"val.txt\" batch_size: 2 new_height: 8 new_width: 8 }",
        "data_param { source: \"y\" batch_size: 2 backend: LMDB }"))
    lmdb_runs = probe_sweep(tmp_path, "probelmdb", lmdb=f'train_lmdb = "{tmp_path / "db" / "train_lmdb"}"\n'
                                                       f'val_lmdb = "{tmp_path / "db" / "val_lmdb"}"')
    sequences = list(lmdb_runs.values())
    assert all(seq == sequences[0] for seq in sequences) and sorted(sequences[0][:12]) == list(range(12))


@pytest.mark.caffe
def test_sigterm_then_kill_9_of_the_driver_mid_segment_resume_the_schedule_where_it_was(tmp_path):
    """SIGTERM of the driver in segment 2 (a snapshot, exit 143), a rerun killed -9 in a later segment, a second
    rerun: one run, one curve, the schedule's lr at every iteration, never from its start again."""
    spec = chained_sweep(tmp_path, "k9", '["cosine"]', max_iter=600, solver="")
    spec.write_text(spec.read_text().replace("display = 1", "display = 10").replace("test_interval = 10",
                                                                                    "test_interval = 500"))
    out = tmp_path / "runs" / "k9"
    run = out / "lr0.01_cosine"

    def past_segment(k: int) -> bool:
        chain = run / "segments" / "chain.json"
        if not chain.exists() or len(json.loads(chain.read_text())["segments"]) <= k:
            return False
        its = [int(i) for i in re.findall(r"Iteration (\d+), loss", (run / "train.log").read_text())]
        return bool(its) and its[-1] > json.loads(chain.read_text())["segments"][k - 1]["end"] + 20

    for sig, segment in ((signal.SIGTERM, 1), (signal.SIGKILL, 3)):
        driver = subprocess.Popen(CAFFEGEN + ["sweep", str(spec), "--no-report"], cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: past_segment(segment), timeout=300)
            driver.send_signal(sig)
            assert driver.wait(timeout=60) == (143 if sig == signal.SIGTERM else -9)
        finally:
            if driver.poll() is None:
                driver.kill()
            driver.wait(timeout=60)
    again = subprocess.run(CAFFEGEN + ["sweep", str(spec), "--no-report"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    row = store_rows(out)["lr0.01_cosine"]
    assert row["status"] == "done" and row["last_iter"] == 600 and row["attempts"] == 3
    log = (run / "train.log").read_text()
    resumed = [int(i) for i in re.findall(r"Resuming from snapshots/snap_iter_(\d+)\.solverstate", log)]
    opts = SolverOptions(base_lr=0.01, lr_policy="cosine", max_iter=600, test_interval=500)
    printed = logged_lr(run / "train.log")
    for it in sorted(printed):       # the whole curve, before and after each stop, is the schedule's
        assert printed[it] == {format_lr(chain_lr(opts.pieces(), [it])[0])}, it
    assert len(resumed) >= 2 and all(r > 0 for r in resumed) and log.count("Iteration 0, loss") == 1


@pytest.mark.caffe
def test_extending_chained_runs_stretches_or_goes_on_as_the_schedule_means(tmp_path):
    """A onecycle run stopped mid-way is stretched (the lr goes on from where it was to the same end value at the
    new max_iter); a triangular run's cycles go on."""
    from caffegen.sweep.chain import extended

    spec = chained_sweep(tmp_path, "ex", '["onecycle", "triangular"]', max_iter=300)
    spec.write_text(spec.read_text().replace("display = 1", "display = 1\nsnapshot = 50"))
    driver = subprocess.Popen(CAFFEGEN + ["sweep", str(spec), "--no-report"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "runs" / "ex"
    try:   # stop both mid-run (Ctrl-C: a snapshot where each is)
        wait_for(lambda: all(max(logged_lr(out / n / "train.log"), default=0) > 110 for n in
                             ("lr0.01_onecycle", "lr0.01_triangular") if (out / n / "train.log").exists())
                 and len(list(out.glob("*/train.log"))) == 2, timeout=300)
        driver.send_signal(signal.SIGINT)
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait(timeout=60)
    for name in ("lr0.01_onecycle", "lr0.01_triangular"):
        run = out / name
        at = max(int(p.name.split("_iter_")[1].split(".")[0]) for p in (run / "snapshots").glob("*.solverstate"))
        proc = subprocess.run(CAFFEGEN + ["extend", str(run), "--iters", "500"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        opts = SolverOptions(base_lr=0.01, lr_policy=name.split("_")[1], max_iter=300, test_interval=10)
        new, pieces, note = extended(opts, at, 500)
        assert ("stretched to 500" if "onecycle" in name else "its cycles go on") in proc.stderr and note in proc.stderr
        chain = pieces if pieces is not None else new.pieces()
        printed = logged_lr(run / "train.log")
        after = [it for it in printed if it >= at]
        assert max(after) == 499
        for it in after:
            assert printed[it] >= {format_lr(chain_lr(chain, [it])[0])}, (name, it)
        if "onecycle" in name:     # the same end value (base_lr/100), at the new end; no jump where it resumed
            last = chain[-1]
            assert last.end == 500 and last.base_lr * (1 + last.gamma * 500) == pytest.approx(1e-4, rel=1e-4)
            assert abs(chain_lr(chain, [at])[0] - chain_lr(opts.pieces(), [at])[0]) < 1e-3 * 0.01
        assert store_rows(out)[name]["status"] == "done" and store_rows(out)[name]["max_iter"] == 500


@pytest.mark.caffe
def test_solvers_writes_a_chain_as_segment_solvers_and_a_script_that_caffe_runs_exactly(caffe_install, tmp_path):
    from test_schedule import DUMMY_NET

    (tmp_path / "net.prototxt").write_text(DUMMY_NET)
    common = ["--net", "net.prototxt", "--lr", "0.01", "--max-iter", "40", "--display", "1", "--test-iter", "1",
              "--test-interval", "1000", "--out", "s"]
    proc = subprocess.run(CAFFEGEN + ["solvers", "--policy", "onecycle,step+warmup", *common], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    index = {row["name"]: row for row in json.loads((tmp_path / "s" / "index.json").read_text())["variants"]}
    for name, policy in (("lr0.01_onecycle", "onecycle"), ("lr0.01_step+warmup", "step+warmup")):
        assert index[name]["lr_policy"] == policy and index[name]["file"] == f"{name}.sh"
        run = subprocess.run(["sh", f"{name}.sh"], cwd=tmp_path / "s", capture_output=True, text=True, timeout=120,
                             env={**caffe_install.env(threads=1), "CAFFE": str(caffe_install.binary)})
        assert run.returncode == 0, run.stderr[-2000:]
        printed = {int(it): lr for it, lr in LR_LINE.findall(run.stderr)}
        assert sorted(printed) == list(range(40)), name
        opts = SolverOptions(base_lr=0.01, lr_policy=policy, max_iter=40, net="net.prototxt", test_interval=1000)
        assert len(opts.pieces()) == index[name]["segments"] >= 2
        assert printed == {it: format_lr(chain_lr(opts.pieces(), [it])[0]) for it in printed}, name
    refused = subprocess.run(CAFFEGEN + ["solvers", "--policy", "plateau", *common[:-1], "p"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "only `caffegen sweep`" in refused.stderr and not (tmp_path / "p").exists()


# ----------------------------------------------------------------------------- a schedule of your own


class Halfway:
    """docs/schedules.md's example, defined here: base_lr for the first half of the run, ``min_lr`` for the rest
    (two pieces of Caffe's own ``fixed``)."""

    @staticmethod
    def make():
        from caffegen.prototxt.chained import Chained, Piece
        from caffegen.prototxt.chained.base import ToMinLrKnobs

        class _Halfway(Chained):
            name = "halfway"
            Knobs = ToMinLrKnobs
            stretched = True

            def defaults(self, max_iter, base_lr):
                return {"min_lr": base_lr / 10}

            def check(self, name, base_lr, max_iter, p):
                self.check_min_lr(name, base_lr, p)

            def ideal(self, base_lr, max_iter, p, its):
                return np.where(its < max_iter // 2, base_lr, p["min_lr"])

            def pieces(self, base_lr, max_iter, p, *, start, tol):
                half = max_iter // 2
                return [Piece(max(start, a), b, "fixed", lr, note=note)
                        for a, b, lr, note in ((0, half, base_lr, "first half"), (half, max_iter, p["min_lr"], "rest"))
                        if b > start]

            def describe(self):
                return ("min_lr base_lr/10", "min_lr")

        return _Halfway()


def _cli(*argv) -> int:
    """The CLI in this process (it sees the schedule the test registered)."""
    from caffegen.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in argv])
    return exit_.value.code


@pytest.mark.caffe
def test_a_schedule_of_your_own_is_one_class_the_whole_product_knows(tmp_path, capsys):
    """Registered from here: parsed and checked, written as solver files, drawn by `caffegen schedule`, trained by a
    real sweep (its lr where the pieces say), warm-up and all; unknown again once unregistered."""
    from caffegen.prototxt.chained import register, unregister

    register(Halfway.make())
    try:
        assert parse_schedules("step,halfway,halfway+warmup") == ["step", "halfway", "halfway+warmup"]
        assert "halfway" in parse_schedules("every")
        with pytest.raises(InputError, match="min_lr 0.02 must be >= 0 and below base_lr 0.01"):
            SolverOptions(base_lr=0.01, lr_policy="halfway", max_iter=100, min_lr=0.02).check()
        # render: the solver files of the chain (two fixed segments and the script)
        assert _cli("solvers", "--lr", "0.01", "--policy", "halfway", "--max-iter", "40", "--out",
                    tmp_path / "solvers") == 0
        segs = sorted((tmp_path / "solvers").glob("lr0.01_halfway.seg*.prototxt"))
        assert len(segs) == 2 and 'lr_policy: "fixed"' in segs[1].read_text()
        assert "base_lr: 0.001" in segs[1].read_text() and (tmp_path / "solvers" / "lr0.01_halfway.sh").is_file()
        # draw: its ideal curve and the lr along its segments
        png = tmp_path / "lr.png"
        assert _cli("schedule", "--lr", "0.01", "--policy", "step,halfway", "--max-iter", "100", "--out", png) == 0
        assert png.stat().st_size > 10_000 and "halfway (min_lr 0.001)" in capsys.readouterr().out
        # sweep: a real caffe trains it, segment after segment
        spec = write_spec(tmp_path, name="half", max_iter=20, test_interval=10, display=1,
                          policies='["halfway"]')
        assert _cli("sweep", spec, "--out", tmp_path / "half", "--no-report") == 0
        row = store_rows(tmp_path / "half")["lr0.01_halfway"]
        assert row["status"] == "done" and row["last_iter"] == 20
        log = (tmp_path / "half" / "lr0.01_halfway" / "train.log").read_text()
        lrs = {int(it): float(lr) for it, lr in re.findall(r"Iteration (\d+), lr = ([0-9.e-]+)", log)}
        assert lrs[5] == pytest.approx(0.01) and lrs[15] == pytest.approx(0.001)
    finally:
        unregister("halfway")
    with pytest.raises(InputError, match="lr_policy"):
        parse_schedules("halfway")


HOLD = """\
from dataclasses import dataclass

import numpy as np

from caffegen.errors import InputError
from caffegen.prototxt.chained import Chained, Piece
from caffegen.prototxt.knobs import knob


@dataclass(frozen=True)
class HoldKnobs:
    hold_for: float | None = knob(None, "the share of the run at base_lr (then base_lr/10).", derived="0.5",
                                  minimum=0)


class Hold(Chained):
    name = "hold"
    Knobs = HoldKnobs

    def defaults(self, max_iter, base_lr):
        return {"hold_for": 0.5}

    def check(self, name, base_lr, max_iter, p):
        if not 0 < p["hold_for"] < 1:
            raise InputError(f"{name}: hold_for {p['hold_for']:g} must be in (0, 1)")

    def ideal(self, base_lr, max_iter, p, its):
        return np.where(its < round(p["hold_for"] * max_iter), base_lr, base_lr / 10)

    def pieces(self, base_lr, max_iter, p, *, start, tol):
        knee = round(p["hold_for"] * max_iter)
        return [Piece(max(start, a), b, "fixed", lr) for a, b, lr in ((0, knee, base_lr), (knee, max_iter, base_lr / 10))
                if b > start]
"""


def _plugin(tmp_path: Path, target: str = "holdschedule:Hold") -> dict:
    """A package on PYTHONPATH with the schedule module and its ``caffegen.schedules`` entry point."""
    (tmp_path / "holdschedule.py").write_text(HOLD)
    info = tmp_path / "hold_schedule-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hold-schedule\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[caffegen.schedules]\nhold = {target}\n")
    import os

    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}


def test_a_schedule_with_a_knob_of_its_own_is_one_file_and_an_entry_point(tmp_path):
    """The knob is declared in the schedule's module only: the flag, its help, its check and the drawing follow."""
    env = _plugin(tmp_path)
    helped = subprocess.run(CAFFEGEN + ["solvers", "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert "--hold-for X" in helped.stdout and "hold: the share of the run at base_lr" in helped.stdout
    drawn = subprocess.run(CAFFEGEN + ["schedule", "--lr", "0.01", "--policy", "step,hold", "--hold-for", "0.25",
                                       "--max-iter", "100", "--out", str(tmp_path / "lr.png")],
                           env=env, capture_output=True, text=True, timeout=120)
    assert drawn.returncode == 0, drawn.stderr
    assert "hold (hold_for 0.25)" in drawn.stdout and (tmp_path / "lr.png").stat().st_size > 10_000
    bad = subprocess.run(CAFFEGEN + ["schedule", "--policy", "hold", "--hold-for", "2", "--out", str(tmp_path / "x.png")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "caffegen: error: hold: hold_for 2 must be in (0, 1)"], bad.stderr
    # a plug-in that does not load: one line naming it, exit 2
    (tmp_path / "broken").mkdir()
    broken = subprocess.run(CAFFEGEN + ["schedule", "--help"], env=_plugin(tmp_path / "broken", "nosuch:Hold"),
                            capture_output=True, text=True, timeout=120)
    assert broken.returncode == 2 and len(broken.stderr.strip().splitlines()) == 1, broken.stderr
    assert "schedule plug-in hold (nosuch:Hold) does not load" in broken.stderr


def test_a_knob_no_solver_field_has_cannot_be_registered_at_run_time():
    from dataclasses import dataclass

    from caffegen.prototxt.chained import Chained, register
    from caffegen.prototxt.knobs import knob

    @dataclass(frozen=True)
    class Late:
        late: float | None = knob(None, "too late.")

    class LateSchedule(Chained):
        name = "late"
        Knobs = Late

    with pytest.raises(ValueError, match="caffegen.schedules entry point"):
        register(LateSchedule())
