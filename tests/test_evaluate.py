"""Best snapshots, `caffegen evaluate` and `caffegen export tensorboard`, on the real Caffe and pycaffe."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from caffegen.evaluate import metrics
from caffegen.logs import parse_log
from caffegen.run.folder import best_snapshot_iters

from helpers import pixels_like, tiny_net

CAFFEGEN = [sys.executable, "-m", "caffegen"]

# 3 classes x 20 demo images, 30% held out: 18 val images, read in 3 whole TEST batches of 6, so Caffe's test pass
# sees each val image exactly once, as evaluate does.
SPEC = """
name = "ev"
[data]
demo = { classes = 3, per_class = 20, seed = 0 }
val_fraction = 0.3
""" + tiny_net(test_batch=6) + """[solver]
max_iter = 60
test_interval = 10
display = 10
random_seed = 0
[grid]
base_lr = [0.05, 0.001]
lr_policy = ["fixed"]
[run]
jobs = 2
keep_best = 2
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CAFFEGEN, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A finished two-run sweep, evaluated once (the winner) the way the README says."""
    tmp = tmp_path_factory.mktemp("evaluate")
    (tmp / "ev.toml").write_text(SPEC)
    out = tmp / "runs" / "ev"
    proc = cli("sweep", "ev.toml", "--out", out, cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.caffe
def test_runs_keep_the_snapshot_nearest_their_best_top1_and_the_newest(sweep):
    for run in ("lr0.05_fixed", "lr0.001_fixed"):
        manifest = json.loads((sweep / run / "manifest.json").read_text())
        record = {s["iteration"]: s for s in manifest["snapshots"]}
        tests = [(r["NumIters"], r["accuracy_at_1"]) for r in parse_log(sweep / run / "train.log").test.rows]
        best = best_snapshot_iters(tests, range(10, 61, 10), k=2)
        assert set(record) == set(best) | {60}                   # the 2 best (K = 2) and the newest
        assert record[60]["kept_as"][-1] == "newest"
        assert [it for it, s in record.items() if "best" in s["kept_as"]] == sorted(best)
        assert record[best[0]]["rank"] == 1
        assert record[best[0]]["test_value"] == max(v for _, v in tests)
        files = sorted(p.name for p in (sweep / run / "snapshots").iterdir())
        assert files == sorted(f"snap_iter_{it}.{ext}" for it in record for ext in ("caffemodel", "solverstate"))


def test_best_snapshot_iters_picks_the_nearest_test_pass():
    tests = [(10, 0.5), (20, 0.9), (30, 0.7)]
    assert best_snapshot_iters(tests, [10, 20, 30], k=1) == [20]
    assert best_snapshot_iters(tests, [15, 25, 30], k=2) == [25, 30]   # halfway: the earlier pass counts
    assert best_snapshot_iters([(10, 1.0), (20, 1.0)], [10, 20], k=1) == [10]   # a tie: the earlier
    assert best_snapshot_iters([(10, 0.3), (20, 0.1)], [10, 20], k=1, metric="loss") == [20]
    assert best_snapshot_iters([], [10], k=1) == []


@pytest.mark.caffe
def test_evaluate_on_a_sweep_scores_the_winner_as_caffe_does_and_links_it(sweep):
    proc = cli("evaluate", sweep.name, "--snapshot", "last", cwd=sweep.parent)   # a relative path, as in the README
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "linked from" in proc.stdout
    winner = proc.stdout.split(" @ ")[0].strip()
    ev = sweep / winner / "eval"
    s = json.loads((ev / "summary.json").read_text())
    last = parse_log(sweep / winner / "train.log").test.rows[-1]
    assert s["iteration"] == last["NumIters"] == 60
    assert s["images"] == 18 and s["caffe_test"]["same_images"]
    assert s["top1"] == pytest.approx(last["accuracy_at_1"], abs=1e-6)     # Caffe's Accuracy on the same images
    assert s["caffe_test"]["top1"] == pytest.approx(s["top1"], abs=1e-6)
    labels = [int(line.rsplit(" ", 1)[1]) for line in (sweep / "lists" / "list_val_shuffle.txt").read_text().split(
        "\n") if line]
    conf = np.loadtxt(ev / "confusion.csv", delimiter=",", skiprows=1, usecols=(1, 2, 3), dtype=int)
    assert conf.sum(axis=1).tolist() == [labels.count(c) for c in range(3)] == [c["support"] for c in s["classes"]]
    names = (sweep / "lists" / "labels.txt").read_text().split()
    assert [c["name"] for c in s["classes"]] == names
    assert (ev / "confusion.csv").read_text().splitlines()[0].split(",")[1:] == names
    with np.load(ev / "scores.npz") as z:
        assert z["scores"].shape == z["probs"].shape == (18, 3) and z["labels"].tolist() == labels
        np.testing.assert_allclose(z["probs"].sum(axis=1), 1.0, rtol=1e-5)
    per_class = (ev / "per_class.csv").read_text().splitlines()
    assert len(per_class) == 1 + 3 and [row.split(",")[1] for row in per_class[1:]] == names
    assert pixels_like(ev / "confusion.png", (8, 48, 107), tol=60) > 100       # the Blues map's dark cells
    for png in ("pr.png", "roc.png"):
        assert pixels_like(ev / png, "blue") > 100 and pixels_like(ev / png, "orange") > 100, png  # two classes
    assert "list_val_shuffle.txt" in (ev / "net.prototxt").read_text()     # the TEST net, reading the val list
    preds = (ev / "predictions.csv").read_text().splitlines()
    assert len(preds) == 1 + 18
    wrong = sum(1 for row in preds[1:] if row.split(",")[2] != row.split(",")[4])
    assert (ev / "index.html").read_text().count("class='card'") == wrong
    assert f"{winner}/eval/index.html" in (sweep / "report.html").read_text()


@pytest.mark.caffe
def test_evaluate_the_best_snapshot_of_one_run_on_another_list(sweep, tmp_path):
    run = sweep / "lr0.05_fixed"
    best_iter = json.loads((run / "manifest.json").read_text())["result"]["best_iter"]
    mine = tmp_path / "mine.txt"
    lines = (sweep / "lists" / "list_val_shuffle.txt").read_text().splitlines()[:7]
    mine.write_text("\n".join(lines) + "\n")
    out = tmp_path / "eval"
    proc = cli("evaluate", run, "--list", mine, "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["iteration"] == best_iter and s["images"] == 7 and s["list"] == str(mine)
    assert s["caffe_test"] is None   # another list: no test pass of the log to compare with


@pytest.mark.parametrize("args, message", [
    (["--snapshot", "7"], "no snapshot at iteration 7"),
    (["--snapshot", "newest"], "--snapshot must be best, last or an iteration"),
    (["--list", "missing.txt"], "list file not found"),
])
@pytest.mark.caffe
def test_evaluate_bad_input_is_one_line_and_exit_2(sweep, tmp_path, args, message):
    proc = cli("evaluate", sweep / "lr0.05_fixed", *args, "--out", tmp_path / "e", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr


def test_pr_and_roc_from_known_scores():
    scores, positive = np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0], bool)
    precision, recall, thr = metrics.pr(scores, positive)
    assert precision.tolist() == pytest.approx([1, 0.5, 2 / 3, 0.5]) and recall.tolist() == [0.5, 0.5, 1, 1]
    assert metrics.average_precision(scores, positive) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    fpr, tpr, _ = metrics.roc(scores, positive)
    assert fpr.tolist() == [0, 0, 0.5, 0.5, 1] and tpr.tolist() == [0, 0.5, 0.5, 1, 1]
    assert metrics.auc(fpr, tpr) == pytest.approx(0.75)
    fpr, tpr, _ = metrics.roc(np.array([0.5, 0.5]), np.array([1, 0], bool))   # a tie is one threshold
    assert metrics.auc(fpr, tpr) == pytest.approx(0.5)
    conf = metrics.confusion([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], 3)
    assert conf.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    per = metrics.per_class(conf)
    assert per["support"].tolist() == [2, 1, 2] and per["precision"].tolist() == [0.5, 0.5, 1.0]
    k = metrics.counts_at(scores, positive, num_thresholds=3)            # thresholds 0, 0.5, 1
    assert k["tp"].tolist() == [2, 2, 0] and k["fp"].tolist() == [2, 2, 0] and k["fn"].tolist() == [0, 0, 2]
    # Caffe's Accuracy: a tie with the label's score is a hit only if fewer than k scores are higher
    assert metrics.topk_accuracy(np.array([[1.0, 1.0, 0.0]]), np.array([1]), 1) == 1.0
    assert metrics.topk_accuracy(np.array([[2.0, 1.0, 0.0]]), np.array([1]), 1) == 0.0


@pytest.mark.caffe
def test_tensorboard_export_reads_back_with_tensorboards_own_loader(sweep, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata as hp_meta

    assert cli("evaluate", sweep / "lr0.05_fixed", "--snapshot", "last", cwd=tmp_path).returncode == 0
    logdir = tmp_path / "tb"
    proc = cli("export", "tensorboard", sweep, "--out", logdir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"tensorboard --logdir {logdir}" in proc.stdout
    keep_all = {"scalars": 0, "tensors": 0}
    root = EventAccumulator(str(logdir), size_guidance=keep_all).Reload()
    experiment = hp_meta.parse_experiment_plugin_data(root.PluginTagToContent("hparams")["_hparams_/experiment"])
    assert {h.name for h in experiment.hparam_infos} == {"base_lr", "lr_policy"}
    assert {m.name.tag for m in experiment.metric_infos} >= {"hparams/best_top1", "hparams/final_top1"}
    for run in ("lr0.05_fixed", "lr0.001_fixed"):
        ea = EventAccumulator(str(logdir / run), size_guidance=keep_all).Reload()
        curves = parse_log(sweep / run / "train.log").resolved()
        tags = ea.Tags()["scalars"]
        for tag, table, col in (("train/loss", curves.train, "loss"), ("train/lr", curves.train, "LearningRate"),
                                ("test/top1", curves.test, "accuracy_at_1"), ("test/loss", curves.test, "loss")):
            assert tag in tags
            got = [(e.step, pytest.approx(e.value, rel=1e-6)) for e in ea.Scalars(tag)]
            assert got == [(int(r["NumIters"]), r[col]) for r in table.rows], tag
        row = json.loads((sweep / run / "manifest.json").read_text())["result"]
        assert ea.Scalars("hparams/best_top1")[-1].value == pytest.approx(row["best_top1"])
        session = hp_meta.parse_session_start_info_plugin_data(
            ea.PluginTagToContent("hparams")["_hparams_/session_start_info"])
        assert session.hparams["base_lr"].number_value == pytest.approx(float(run[2:].split("_")[0]))
        pr_tags = [t for t in ea.Tags()["tensors"] if t.startswith("eval/pr/")]
        evaluated = (sweep / run / "eval" / "summary.json").is_file()   # this test scored lr0.05_fixed; the other
        assert evaluated or run != "lr0.05_fixed"                        # one only if another test evaluated it
        assert len(pr_tags) == (3 if evaluated else 0)
        if evaluated:
            from tensorboard.plugins.pr_curve import metadata as pr_meta
            from tensorboard.util import tensor_util

            content = ea.PluginTagToContent("pr_curves")
            assert pr_meta.parse_plugin_metadata(content[pr_tags[0]]).num_thresholds == 201
            classes = json.loads((sweep / run / "eval" / "summary.json").read_text())["classes"]
            for c in classes:
                tag = f"eval/pr/{c['name']}/pr_curves"
                data = tensor_util.make_ndarray(ea.Tensors(tag)[0].tensor_proto)   # TP, FP, TN, FN, P, R
                assert data.shape == (6, 201)
                assert (data[0] + data[3] == c["support"]).all() and data[0, 0] + data[1, 0] == 18
    assert "tensorboard" in subprocess.run([*CAFFEGEN, "export", "--help"], capture_output=True, text=True,
                                           timeout=60).stdout


# Your own net: data -> one InnerProduct classifier, its own Accuracy layer named "acc".
USER_NET = """name: "mine"
layer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TRAIN }
  transform_param { crop_size: 32 mean_value: 128 scale: 0.0078125 }
  image_data_param { source: "train.txt" batch_size: 6 new_height: 36 new_width: 36 shuffle: true } }
