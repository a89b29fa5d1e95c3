"""Offline augmentation of the train list (seed 002): deterministic, cached, val untouched, sweepable."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from caffegen.data.augment import Augment, affine, parse_augment
from caffegen.errors import InputError
from caffegen.sweep.spec import parse_spec

from helpers import make_imageset, tiny_net

CAFFEGEN = [sys.executable, "-m", "caffegen"]


def lists(tmp_path: Path, root: Path, out: str, cache: str, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CAFFEGEN_CACHE": str(tmp_path / cache)}
    return subprocess.run([*CAFFEGEN, "lists", root, "--out", tmp_path / out, *extra], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_augmented_lists_are_deterministic_and_leave_val_alone(tmp_path):
    root = tmp_path / "images"
    make_imageset(root, classes=3, per_class=6)
    spec = "rotate=15,shift=0.1,shear=0.1,zoom=0.1,flip,copies=2"
    plain = lists(tmp_path, root, "plain", "c0")
    a = lists(tmp_path, root, "a", "c1", "--augment", spec)
    b = lists(tmp_path, root, "b", "c2", "--augment", spec)   # its own cache: every copy made again
    for p in (plain, a, b):
        assert p.returncode == 0, p.stderr
    assert "15 train images + 30 copies" in a.stdout
    train_a = (tmp_path / "a" / "list_train_shuffle.txt").read_text()
    train_b = (tmp_path / "b" / "list_train_shuffle.txt").read_text()
    assert train_a.replace(str(tmp_path / "c1"), str(tmp_path / "c2")) == train_b
    copies_a = sorted((tmp_path / "c1" / "augment").rglob("*.png"))
    assert len(copies_a) == 30
    for f in copies_a:   # byte-identical images, made twice
        assert f.read_bytes() == (tmp_path / "c2" / f.relative_to(tmp_path / "c1")).read_bytes()
    originals = (tmp_path / "plain" / "list_train_shuffle.txt").read_text().splitlines()
    assert set(originals) <= set(train_a.splitlines()) and len(train_a.splitlines()) == 45
    for name in ("list_val_shuffle.txt", "labels.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
    record = json.loads((tmp_path / "a" / "augment.json").read_text())
    assert record["originals"] == 15 and record["copies"] == 30
    again = lists(tmp_path, root, "a", "c1", "--augment", spec)   # cached: same bytes, nothing new
    assert (tmp_path / "a" / "list_train_shuffle.txt").read_text() == train_a
    assert again.returncode == 0 and len(sorted((tmp_path / "c1" / "augment").rglob("*.png"))) == 30


@pytest.mark.parametrize("spec, message", [
    ("spin=3", "unknown augmentation 'spin'"),
    ("rotate=abc", "rotate='abc' is not a number"),
    ("rotate=400", "rotate=400 is outside [0, 180]"),
    ("copies=1.5", "copies='1.5' is not a number"),
    ("flip=maybe", "flip='maybe' is not true/false"),
])
def test_a_bad_augment_spec_is_one_line_and_exit_2(tmp_path, spec, message):
    root = tmp_path / "images"
    make_imageset(root, classes=2, per_class=3)
    proc = lists(tmp_path, root, "l", "c", "--augment", spec)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr and not (tmp_path / "l").exists()


def test_presets_and_tables():
    assert parse_augment("none") is None and parse_augment(None) is None
    assert parse_augment("light") == Augment(rotate=10, shift=0.05, zoom=0.05, flip=True, copies=1)
    assert parse_augment({"rotate": 5, "flip": True}) == Augment(rotate=5.0, flip=True)
    assert parse_augment("flip") == Augment(flip=True)
    with pytest.raises(InputError, match="shift=0.7 is outside"):
        parse_augment({"shift": 0.7})


def test_the_affine_transform_about_the_centre():
    ident = affine(10, 20, angle=0, dx=0, dy=0, shear=0, scale=1, flip=False)
    assert ident == pytest.approx((1, 0, 0, 0, 1, 0))
    flip = affine(10, 20, angle=0, dx=0, dy=0, shear=0, scale=1, flip=True)
    assert flip == pytest.approx((-1, 0, 10, 0, 1, 0))          # output x <- input 10 - x
    shift = affine(10, 20, angle=0, dx=3, dy=-2, shear=0, scale=1, flip=False)
    assert shift == pytest.approx((1, 0, -3, 0, 1, 2))
    zoom = affine(10, 10, angle=0, dx=0, dy=0, shear=0, scale=2, flip=False)
    assert zoom == pytest.approx((0.5, 0, 2.5, 0, 0.5, 2.5))     # the centre stays put
    rot = affine(10, 10, angle=90, dx=0, dy=0, shear=0, scale=1, flip=False)
    a, b, c, d, e, f = rot
    assert (a * 5 + b * 5 + c, d * 5 + e * 5 + f) == pytest.approx((5, 5))


def test_augment_as_a_grid_axis():
    raw = {"data": {"demo": {"classes": 3}}, "grid": {"base_lr": [0.01], "data.augment": ["none", "light", "strong"]}}
    spec = parse_spec(raw)
    assert [v.name for v in spec.variants] == ["lr0.01_aug-none", "lr0.01_aug-light", "lr0.01_aug-strong"]
    assert [v.data for v in spec.variants] == [{"augment": "none"}, {"augment": "light"}, {"augment": "strong"}]
    with pytest.raises(InputError, match=r"\[grid\] data.augment: unknown augmentation 'twist'"):
        parse_spec({**raw, "grid": {"base_lr": [0.01], "data.augment": ["twist=1"]}})
    with pytest.raises(InputError, match="only data.augment can be an axis"):
        parse_spec({**raw, "grid": {"base_lr": [0.01], "data.seed": [1, 2]}})
    with pytest.raises(InputError, match=r"\[data\] augment: rotate=-1 is outside"):
        parse_spec({"data": {"demo": {"classes": 3}, "augment": "rotate=-1"}, "grid": {"base_lr": [0.01]}})


@pytest.mark.caffe
def test_a_sweep_over_augmentation_trains_each_on_its_own_train_list(tmp_path):
    (tmp_path / "a.toml").write_text("""
name = "aug"
[data]
demo = { classes = 3, per_class = 10, seed = 0 }
""" + tiny_net(test_batch=3, batchnorm=False) + """[solver]
max_iter = 10
test_interval = 10
display = 5
random_seed = 0
[grid]
base_lr = [0.01]
"data.augment" = ["none", "strong"]
[run]
jobs = 2
""")
    out = tmp_path / "runs" / "aug"
    proc = subprocess.run([*CAFFEGEN, "sweep", "a.toml", "--out", out], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    def source(run: str, phase: int) -> Path:
        text = (out / run / "train_val.prototxt").read_text()
        return Path(text.split("source: \"")[phase + 1].split("\"")[0])

    plain, strong = out / "lr0.01_aug-none", out / "lr0.01_aug-strong"
    n = len(source(plain.name, 0).read_text().splitlines())
    assert len(source(strong.name, 0).read_text().splitlines()) == 4 * n       # strong: 3 copies of each
    assert source(strong.name, 1) == source(plain.name, 1)                     # the same val list
    assert "data.augment" in (out / "report.md").read_text()
