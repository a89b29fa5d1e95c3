"""Validation with the real Caffe: schema errors, Caffe's fatal checks and wrong shapes become one line."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from caffegen.errors import ValidationError
from caffegen.prototxt import SOLVER_TYPES, NetOptions, SolverOptions, render_net, render_solver, write_variant
from caffegen.prototxt.render import template_dir
from caffegen.prototxt.validate import check_net_shapes, check_text

pytestmark = pytest.mark.caffe

TINY = dict(num_classes=3, resize=40, test_resize=32, crop=32, conv_widths=(4, 4, 8))


def test_an_unknown_field_names_the_file_and_its_line_and_column():
    text = render_net().replace("shuffle: true", "shufle: true")
    with pytest.raises(ValidationError) as err:
        check_text(text, "net", "runs/a/train_val.prototxt")
    msg = str(err.value)
    assert msg.startswith("runs/a/train_val.prototxt: not a valid Caffe net prototxt: 19:5 ")
    assert 'no field named "shufle"' in msg and "\n" not in msg


def test_a_bad_enum_and_a_solver_without_lr_fail():
    with pytest.raises(ValidationError, match="solver.prototxt: .*SolverMode"):
        check_text(render_solver(SolverOptions(test_iter=1)).replace("solver_mode: CPU", "solver_mode: TPU"),
                   "solver", "solver.prototxt")
    with pytest.raises(ValidationError, match="solver lacks base_lr"):
        check_text('net: "train_val.prototxt"\nmax_iter: 10\nlr_policy: "fixed"\n', "solver", "s.prototxt")


def test_a_caffe_fatal_check_becomes_one_validation_line_not_a_crash():
    # crop 300 from a 256 image: Caffe's CHECK aborts the pycaffe child (SIGABRT); we get its message.
    text = render_net().replace("crop_size: 224", "crop_size: 300", 1)
    with pytest.raises(ValidationError) as err:
        check_net_shapes(text, NetOptions())
    assert "Check failed: img_height >= crop_h (256 vs. 300)" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_pool_that_is_not_global_is_refused():
    text = render_net().replace("kernel_size: 7", "kernel_size: 3")
    with pytest.raises(ValidationError, match=r"blob 'pool5' has shape \[2, 256, 5, 5\], expected \[2, 256, 1, 1\]"):
        check_net_shapes(text, NetOptions())


def test_fc_must_match_the_number_of_classes():
    with pytest.raises(ValidationError, match=r"blob 'fc' has shape \[2, 20\], expected \[2, 10\]"):
        check_net_shapes(render_net(), NetOptions(num_classes=10))


def test_nothing_is_written_when_any_file_fails_validation(tmp_path, monkeypatch):
    broken = tmp_path / "templates"  # the user's own templates (CAFFEGEN_TEMPLATES), with a bad deploy net
    shutil.copytree(template_dir(), broken)
    (broken / "deploy.prototxt.j2").write_text('layer { type: "Input" bogus: 1 }\n')
    monkeypatch.setenv("CAFFEGEN_TEMPLATES", str(broken))
    with pytest.raises(ValidationError, match="deploy.prototxt"):
        write_variant(tmp_path / "run", NetOptions(**TINY), SolverOptions())
    assert not (tmp_path / "run").exists()


def test_write_variant_derives_test_iter_from_the_val_list(tmp_path):
    (tmp_path / "val.txt").write_text("".join(f"img{i}.jpg 0\n" for i in range(50)))
    net = NetOptions(val_source="val.txt", test_batch=16, **TINY)
    written = write_variant(tmp_path, net, SolverOptions(), pycaffe_check=False)
    assert "test_iter: 4\n" in written.paths["solver.prototxt"].read_text()  # ceil(50 / 16)
    # 64 images a pass for 50 in the list: the note says so, and which pair covers them exactly once
    assert written.notes == ["test_iter 4 x TEST batch 16 = 64 images per test pass, but the val set has 50: 14 are "
                             "counted twice; TEST batch 10 with test_iter 5 covers it exactly once"]


DUMMY_NET = """
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } shape { dim: 2 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 0 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


@pytest.mark.parametrize("solver_type", SOLVER_TYPES)
def test_real_caffe_trains_with_each_solver_type_at_its_defaults(solver_type, caffe_install, tmp_path):
    (tmp_path / "net.prototxt").write_text(DUMMY_NET)
    opts = SolverOptions(type=solver_type, net="net.prototxt", max_iter=3, test_iter=1, test_interval=100,
                         display=1, lr_policy="inv")
    (tmp_path / "solver.prototxt").write_text(render_solver(opts))
    proc = subprocess.run([str(caffe_install.binary), "train", "-solver", "solver.prototxt"], cwd=tmp_path,
                          capture_output=True, text=True, env=caffe_install.env(threads=1), timeout=120)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert f'type: "{solver_type}"' in proc.stderr  # Caffe echoes the solver it built
    assert "Optimization Done." in proc.stderr
