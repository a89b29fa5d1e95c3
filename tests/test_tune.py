"""`caffegen tune` end to end on the real binary: a tiny net of your own on a tiny image folder (each run takes a
second), killed in its search and resumed, within its budget, and bad input refused in one line."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from caffegen.prototxt import NetOptions, render_net
from helpers import CIFAR_QUICK_STYLE, LENET_STYLE, ZOO_SIZED, browser_check, make_imageset
from sweep_state import store_rows, wait_for

CAFFEGEN = [sys.executable, "-m", "caffegen"]
TINY = dict(resize=36, test_resize=32, crop=32, conv_widths=(8, 8, 16, 16, 16), train_batch=8, test_batch=4,
            batchnorm=True)
FAST = ["--iters", "60", "--search-iters", "30"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """3 classes x 16 images: one folder per class, as a practitioner's data comes."""
    root = tmp_path_factory.mktemp("images")
    make_imageset(root, classes=3, per_class=16)
    return root


def net(tmp_path: Path, **kw) -> Path:
    """Your own train_val (caffegen's template rendered small, written as a user's file)."""
    path = tmp_path / "train_val.prototxt"
    path.write_text(render_net(NetOptions(num_classes=3, **{**TINY, **kw})))
    return path


def dashboard_trials(db: Path) -> int:
    """The trials optuna-dashboard itself serves of the study "search" in ``db`` (its JSON API on 127.0.0.1)."""
    import json as _json
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "optuna-dashboard"
    server = subprocess.Popen([str(exe), f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def studies():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as r:
                    return _json.loads(r.read())["study_summaries"]
            except OSError:
                return None
        found = wait_for(studies, timeout=60)
        study = next(s for s in found if s["study_name"] == "search")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}", timeout=10) as r:
            return len(_json.loads(r.read())["trials"])
    finally:
        server.kill()
        server.wait(timeout=30)


def tune(cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(CAFFEGEN + ["tune", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.caffe
@pytest.mark.quiet      # held to a wall-clock budget: alone on the machine
def test_tune_killed_9_in_its_search_resumes_and_runs_every_stage_within_its_budget(folder, tmp_path):
    """kill -9 of the tune while two search trials run; the rerun loses no trial, runs none twice, resumes the
    killed ones, and finishes every stage within the budget; a third run reuses every stage."""
    import optuna
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "t"
    args = [net(tmp_path), "--data", folder, *FAST, "--policies", "all", "--strategy", "search", "--budget", "70s",
            "--out", out]
    first = tmp_path / "first.log"      # a file, not a pipe: nothing blocks the tune when nobody reads it
    proc = subprocess.Popen(CAFFEGEN + ["tune", *map(str, args)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=first.open("w"))

    def running_trials() -> bool:
        assert proc.poll() is None, first.read_text()[-3000:]     # the tune is still at work
        rows = store_rows(out / "search") if (out / "search" / "sweep.db").exists() else {}
        return sum(r["status"] == "running" for r in rows.values()) >= 2

    try:
        wait_for(running_trials, timeout=300)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    again = tune(tmp_path, *args)
    assert again.returncode == 0, again.stderr[-4000:]
    err = first.read_text() + again.stderr
    assert "[tune] plan for a budget of 70s" in err
    assert "of the repeated grid over the same space (105 runs of 60 iterations: 5 base_lr x 7 schedules x 3 seeds" in err
    for i, stage in enumerate(("measure", "sanity", "lr-find", "search", "confirm", "final", "look"), 1):
        assert f"[tune] stage {i}/7: {stage}" in err
    assert "[tune] stage 1/7: measure" not in again.stderr            # the stages done before the kill are kept
    assert "[tune] bill:" in err and "optuna-dashboard sqlite:///" in err
    state = json.loads((out / "tune.json").read_text())
    assert all(state["stages"][s]["status"] == "done" for s in ("measure", "sanity", "lr-find", "search", "confirm",
                                                                  "final", "look"))
    spent = sum(s["spent_s"] for s in state["stages"].values())
    assert spent <= 1.1 * state["plan"]["wall_s"], (spent, state["plan"]["wall_s"])    # the budget holds
    # the search: none lost, none run twice, the sampler drew on, the killed trials resumed
    from caffegen.tune.specs import lr_within

    lr = state["stages"]["lr-find"]["decision"]
    low, high = lr_within(lr["low"], lr["high"], lr.get("blew_up_at"))     # the range may follow the best trials
    trials = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'search' / 'sweep.db'}").get_trials()
    names = [t.user_attrs.get("variant") for t in trials]
    assert len(trials) >= 6 and all(low <= t.params["base_lr"] <= high for t in trials)
    moved = state["stages"]["search"]["decision"]["lr_range"]           # where the range stood at the end
    assert low <= moved[0] <= lr["low"] and lr["high"] <= moved[1] <= high
    assert [t.number for t in trials] == list(range(len(trials)))
    assert len(set(names)) == len(names) and None not in names
    assert len({(t.params["base_lr"], t.params["lr_policy"]) for t in trials}) == len(trials)
    rows = store_rows(out / "search")
    assert sorted(rows) == sorted(names) and all(r["status"] in ("done", "pruned") for r in rows.values())
    assert any(r["attempts"] == 2 for r in rows.values())
    # the verdict, the final run, the look
    verdict = state["stages"]["confirm"]["decision"]
    winner = verdict["winner"]
    assert verdict["headline"].startswith(f"winner {winner['name']}: ") and "top-1" in verdict["headline"]
    for values in verdict["values"].values():                           # fresh seeds only: never the search's seed 0
        assert "0" not in values and 0 not in values
    # the candidates ran again at the full length with seed 1: the winner's run there is the final one
    confirm = store_rows(out / "confirm" / "seed1")
    assert len(confirm) >= 2 and all(r["last_iter"] == 60 for r in confirm.values())
    assert state["stages"]["final"]["decision"]["how"] == "confirm" and not (out / "final").exists()
    run = f"{winner['name']}_seed1"
    for stage in ("search", "confirm-seed1"):        # every stage's spec is a sweep anyone can rerun
        assert "caffegen sweep" in (out / "specs" / f"{stage}.toml").read_text()
    assert (out / "report.html").is_file() and winner["name"] in (out / "report.md").read_text()
    assert (out / "confirm" / "seed1" / run / "eval" / "summary.json").is_file()
    assert f"href='{run}/eval/index.html'" in (out / "confirm" / "seed1" / "report.html").read_text()  # linked
    ea = EventAccumulator(str(out / "tensorboard" / "confirm" / "seed1" / run)).Reload()
    assert "test/top1" in ea.Tags()["scalars"]
    assert dashboard_trials(out / "search" / "sweep.db") == len(trials)   # optuna-dashboard reads the study
    third = tune(tmp_path, *args)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "[tune] stage 4/7: search" not in third.stderr          # a finished stage is reused, not run again
    other = tune(tmp_path, *args[:-4], "--budget", "80s", "--out", out)
    lines = other.stderr.strip().splitlines()
    assert other.returncode == 2 and len(lines) == 1 and "holds a tune with other arguments (budget" in lines[0]


@pytest.mark.caffe
def test_tune_scans_the_rate_at_the_full_length_then_trains_the_schedules_at_it(folder, tmp_path):
    """The default strategy where the budget fits it: poly and cosine at 4 rates up from the range test's valley
    (one seed), the rate they like best, then the schedules there with a fresh seed; the best of those wins and
    its run is the final one."""
    from caffegen.tune.decide import scan_candidates, scan_rate, scan_rates

    out = tmp_path / "t"
    proc = tune(tmp_path, net(tmp_path), "--data", folder, "--iters", "2000", "--policies", "poly,cosine,step,exp",
                "--budget", "50runs", "--out", out)
    assert proc.returncode == 0, proc.stderr[-4000:]
    state = json.loads((out / "tune.json").read_text())
    assert state["plan"]["mode"] == "scan" and state["plan"]["at_rate"] == 4
    lr = state["stages"]["lr-find"]["decision"]
    rates = scan_rates(lr["suggestions"].get("valley"), lr.get("blew_up_at"))
    scan = store_rows(out / "search")
    assert sorted((r["axes"]["base_lr"], r["axes"]["lr_policy"]) for r in scan.values()) == \
        sorted((x, p) for x in rates for p in ("poly", "cosine"))
    assert all(r["status"] == "done" and r["last_iter"] == 2000 for r in scan.values())
    rate = scan_rate({(r["axes"]["base_lr"], r["axes"]["lr_policy"]): r["best_top1"] for r in scan.values()},
                     maximize=True)
    assert f"[tune] the rate scan chose base_lr {rate:g}" in proc.stderr
    fresh = store_rows(out / "confirm" / "seed1")              # every schedule at that rate, a fresh seed
    assert sorted(fresh) == sorted(f"{n}_seed1" for n, _ in scan_candidates(rate, ("poly", "cosine", "step", "exp"), 4))
    assert all(r["last_iter"] == 2000 for r in fresh.values())
    verdict = state["stages"]["confirm"]["decision"]
    best = max(fresh, key=lambda n: fresh[n]["best_top1"])
    assert f"{verdict['winner']['name']}_seed1" == best and verdict["winner"]["point"]["base_lr"] == rate
    assert "one fresh seed each" in verdict["headline"]
    assert state["stages"]["final"]["decision"]["how"] == "confirm" and not (out / "final").exists()
    page = (out / "report.md").read_text()
    assert "the rate scan's runs over base_lr x schedule" in page and verdict["winner"]["name"] in page


@pytest.mark.parametrize("args, message", [
    (["--data", "/nonexistent/images"], "--data folder not found: /nonexistent/images"),
    (["--data", "{folder}", "--budget", "0"], "--budget '0'"),
    (["--data", "{folder}", "--budget", "0runs"], "a budget of 0 runs trains nothing"),
    (["--data", "{folder}", "--budget", "fast"], "give a share of the repeated grid (10%), a time (2h, 90m"),
    (["--data", "{folder}", "--bugdet", "2h"], "No such option '--bugdet'. (Did you mean one of: '--budget'"),
    (["{deploy}", "--data", "{folder}"], "deploy"),
    (["{net}", "--data", "{folder}", "--budget", "1runs", "--iters", "60"], "too small for sanity, lr-find"),
    # a net ranked by a loss with no class axis (a regression): the tune is for classifiers, and says so first
    (["{regression}", "--data", "{folder}"], "no SoftmaxWithLoss layer: caffegen tunes classifiers"),
])
@pytest.mark.caffe
def test_bad_input_is_one_line_and_exit_2(folder, tmp_path, args, message):
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text('name: "d"\nlayer { name: "data" type: "Input" top: "data" '
                      'input_param { shape { dim: 1 dim: 3 dim: 32 dim: 32 } } }\n'
                      'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                      'inner_product_param { num_output: 3 } }\n')
    regression = tmp_path / "regression.prototxt"
    regression.write_text('name: "r"\nlayer { name: "data" type: "ImageData" top: "data" top: "label" '
                          f'image_data_param {{ source: "{folder}/list.txt" batch_size: 4 }} }}\n'
                          'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                          'inner_product_param { num_output: 1 } }\n'
                          'layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "label" top: "loss" }\n')
    argv = [a.format(folder=folder, deploy=deploy, net=net(tmp_path), regression=regression) for a in args]
    proc = tune(tmp_path, *argv, "--out", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()                          # refused: no folder left
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("caffegen: error:")]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


def test_the_plan_counts_what_the_measure_stage_spent_and_names_the_budget_that_would_do():
    from caffegen.errors import InputError
    from caffegen.tune.budget import Speed, make_plan, parse_budget

    speed = Speed(iter_s=0.05, test_s=0.5, start_s=0.4, slots=2, check_s=1.0, figure_s=0.3)
    kw = dict(iters=600, search_iters=200, test_interval=50, search_test_interval=33, policies=7, sanity_iters=300,
              lrfind_iters=100, final="retrain", scan=False)     # the search's plan (--strategy search)
    fresh = make_plan(parse_budget("4m"), speed, **kw)      # (below the cap of 35 trials: 5 rates x 7 schedules)
    measured = make_plan(parse_budget("4m"), speed, spent=60.0, **kw)
    assert measured.stages[0].name == "measure" and measured.stages[0].seconds == 60.0
    assert measured.wall_s == fresh.wall_s == 240.0                   # the budget is the whole command's
    assert measured.search_seconds < fresh.search_seconds               # the minute measured is the search's less
    assert measured.total_s <= 240.0 * 1.1
    assert make_plan(parse_budget("10m"), speed, **kw).trials == 35    # never more trials than the grid's points
    with pytest.raises(InputError, match=r"too small .* give at least 1m57s \(--budget 7runs\)") as err:
        make_plan(parse_budget("60s"), speed, spent=5.0, **kw)
    assert "\n" not in str(err.value)


def test_a_budget_the_repeated_grid_fits_runs_the_grid_not_hundreds_of_tiny_trials():
    from caffegen.tune.budget import Speed, make_plan, parse_budget

    # 4 classes x 30 images: 36 iterations at the full length, the one-seed grid costs seconds
    speed = Speed(iter_s=0.01, test_s=0.05, start_s=0.3, slots=2, check_s=0.5, figure_s=0.1)
    kw = dict(iters=36, search_iters=12, test_interval=3, search_test_interval=2, policies=7, sanity_iters=300,
              lrfind_iters=100, final="retrain")
    plan = make_plan(parse_budget("5m"), speed, spent=5.0, **kw)
    assert plan.mode == "grid" and plan.trials == plan.grid_runs == 105
    text = "\n".join(plan.lines())
    assert "the repeated grid fits the budget, so it runs instead of a search" in text
    assert "trials of 12 iterations" not in text
    # a budget the grid does not fit: the rate scan (or with --strategy search a search), costing less than the grid
    small = make_plan(parse_budget("40runs"), speed, spent=5.0, **kw)
    assert small.mode == "scan" and small.of_grid < 1.0
    searched = make_plan(parse_budget("40runs"), speed, spent=5.0, scan=False, **kw)
    assert searched.mode == "search" and searched.of_grid < 1.0


@pytest.mark.caffe
def test_tune_runs_the_repeated_grid_when_it_fits(folder, tmp_path):
    out = tmp_path / "t"
    proc = tune(tmp_path, "--data", folder, "--iters", "20", "--policies", "step", "--budget", "20m",
                "--no-sanity", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the repeated grid fits the budget" in proc.stderr
    state = json.loads((out / "tune.json").read_text())
    assert state["plan"]["mode"] == "grid"
    from caffegen.tune.budget import grid_lrs

    rows = store_rows(out / "search")
    lr = state["stages"]["lr-find"]["decision"]
    rates = grid_lrs(lr["low"], lr["high"])
    assert sorted({r["params"]["solver"]["base_lr"] for r in rows.values()}) == sorted(rates)
    assert len(rows) == 3 * len(rates)                                                # 3 seeds of each point
    assert all(r["last_iter"] == 20 for r in rows.values())                          # at the full length
    verdict = state["stages"]["confirm"]["decision"]
    assert "over 3 seeds of the repeated grid" in verdict["headline"]
    assert not (out / "final").exists() and not (out / "confirm").exists()           # nothing run twice
    assert all(lr["low"] <= r["params"]["solver"]["base_lr"] <= lr["high"] * 1.001 for r in rows.values())
    # the front page, read in a real browser: the answer in Caffe's terms, every picture loads, every link resolves
    page = (out / "report.html").read_text()
    assert 'use base_lr' in page and 'lr_policy &quot;step&quot;' in page and "how sure:" in page
    seen = browser_check(out / "report.html", tmp_path)
    assert len(seen["imgs"]) >= 4 and all(i["ok"] for i in seen["imgs"]), seen
    assert seen["links"] and all(a["ok"] for a in seen["links"]), seen
    last = proc.stdout.strip().splitlines()
    assert last[0].startswith("use base_lr") and any(line.startswith("files: ") for line in last)


def wired_data_layers(run: Path) -> list:
    """The data layers of the train_val a tune's run trained."""
    from google.protobuf import text_format

    from caffegen.toolchain import caffe_pb2

    net = text_format.Parse((run / "train_val.prototxt").read_text(), caffe_pb2().NetParameter())
    return [layer for layer in net.layer if layer.type in ("Data", "ImageData")]


def error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("caffegen: error:")]
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return lines[0]


@pytest.mark.caffe
def test_tune_takes_the_nets_a_sweep_takes_at_the_size_asked_or_says_which_flag_in_one_line(folder, tmp_path):
    """LMDB (Data-layer) nets fed the image folder through ImageData (LeNet-style; CIFAR-10-quick-style with its mean
    file replaced through --spec), a global-pool head at a small --crop and --batch, and the source package's CaffeNet
    with its mean file (found through --spec's root): each ends with a winner, or exit 2 with one line naming a flag
    of `caffegen tune` (never a spec table it cannot set). (The BatchNorm/Scale net: the tests above tune one.)"""
    from caffegen.toolchain.upstream import caffe_models_dir

    quick = ["--policies", "step", "--iters", "20", "--budget", "20m"]     # every stage, sanity included
    lenet = tmp_path / "lenet.prototxt"
    lenet.write_text(LENET_STYLE)
    line = error_line(tune(tmp_path, lenet, "--data", folder, *quick, "--out", tmp_path / "no"))
    assert "reads an LMDB (Data) and crops nothing" in line and "give --resize N" in line and "[net]" not in line
    ok = tune(tmp_path, lenet, "--data", folder, "--resize", "28", *quick, "--out", tmp_path / "lenet")
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "reads LMDBs through Data layers: the tune feeds it --data through ImageData" in ok.stderr
    run = next((tmp_path / "lenet" / "search").glob("lr*"))
    assert [(d.type, d.image_data_param.new_height, d.transform_param.scale) for d in wired_data_layers(run)] == \
        [("ImageData", 28, pytest.approx(0.00390625))] * 2                     # the net's own transform kept

    zoo = tmp_path / "zoo.prototxt"
    zoo.write_text(ZOO_SIZED)
    ok = tune(tmp_path, zoo, "--data", folder, "--crop", "64", "--batch", "4", *quick, "--out", tmp_path / "zoo")
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "[tune] trains at zoo.prototxt: crop 64, batch 4 (the rest the net's own)" in ok.stderr
    assert "candidate for the full size, not a proof" in ok.stderr
    assert "Trains at zoo.prototxt: crop 64, batch 4" in (tmp_path / "zoo" / "report.md").read_text()   # and says so
    run = next((tmp_path / "zoo" / "search").glob("lr*"))
    assert [(d.transform_param.crop_size, d.image_data_param.batch_size) for d in wired_data_layers(run)][0] == (64, 4)

    cifar = tmp_path / "cifar.prototxt"       # a mean file nobody has here: --spec's [net] mean instead
    cifar.write_text(CIFAR_QUICK_STYLE)
    line = error_line(tune(tmp_path, cifar, "--data", folder, "--resize", "32", *quick, "--out", tmp_path / "no"))
    assert "subtracts the mean file" in line and "give --spec FILE with [net] mean = [104, 117, 123]" in line
    means = tmp_path / "means.toml"
    means.write_text("[net]\nmean = [125, 123, 114]\n")
    # (its tiny initial weights need more than sanity's 300 iterations to overfit 6 images: sanity says FAIL, exit 1)
    ok = tune(tmp_path, cifar, "--data", folder, "--resize", "32", "--spec", means, *quick, "--no-sanity",
              "--out", tmp_path / "cifar")
    assert ok.returncode == 0, ok.stderr[-3000:]
    run = next((tmp_path / "cifar" / "search").glob("lr*"))
    assert {tuple(d.transform_param.mean_value) for d in wired_data_layers(run)} == {(125, 123, 114)}

    caffenet = caffe_models_dir() / "bvlc_reference_caffenet" / "train_val.prototxt"
    root = tmp_path / "caffe"
    mean = root / "data" / "ilsvrc12" / "imagenet_mean.binaryproto"
    mean.parent.mkdir(parents=True)
    mean.write_bytes(b"")      # only its existence is checked before the crop refuses the net
    spec = tmp_path / "caffenet.toml"
    spec.write_text(f'[net]\nroot = "{root}"\n')
    line = error_line(tune(tmp_path, caffenet, "--data", folder, "--crop", "64", "--spec", spec, *quick,
                           "--out", tmp_path / "caffenet"))
    assert "--crop 64: layer 'fc6' (InnerProduct) reads a 6x6 map at the net's own 227" in line and "[net]" not in line
    assert not (tmp_path / "caffenet").exists()


@pytest.mark.caffe
def test_tune_reads_two_lmdbs_given_as_data(folder, tmp_path):
    """--data TRAIN_LMDB,VAL_LMDB for people whose data already is LMDB: the net's Data layers read them as they are,
    the tune counts their records and labels (sanity, which draws from image lists, is skipped and says so)."""
    lists = subprocess.run(CAFFEGEN + ["lists", str(folder), "--out", "lists"], cwd=tmp_path, capture_output=True,
                           text=True)
    assert lists.returncode == 0, lists.stderr
    prep = subprocess.run(CAFFEGEN + ["prepare", "--lmdb", "--resize", "28", "--gray", "--lists", "lists", "--out",
                                      "lmdb"], cwd=tmp_path, capture_output=True, text=True)
    assert prep.returncode == 0, prep.stderr
    lenet = tmp_path / "lenet.prototxt"
    lenet.write_text(LENET_STYLE)
    data = f"{tmp_path / 'lmdb' / 'train_lmdb'},{tmp_path / 'lmdb' / 'val_lmdb'}"
    quick = ["--policies", "step", "--iters", "20", "--budget", "20m"]
    ok = tune(tmp_path, lenet, "--data", data, *quick, "--out", tmp_path / "t")
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "sanity is skipped" in ok.stderr
    run = next((tmp_path / "t" / "search").glob("lr*"))
    layers = wired_data_layers(run)
    assert [(d.type, d.data_param.source) for d in layers] == [("Data", data.split(",")[0]), ("Data", data.split(",")[1])]
    state = json.loads((tmp_path / "t" / "tune.json").read_text())
    assert state["stages"]["confirm"]["decision"]["winner"]["mean"] is not None
    # the template net reads images, not LMDBs; records smaller than the crop; a crop its fixed-size head refuses
    line = error_line(tune(tmp_path, "--data", data, *quick, "--out", tmp_path / "no"))
    assert "LMDBs need your own NET reading them through Data layers" in line
    line = error_line(tune(tmp_path, lenet, "--data", data, "--crop", "40", *quick, "--out", tmp_path / "no"))
    assert "its records are 28x28, smaller than the 40x40 crop lenet.prototxt takes (--crop)" in line
    line = error_line(tune(tmp_path, lenet, "--data", data, "--crop", "12", *quick, "--out", tmp_path / "no"))
    assert "--crop 12: layer 'ip1' (InnerProduct)" in line and "fixed-size head" in line and "[net]" not in line
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("args, message", [
    (["--crop", "40", "--resize", "32"], "--crop 40 is larger than --resize 32"),
    (["--spec", "{grid}"], "[grid] is not used by caffegen tune: it takes the tables [data], [net], [solver], [run]"),
    (["--spec", "{owned}"], "[solver] max_iter is set by --iters / --search-iters, not the spec file"),
    (["--spec", "{missing}"], "--spec {missing}: no such file"),
    (["--backend", "ray", "--address", "127.0.0.1:1"], "--address 127.0.0.1:1: no Ray cluster answers there"),
    (["--address", "127.0.0.1:6379"], "--address 127.0.0.1:6379 is a cluster's address: it needs --backend ray"),
])
def test_the_size_flags_and_spec_refuse_bad_input_in_one_line(folder, tmp_path, args, message):
    (tmp_path / "grid.toml").write_text("[grid]\nbase_lr = [0.1]\n")
    (tmp_path / "owned.toml").write_text("[solver]\nmax_iter = 100\n")
    paths = {k: tmp_path / f"{k}.toml" for k in ("grid", "owned", "missing")}
    argv = [a.format(**paths) for a in args]
    line = error_line(tune(tmp_path, "--data", folder, *argv, "--out", tmp_path / "bad"))
    assert message.format(**paths) in line
    assert not (tmp_path / "bad").exists()
