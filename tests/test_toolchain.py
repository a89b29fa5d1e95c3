"""The real Caffe on this machine: build cache, `caffe train`, pycaffe, `caffegen doctor`."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import tarfile

import pytest

from caffegen.toolchain import build as B
from caffegen.toolchain import fixes as F

CAFFEGEN = [sys.executable, "-m", "caffegen"]

TINY_NET = """name: "tiny"
layer {{ name: "data" type: "ImageData" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ mirror: true crop_size: 24 mean_value: 104 mean_value: 117 mean_value: 124 }}
  image_data_param {{ source: "{train}" batch_size: 4 shuffle: true new_height: 28 new_width: 28 }} }}
layer {{ name: "data" type: "ImageData" top: "data" top: "label" include {{ phase: TEST }}
  transform_param {{ crop_size: 24 mean_value: 104 mean_value: 117 mean_value: 124 }}
  image_data_param {{ source: "{val}" batch_size: 2 new_height: 24 new_width: 24 }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 8 kernel_size: 3 stride: 2 pad: 1 weight_filler {{ type: "gaussian" std: 0.01 }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "pool" type: "Pooling" bottom: "conv1" top: "pool" pooling_param {{ pool: AVE global_pooling: true }} }}
layer {{ name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param {{ num_output: 3 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "accuracy" type: "Accuracy" bottom: "fc" bottom: "label" top: "accuracy" include {{ phase: TEST }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }}
"""

TINY_SOLVER = """net: "net.prototxt"
test_iter: 3
test_interval: 10
base_lr: 0.01
momentum: 0.9
lr_policy: "fixed"
max_iter: 20
display: 5
snapshot: 20
snapshot_prefix: "snap"
solver_mode: CPU
random_seed: 1
"""


def test_cache_key_is_stable_and_tracks_flags():
    cpu = B.build_key(B.BuildFlags())
    assert cpu == B.build_key(B.BuildFlags())
    assert cpu.startswith("9.0.2-cpu-")
    assert B.build_key(B.BuildFlags(gpu=True)).startswith("9.0.2-cuda-")
    assert B.build_key(B.BuildFlags(lmdb=False)) != cpu


def test_every_fix_still_matches_the_pinned_source(tmp_path):
    """The fix-set applies cleanly to the downloaded sdist (a drifted source fails here, not mid-build)."""
    archive = B.fetch_source(B.cache_root(), log=lambda _: None)  # the verified sdist (downloaded once)
    wanted = {f.path for f in F.CPU_FIXES}
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.split("/", 1)[-1] in wanted]
        tar.extractall(tmp_path, members=members, filter="data")
    (top,) = list(tmp_path.iterdir())
    done = F.apply(top, F.CPU_FIXES, remove=())
    assert len(done) == len(F.CPU_FIXES)
    assert "test_caffe_main" not in (top / "src/caffe/net.cpp").read_text()
    with pytest.raises(RuntimeError, match="no longer matches"):
        F.apply(top, F.CPU_FIXES[:1], remove=())  # already applied: the old text is gone


@pytest.mark.caffe
def test_make_caffe_is_a_cache_hit(caffe_install):
    """A second `make caffe` reuses the build: same entry, seconds not minutes."""
    if not caffe_install.origin.startswith("caffegen cache"):
        pytest.skip(f"caffe comes from {caffe_install.origin}, not from caffegen's build cache")
    proc = subprocess.run([sys.executable, "-m", "caffegen.toolchain", "--no-apt"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Caffe build cached" in proc.stdout
    assert "compiling" not in proc.stdout


@pytest.mark.caffe
def test_real_caffe_trains_snapshots_and_pycaffe_reloads(caffe_install, tiny_imageset, tmp_path):
    (tmp_path / "net.prototxt").write_text(TINY_NET.format(train=tiny_imageset["train"], val=tiny_imageset["val"]))
    (tmp_path / "solver.prototxt").write_text(TINY_SOLVER)
    glog_tmp = tmp_path / "tmp"
    glog_tmp.mkdir()
    env = dict(caffe_install.env(threads=1), TMPDIR=str(glog_tmp))
    proc = subprocess.run([str(caffe_install.binary), "train", "-solver", "solver.prototxt"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(glog_tmp.iterdir()) == []  # GLOG_logtostderr=1: no caffe.* files in the temp dir
    losses = [float(m) for m in re.findall(r"Iteration \d+.*?, loss = (\S+)", proc.stderr)]
    assert losses and all(math.isfinite(x) for x in losses)
    model = tmp_path / "snap_iter_20.caffemodel"
    assert model.exists() and (tmp_path / "snap_iter_20.solverstate").exists()

    code = (
        "import sys; from caffegen.toolchain import import_caffe; caffe = import_caffe(); caffe.set_mode_cpu()\n"
        f"net = caffe.Net({str(tmp_path / 'net.prototxt')!r}, {str(model)!r}, caffe.TEST)\n"
        "out = net.forward()\n"
        "assert net.blobs['fc'].data.shape == (2, 3), net.blobs['fc'].data.shape\n"
        "assert abs(net.params['fc'][0].data).sum() > 0\n"
        "print('loss', float(out['loss']))\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    assert math.isfinite(float(child.stdout.split()[-1]))


@pytest.mark.caffe
def test_caffe_does_not_stop_on_nan_but_aborts_on_a_bad_field(caffe_install, tiny_imageset, tmp_path):
    """The runtime facts the sweep driver relies on."""
    (tmp_path / "net.prototxt").write_text(TINY_NET.format(train=tiny_imageset["train"], val=tiny_imageset["val"]))
    (tmp_path / "solver.prototxt").write_text(TINY_SOLVER.replace("base_lr: 0.01", "base_lr: 1000000")
                                              .replace("max_iter: 20", "max_iter: 15").replace("snapshot: 20\n", ""))
    proc = subprocess.run([str(caffe_install.binary), "train", "-solver", "solver.prototxt"], cwd=tmp_path,
                          env=caffe_install.env(threads=1), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0
    assert re.search(r"loss = -?nan", proc.stderr)

    (tmp_path / "solver.prototxt").write_text(TINY_SOLVER.replace("max_iter", "max_iters"))
    proc = subprocess.run([str(caffe_install.binary), "train", "-solver", "solver.prototxt"], cwd=tmp_path,
                          env=caffe_install.env(threads=1), capture_output=True, text=True, timeout=120)
    assert proc.returncode == -6
    assert re.search(r"^F\d{4,8} .*", proc.stderr, re.M)


@pytest.mark.caffe
def test_doctor_exit_codes(caffe_install, tmp_path):
    ok = subprocess.run(CAFFEGEN + ["doctor"], capture_output=True, text=True, timeout=180)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert str(caffe_install.binary) in ok.stdout
    assert "1.0.0" in ok.stdout

    no_cc = subprocess.run(CAFFEGEN + ["doctor"], capture_output=True, text=True, timeout=180,
                           env=dict(os.environ, CC="/nonexistent"))
    assert no_cc.returncode == 0                  # the native log scanner is optional: a warning, not a failure
    assert "warn  log scanner" in no_cc.stdout and "/nonexistent" in no_cc.stdout

    env = dict(os.environ, CAFFE_ROOT=str(tmp_path))
    bad = subprocess.run(CAFFEGEN + ["doctor"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 1
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("caffegen: error:")]
    assert len(errors) == 1 and "CAFFE_ROOT" in errors[0] and "fix:" in errors[0]


def test_import_and_help_do_not_load_pycaffe():
    code = ("import sys, caffegen, caffegen.cli\n"
            "from click.testing import CliRunner\n"
            "r = CliRunner().invoke(caffegen.cli.cli, ['--help'])\n"
            "assert r.exit_code == 0 and 'render' in r.output, r.output\n"
            "assert 'caffe' not in sys.modules and 'caffe._caffe' not in sys.modules\n"
            "assert 'matplotlib' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
