"""`caffegen sanity`: overfit a tiny subset first (seed 003), on the real Caffe."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from caffegen.probes.sanity import (Sanity, causes, guess_lr, shuffled_labels, sparkline, threshold_for, tiny_subset,
                                    too_high)
from caffegen.sweep.spec import parse_spec

from helpers import tiny_net

CAFFEGEN = [sys.executable, "-m", "caffegen"]

SPEC = """
name = "s"
[data]
demo = {{ classes = 3, per_class = 10, seed = 0 }}
{net}
[solver]
max_iter = 100
test_interval = 50
display = 10
random_seed = 0
[grid]
base_lr = [0.1, 0.03, 0.001]
lr_policy = ["fixed"]
"""
TEMPLATE = tiny_net(train_batch=6, test_batch=6)

# data -> one InnerProduct classifier whose weights cannot move (lr_mult 0): nothing in this net can learn.
FROZEN = """name: "frozen"
layer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TRAIN }
  transform_param { crop_size: 32 mean_value: 128 }
  image_data_param { source: "train.txt" batch_size: 6 new_height: 36 new_width: 36 } }
layer { name: "data" type: "ImageData" top: "data" top: "label" include { phase: TEST }
  transform_param { crop_size: 32 mean_value: 128 }
  image_data_param { source: "val.txt" batch_size: 6 new_height: 32 new_width: 32 } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  param { lr_mult: 0 } param { lr_mult: 0 }
  inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.01 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
layer { name: "accuracy" type: "Accuracy" bottom: "fc" bottom: "label" top: "accuracy" include { phase: TEST } }
"""


def sanity(tmp_path: Path, net: str, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "s.toml").write_text(SPEC.format(net=net))
    return subprocess.run([*CAFFEGEN, "sanity", "s.toml", "--out", tmp_path / "out", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.caffe
def test_sanity_passes_on_a_net_that_can_overfit(tmp_path):
    proc = sanity(tmp_path, TEMPLATE)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    first = proc.stdout.splitlines()[0]
    assert first.startswith("PASS: overfit 6 images in ") and "base_lr 0.03" in first   # the grid's middle
    assert (tmp_path / "out" / "loss.png").stat().st_size > 0
    lines = (tmp_path / "out" / "sanity" / "tiny.txt").read_text().splitlines()
    assert sorted(int(line.rsplit(" ", 1)[1]) for line in lines) == [0, 0, 1, 1, 2, 2]


@pytest.mark.caffe
def test_with_shuffled_labels_as_a_control_the_loss_falls_slower(tmp_path):
    proc = sanity(tmp_path, TEMPLATE, "--per-class", "9", "--control")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    at = int(proc.stdout.split(" images in ")[1].split()[0])
    control = proc.stdout.split("control (shuffled labels): ")[1].splitlines()[0]
    if control.startswith("below the threshold at iteration "):
        assert int(control.split()[5]) > 1.5 * at
    else:
        assert control.startswith(f"not below the threshold in {2 * at} iterations")
    labels = [line.rsplit(" ", 1)[1] for line in (tmp_path / "out" / "sanity-control" / "tiny.txt").read_text().split(
        "\n") if line]
    real = [line.rsplit(" ", 1)[1] for line in (tmp_path / "out" / "sanity" / "tiny.txt").read_text().split("\n")
            if line]
    assert sorted(labels) == sorted(real) and labels != real


@pytest.mark.caffe
def test_a_control_that_falls_as_fast_fails_and_says_why(tmp_path):
    proc = sanity(tmp_path, TEMPLATE, "--control")   # 6 images: any labels are memorised as fast
    assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
    assert proc.stdout.startswith("FAIL: the loss fell as fast with the labels shuffled")
    assert "control (shuffled labels): below the threshold at iteration" in proc.stdout
    assert "6 images are too few to tell" in proc.stdout
    mirror = (tmp_path / "out" / "sanity" / "train_val.prototxt").read_text()
    assert "mirror: false" in mirror and "mirror: true" not in mirror


@pytest.mark.caffe
def test_sanity_fails_on_a_frozen_classifier_and_names_it_first(tmp_path):
    (tmp_path / "frozen.prototxt").write_text(FROZEN)
    proc = sanity(tmp_path, '[net]\nprototxt = "frozen.prototxt"\nnum_classes = 3', "--max-iter", "60")
    assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
    assert proc.stdout.startswith("FAIL: train loss ")
    assert "1. labels/classifier: the classifier 'fc' is frozen (lr_mult 0" in proc.stdout


@pytest.mark.caffe
def test_sanity_fails_with_a_learning_rate_far_too_low(tmp_path):
    proc = sanity(tmp_path, TEMPLATE, "--lr", "1e-9", "--max-iter", "40")
    assert proc.returncode == 1, proc.stdout + proc.stderr[-2000:]
    assert proc.stdout.startswith("FAIL: ") and "base_lr 1e-09" in proc.stdout
    assert "learning rate: base_lr 1e-09 looks far too low" in proc.stdout
    assert "data layer/transform" in proc.stdout.splitlines()[-2]   # the last cause, the plot after it


def test_the_pure_parts():
    spec = parse_spec({"data": {"demo": {"classes": 3}}, "grid": {"base_lr": [0.1, 0.001, 0.01]}})
    assert guess_lr(spec) == 0.01
    assert threshold_for(20) == 0.1 * 2.995732273553991
    items = [(f"{i}.jpg", i % 3) for i in range(12)]
    assert tiny_subset(items, 2) == [(f"{i}.jpg", i % 3) for i in range(6)]
    control = shuffled_labels(items)
    assert sorted(label for _, label in control) == sorted(label for _, label in items)
    assert control != items and control == shuffled_labels(items)
    flat = [(i, 1.1) for i in range(1, 41)]
    c = causes(flat, lr=1e-6, classes=3, labels={0, 1, 2}, frozen=None, max_iter=40)
    assert c[0].startswith("learning rate: base_lr 1e-06 looks far too low") and c[-1].startswith("data layer")
    c = causes([(1, 1.1), (2, float("nan"))], lr=1.0, classes=3, labels={0, 1, 2}, frozen=None, max_iter=40)
    assert "far too high" in c[0] and "nan" in c[0]
    c = causes(flat, lr=0.01, classes=3, labels={1}, frozen="fc", max_iter=40)
    assert "'fc' is frozen" in c[0] and "every image of the subset has label 1" in c[1]
    assert sparkline([(1, 3.0), (2, 2.0), (3, 1.0)]) == "█▄▁"
    # a run the divergence check stopped: a FAIL that says so, and the rate is the first suspect (the tune retries x0.1)
    assert too_high([(0, 1.1), (5, 1.8)]) and too_high([(0, 1.1), (5, float("inf"))]) and not too_high(flat)
    c = causes([(0, 1.1), (2, 5.0)], lr=0.01, classes=3, labels={0, 1, 2}, frozen=None, max_iter=40, blew_up=True)
    assert "base_lr 0.01 looks far too high" in c[0]
    blown = Sanity(False, 6, 3, 0.01, 0.11, 300, None, [(0, 1.1), (2, 5.0), (9, 0.9)], blew_up="loss 5 > 4 x first")
    assert blown.diverged and "FAIL: the loss blew up: loss 5 > 4 x first" in blown.line
    crashed = Sanity(False, 6, 3, 0.01, 0.11, 300, None, [(0, 1.1), (2, float("nan"))], failed="Check failed")
    assert not crashed.diverged
