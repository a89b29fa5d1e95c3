"""Rendering the baseline net and its solvers: the seed's net at defaults, every variant valid for Caffe."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format
from hypothesis import given, settings
from hypothesis import strategies as st

from caffegen.errors import InputError
from caffegen.prototxt.netscope import netscope
from caffegen.prototxt import (SOLVER_TYPES, NetOptions, SolverOptions, prototxt_string, render_deploy, render_net,
                               render_solver, write_variant)
from caffegen.prototxt.schedule import POLICIES

CAFFEGEN = str(Path(sys.executable).with_name("caffegen"))
SEED = Path(__file__).parent / "fixtures" / "seed_000_train_val.prototxt"


def parse(text: str, kind: str = "net"):
    from caffegen.toolchain import caffe_pb2

    pb2 = caffe_pb2()
    return text_format.Parse(text, pb2.NetParameter() if kind == "net" else pb2.SolverParameter())


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CAFFEGEN, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.caffe
def test_default_render_is_the_seed_net():
    assert parse(render_net()) == parse(SEED.read_text())


@pytest.mark.caffe
def test_render_in_an_empty_folder_writes_three_files_pycaffe_loads(tmp_path):
    proc = run_cli("render", "--lr", "0.01", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deploy.prototxt", "solver.prototxt", "train_val.prototxt"]
    # The val list is not there, so test_iter falls back to the seed's 1000 images / 16 and says so.
    assert "caffegen: note: test_iter = ceil(1000/16) = 63" in proc.stderr

    assert parse((tmp_path / "train_val.prototxt").read_text()) == parse(SEED.read_text())
    solver = parse((tmp_path / "solver.prototxt").read_text(), "solver")
    assert (solver.net, solver.base_lr, solver.lr_policy, solver.test_iter) == \
        ("train_val.prototxt", pytest.approx(0.01), "step", [63])

    from caffegen.prototxt.validate import check_net_shapes, run_probe

    (deploy,) = run_probe([(str(tmp_path / "deploy.prototxt"), "TEST")])
    assert deploy["data"] == [1, 3, 224, 224] and deploy["pool5"] == [1, 256, 1, 1] and deploy["prob"] == [1, 20]
    shapes = check_net_shapes((tmp_path / "train_val.prototxt").read_text(), NetOptions())
    assert shapes["TRAIN"]["fc"] == shapes["TEST"]["fc"] == [2, 20]


@pytest.mark.caffe
def test_solvers_for_three_lrs_and_all_policies_are_21_valid_files(tmp_path):
    proc = run_cli("solvers", "--lr", "0.1,0.01,0.001", "--policy", "all", "--max-iter", "9000", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "solvers"
    names = sorted(p.name for p in out.glob("lr*.prototxt"))
    assert names == sorted(f"lr{lr}_{pol}.prototxt" for lr in ("0.1", "0.01", "0.001") for pol in POLICIES)
    with open(out / "index.csv") as fh:
        rows = {row["name"]: row for row in csv.DictReader(fh)}
    assert len(rows) == 21
    for name in names:
        solver = parse((out / name).read_text(), "solver")
        row = rows[name.removesuffix(".prototxt")]
        assert solver.lr_policy == row["lr_policy"] and f"{solver.base_lr:.6g}" == row["base_lr"]
        assert solver.net == "train_val.prototxt" and solver.snapshot_prefix == row["name"]
    assert rows["lr0.01_step"]["stepsize"] == "3000"
    assert rows["lr0.01_multistep"]["stepvalue"] == "4500,6750"
    assert parse((out / "train_val.prototxt").read_text()) == parse(SEED.read_text())


@pytest.mark.caffe
@pytest.mark.parametrize("solver_type", SOLVER_TYPES)
def test_every_solver_type_and_policy_parses_with_caffe_pb2(solver_type):
    for policy in POLICIES:
        solver = parse(render_solver(SolverOptions(lr_policy=policy, type=solver_type)), "solver")
        assert solver.type == solver_type and solver.lr_policy == policy
        # Caffe aborts when AdaGrad or RMSProp get a momentum, so they never do.
        assert solver.HasField("momentum") == (solver_type not in ("AdaGrad", "RMSProp"))
        assert solver.HasField("stepsize") == (policy in ("step", "sigmoid"))


@pytest.mark.parametrize("argv, message", [
    (["render", "--lr", "0"], "--lr must be > 0"),
    (["render", "--lr", "abc"], "'abc' is not a number"),
    (["render", "--lr", "0.01", "--policy", "stpe"], "did you mean 'step'?"),
    (["render", "--lr", "0.01", "--policy", "multistep", "--stepvalue", "300,200"], "strictly increasing"),
    (["render", "--lr", "0.01", "--max-iter", "0"], "max_iter must be >= 1"),
    (["render", "--lr", "0.01", "--crop", "300"], "crop 300 is larger than resize 256"),
    (["render", "--lr", "0.01", "--classes", "1"], "must be >= 2"),
    (["render", "--lr", "0.01", "--type", "adamm"], "did you mean 'Adam'?"),
    (["solvers", "--lr", "0.1,-0.01"], "--lr must be > 0"),
    (["solvers", "--lr", "0.1", "--policy", "step,expo"], "did you mean 'exp'?"),
    (["schedule", "--lr", "0.01", "--policy", "sigmod"], "did you mean 'sigmoid'?"),
])
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(argv, message, tmp_path):
    proc = run_cli(*argv, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("caffegen: error: ")
    assert message in proc.stderr
    assert list(tmp_path.iterdir()) == []


WEIRD = 'we"ird \\ dir/ünïcødé "x" source: "evil"/list.txt'


def test_prototxt_string_escapes_quotes_backslashes_and_newlines():
    assert prototxt_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'
    assert prototxt_string("ünï") == '"ünï"'
    with pytest.raises(InputError, match="NUL"):
        prototxt_string("a\x00b")


@pytest.mark.caffe
def test_a_hostile_path_round_trips_and_cannot_inject_a_field():
    text = render_net(NetOptions(train_source=WEIRD, val_source="line\nbreak.txt", root_folder="r\\"))
    net = parse(text)
    assert net.layer[0].image_data_param.source == WEIRD
    assert net.layer[0].image_data_param.root_folder == "r\\"
    assert net.layer[1].image_data_param.source == "line\nbreak.txt"
    assert parse(render_net()).layer[0] != net.layer[0]
    assert len(net.layer) == len(parse(render_net()).layer)


@pytest.mark.caffe
@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40))
def test_any_text_round_trips_through_prototxt_string(s):
    from caffegen.toolchain import caffe_pb2

    msg = text_format.Parse(f"source: {prototxt_string(s)} batch_size: 3", caffe_pb2().ImageDataParameter())
    assert msg.source == s and msg.batch_size == 3


@pytest.mark.caffe
def test_caffe_itself_reads_a_list_under_a_hostile_folder_name(tiny_imageset, tmp_path):
    # pycaffe's C++ parser opens the list through the escaped path: proof beyond caffe_pb2.
    from caffegen.prototxt.validate import run_probe

    folder = tmp_path / 'qu"ote d\\ir ü'
    folder.mkdir()
    lst = folder / "train.txt"
    lst.write_text(tiny_imageset["train"].read_text())
    opts = NetOptions(train_source=str(lst), val_source=str(lst), num_classes=3, resize=40, test_resize=32, crop=32,
                      conv_widths=(4, 4, 8), train_batch=2, test_batch=2)
    net = tmp_path / "train_val.prototxt"
    net.write_text(render_net(opts))
    (shapes,) = run_probe([(str(net), "TRAIN")])
    assert shapes["fc"] == [2, 3]


@pytest.mark.parametrize("crop, kernel", [(224, 7), (227, 8), (64, 2), (32, 1), (100, 4)])
def test_pool_kernel_is_global_for_any_crop(crop, kernel):
    assert NetOptions(crop=crop, resize=256, test_resize=crop).pool_kernel == kernel


@pytest.mark.caffe
@pytest.mark.parametrize("opts", [
    NetOptions(crop=64, resize=72, test_resize=64, num_classes=3, conv_widths=(8, 8, 16, 16, 32), dropout=0.5),
    NetOptions(crop=48, resize=56, test_resize=48, num_classes=7, batchnorm=True, accuracy_phase="test"),
    NetOptions(crop=32, resize=40, test_resize=32, backend="lmdb", train_source="train_lmdb",
               val_source="val_lmdb", conv_widths=(16, 16, 32)),
], ids=["dropout-3-classes", "batchnorm-test-accuracy", "lmdb-3-convs"])
def test_options_render_nets_pycaffe_builds_with_global_pool(opts):
    from caffegen.prototxt.validate import check_net_shapes

    shapes = check_net_shapes(render_net(opts), opts, deploy_text=render_deploy(opts))
    for phase in ("TRAIN", "TEST", "deploy"):
        assert shapes[phase][opts.pool_name][2:] == [1, 1]
    net = parse(render_net(opts))
    types = [layer.type for layer in net.layer]
    assert ("Dropout" in types) == (opts.dropout > 0) and ("BatchNorm" in types) == opts.batchnorm
    assert types.count("Data" if opts.backend == "lmdb" else "ImageData") == 2
    assert [layer.name for layer in net.layer if layer.type == "Accuracy"] == \
        ["accuracy_at_1"] + (["accuracy_at_5"] if opts.num_classes > 5 else [])


@pytest.mark.caffe
def test_a_rendered_variant_trains_with_real_caffe_from_its_folder(tiny_imageset, caffe_install, tmp_path):
    net = NetOptions(num_classes=3, resize=40, test_resize=32, crop=32, conv_widths=(4, 4, 8), train_batch=4,
                     test_batch=4, train_source=str(tiny_imageset["train"]), val_source=str(tiny_imageset["val"]))
    solver = SolverOptions(base_lr=0.01, lr_policy="multistep", max_iter=4, display=1, test_interval=2)
    written = write_variant(tmp_path / "run", net, solver)
    assert "test_iter: 2\n" in written.paths["solver.prototxt"].read_text()  # 6 val images / batch 4, rounded up
    proc = subprocess.run([str(caffe_install.binary), "train", "-solver", "solver.prototxt"], cwd=tmp_path / "run",
                          capture_output=True, text=True, env=caffe_install.env(threads=1), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Test net output #0: accuracy_at_1" in proc.stderr
    assert (tmp_path / "run" / "snapshot_iter_4.caffemodel").exists()


@pytest.mark.caffe
def test_netscope_export_is_a_deploy_net_without_phase_or_loss_layers(tmp_path):
    proc = run_cli("export", "netscope", "--crop", "64", "--resize", "64", "--test-resize", "64",
                   "--out", "net.prototxt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "net.prototxt").read_text()
    assert text == netscope(NetOptions(crop=64, resize=64, test_resize=64))
    net = parse(text)
    assert net.layer[0].type == "Input" and list(net.layer[0].input_param.shape[0].dim) == [1, 3, 64, 64]
    assert net.layer[-1].type == "Softmax" and list(net.layer[-1].top) == ["prob"]
    assert not any(layer.include or layer.exclude for layer in net.layer)
    assert not {"Accuracy", "SoftmaxWithLoss", "ImageData", "Data"} & {layer.type for layer in net.layer}

    from caffegen.prototxt.validate import run_probe

    (shapes,) = run_probe([(str(tmp_path / "net.prototxt"), "TEST")])
    assert shapes["pool5"] == [1, 256, 1, 1] and shapes["prob"] == [1, 20]