layer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 32 mean_value: 128 scale: 0.0078125 }
  image_data_param { source: "val.txt" batch_size: 6 new_height: 32 new_width: 32 } }
layer { name: "clf" type: "InnerProduct" bottom: "data" top: "clf"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "clf" bottom: "label" top: "loss" }
layer { name: "acc" type: "Accuracy" bottom: "clf" bottom: "label" top: "acc" include { phase: TEST } }
"""


@pytest.mark.caffe
def test_evaluate_a_run_of_your_own_net(tmp_path):
    (tmp_path / "mine.prototxt").write_text(USER_NET)
    (tmp_path / "mine.toml").write_text(SPEC.split("[net]")[0] + '[net]\nprototxt = "mine.prototxt"\n'
                                        + "[solver]" + SPEC.split("[solver]")[1].replace("[0.05, 0.001]", "[0.01]"))
    out = tmp_path / "runs" / "mine"
    proc = cli("sweep", "mine.toml", "--out", out, "--no-report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = cli("evaluate", out / "lr0.01_fixed", "--snapshot", "last", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = json.loads((out / "lr0.01_fixed" / "eval" / "summary.json").read_text())
    last = parse_log(out / "lr0.01_fixed" / "train.log").test.rows[-1]
    assert s["caffe_test"]["metric"] == "acc" and s["images"] == 18
    assert s["top1"] == pytest.approx(last["acc"], abs=1e-6) and s["top5"] is None   # 3 classes: no top-5
