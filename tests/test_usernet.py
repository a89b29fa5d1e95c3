"""Your own net: sweeps, fine-tuning, solvers and Netscope export of any Caffe train_val.prototxt, on the real Caffe.

The Model Zoo nets come from the Caffe source tree that set-up downloads (never committed here)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format

from caffegen.errors import InputError
from caffegen.logs import parse_log
from caffegen.paths import sha256_file
from caffegen.prototxt import NetOptions, render_net
from caffegen.prototxt.netread import load_net
from caffegen.prototxt.shapes import spatial_sizes
from caffegen.prototxt.usernet import DataSources, UserNet, heads_of, wire
from caffegen.sweep.store import open_store
from helpers import own_net_spec
from sweep_state import store_rows

CAFFEGEN = [sys.executable, "-m", "caffegen"]
pytestmark = pytest.mark.caffe


@pytest.fixture(scope="module")
def models() -> Path:
    from caffegen.toolchain.upstream import caffe_models_dir

    return caffe_models_dir()


def caffegen(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(CAFFEGEN + list(args), cwd=cwd, capture_output=True, text=True, timeout=timeout)


def parse(text: str, kind: str = "net"):
    from caffegen.toolchain import caffe_pb2

    pb2 = caffe_pb2()
    return text_format.Parse(text, pb2.NetParameter() if kind == "net" else pb2.SolverParameter())


TINY = dict(resize=36, test_resize=32, crop=32, conv_widths=(8, 8, 16), train_batch=4, test_batch=4)


def tiny_net(path: Path, classes: int = 3, **kw) -> Path:
    """A small train_val of caffegen's own template, written as a user's file (its list sources are placeholders)."""
    path.write_text(render_net(NetOptions(num_classes=classes, **{**TINY, **kw})))
    return path


# ------------------------------------------------------------------------------------- the Model Zoo net


def test_a_sweep_over_finetune_flickr_style_on_the_demo_data(models, tmp_path):
    net = models / "finetune_flickr_style" / "train_val.prototxt"
    spec = tmp_path / "flickr.toml"
    spec.write_text(f"""
name = "flickr"
[data]
demo = {{ classes = 20, per_class = 5, seed = 0 }}
[net]
prototxt = "{net}"
mean = [104, 117, 123]      # its mean_file (data/ilsvrc12/imagenet_mean.binaryproto) is not downloaded
train_batch = 2
test_batch = 2
[solver]
base = "{models / 'finetune_flickr_style' / 'solver.prototxt'}"
max_iter = 4
test_interval = 4
test_iter = 2
display = 1
[grid]
base_lr = [0.00001]
lr_policy = ["step", "poly"]
[run]
jobs = 2
""")
    proc = caffegen(tmp_path, "sweep", str(spec))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "flickr"
    rows = store_rows(out)
    assert {k: v["status"] for k, v in rows.items()} == {"lr1e-05_step": "done", "lr1e-05_poly": "done"}
    for name in rows:
        run = out / name
        curves = parse_log(run / "train.log")
        assert len(curves.test) >= 2 and "accuracy" in curves.test.metrics()  # the net's own Accuracy top
        assert rows[name]["best_top1"] is not None
        m = json.loads((run / "manifest.json").read_text())
        assert m["net"]["file"] == str(net) and m["net"]["sha256"] == sha256_file(net)
        assert m["net"]["name"] == "FlickrStyleCaffeNet" and m["start"] == "from scratch"
        assert m["base_solver"]["sha256"] == sha256_file(models / "finetune_flickr_style" / "solver.prototxt")
        wired = parse((run / "train_val.prototxt").read_text())
        data = [layer for layer in wired.layer if layer.type == "ImageData"]
        assert [layer.image_data_param.source for layer in data] == [str(out / "lists" / "list_train_shuffle.txt"),
                                                                     str(out / "lists" / "list_val_shuffle.txt")]
        assert [layer.image_data_param.batch_size for layer in data] == [2, 2]
        assert all(layer.transform_param.crop_size == 227 and list(layer.transform_param.mean_value) == [104, 117, 123]
                   and not layer.transform_param.mean_file for layer in data)
    step = parse((out / "lr1e-05_step" / "solver.prototxt").read_text(), "solver")
    poly = parse((out / "lr1e-05_poly" / "solver.prototxt").read_text(), "solver")
    assert step.stepsize == 20000 and step.gamma == pytest.approx(0.1)  # the base's own policy keeps its parameters
    assert not poly.HasField("stepsize") and poly.power == 1.0  # another policy gets its derived defaults
    for solver in (step, poly):  # the base's other fields stay, the sweep's own are set
        assert solver.momentum == pytest.approx(0.9) and solver.weight_decay == pytest.approx(0.0005)
        assert solver.max_iter == 4 and solver.net == "train_val.prototxt" and solver.snapshot_prefix == "snapshots/snap"
    assert "FlickrStyleCaffeNet" in (out / "report.html").read_text()  # the report names the net


@pytest.mark.parametrize("name", ["bvlc_reference_caffenet", "bvlc_alexnet", "bvlc_googlenet", "finetune_flickr_style"])
def test_export_netscope_of_every_model_zoo_train_val_loads_and_runs_forward(models, name, tmp_path):
    from caffegen.prototxt.validate import run_probe

    proc = caffegen(tmp_path, "export", "netscope", str(models / name / "train_val.prototxt"), "--out", "net.prototxt")
    assert proc.returncode == 0, proc.stderr
    net = parse((tmp_path / "net.prototxt").read_text())
    assert net.layer[0].type == "Input" and net.layer[0].input_param.shape[0].dim[:2] == [1, 3]
    assert not {"Accuracy", "SoftmaxWithLoss", "Data", "ImageData"} & {layer.type for layer in net.layer}
    assert not any(layer.include or layer.exclude for layer in net.layer)
    heads = 3 if name == "bvlc_googlenet" else 1
    probs = [layer.top[0] for layer in net.layer if layer.type == "Softmax"]
    assert probs == (["prob_1", "prob_2", "prob"] if heads == 3 else ["prob"])
    (shapes,) = run_probe([(str(tmp_path / "net.prototxt"), "TEST", None, True)])  # built and run forward
    classes = 20 if name == "finetune_flickr_style" else 1000
    assert all(shapes[p] == [1, classes] for p in probs)
    # the pure size walk [net] crop relies on gives pycaffe's own blob shapes (Caffe's conv and pool rules)
    sizes, empty = spatial_sizes(load_net(models / name / "train_val.prototxt"), shapes["data"][2])
    assert empty is None
    compared = [b for b, shape in shapes.items() if len(shape) == 4 and b in sizes]
    assert len(compared) > 10 and all(tuple(shapes[b][2:]) == sizes[b] for b in compared), name


def test_several_heads_are_found_by_top_k_and_the_last_one_ranks(models):
    heads = heads_of(load_net(models / "bvlc_googlenet" / "train_val.prototxt"), "googlenet")
    assert [(h.classifier, h.top1, h.top5) for h in heads] == [
        ("loss1/classifier", "loss1/top-1", "loss1/top-5"), ("loss2/classifier", "loss2/top-1", "loss2/top-5"),
        ("loss3/classifier", "loss3/top-1", "loss3/top-5")]


def test_solvers_for_a_user_net_and_its_base_solver(models, tmp_path):
    net, base = models / "finetune_flickr_style" / "train_val.prototxt", models / "finetune_flickr_style" / "solver.prototxt"
    proc = caffegen(tmp_path, "solvers", "--net", str(net), "--base-solver", str(base), "--lr", "0.001,0.0001",
                    "--policy", "step,poly,multistep")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "solvers"
    names = sorted(p.stem for p in out.glob("lr*.prototxt"))
    assert names == sorted(f"lr{lr}_{p}" for lr in ("0.001", "0.0001") for p in ("step", "poly", "multistep"))
    assert not (out / "train_val.prototxt").exists()  # the solvers name the user's net where it is
    for name in names:
        s = parse((out / f"{name}.prototxt").read_text(), "solver")
        assert s.net == str(net) and s.test_iter == [100] and s.test_interval == 1000 and s.max_iter == 100000
        assert s.snapshot == 10000 and s.display == 20 and s.momentum == pytest.approx(0.9)
        assert s.snapshot_prefix == f"models/finetune_flickr_style/finetune_flickr_style_{name}"
    assert parse((out / "lr0.001_step.prototxt").read_text(), "solver").stepsize == 20000
    multistep = parse((out / "lr0.001_multistep.prototxt").read_text(), "solver")
    assert list(multistep.stepvalue) == [50000, 75000] and not multistep.HasField("stepsize")
    assert len(json.loads((out / "index.json").read_text())["variants"]) == 6


# ------------------------------------------------------------------------------------------ fine-tuning


def test_fine_tuning_starts_from_the_weights_and_the_resized_classifier_starts_fresh(caffe_install, tmp_path):
    # a tiny net trained on 3 classes, snapshotted...
    first = caffegen(tmp_path, "sweep", str(_spec(tmp_path, "pre", tiny_net(tmp_path / "pre.prototxt"), classes=3)))
    assert first.returncode == 0, first.stderr
    (weights,) = (tmp_path / "runs" / "pre" / "lr0.01_fixed" / "snapshots").glob("*.caffemodel")
    # ...then a copy fine-tuned on 4 classes from those weights
    spec = _spec(tmp_path, "ft", tiny_net(tmp_path / "ft.prototxt"), classes=4,
                 net_extra=f'weights = "{weights}"\nnum_classes = 4')
    proc = caffegen(tmp_path, "sweep", str(spec), "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert "caffegen: note: classifier 'fc' resized to 4 outputs and renamed 'fc_4cls'" in proc.stderr
    run = tmp_path / "runs" / "ft" / "lr0.01_fixed"
    log = (run / "train.log").read_text()
    assert f"Finetuning from {weights}" in log and "Copying source layer conv1" in log
    assert "Ignoring source layer fc\n" in log  # the 3-class classifier is not copied into fc_4cls
    wired = parse((run / "train_val.prototxt").read_text())
    fc = next(layer for layer in wired.layer if layer.name == "fc_4cls")
    assert fc.inner_product_param.num_output == 4
    m = json.loads((run / "manifest.json").read_text())
    assert m["start"].startswith("fine-tuned from -weights") and "-weights" in m["command"]
    assert m["net"]["weights_sha256"] == sha256_file(weights)
    # a resumed run continues its own training: -snapshot, never -weights again
    store = open_store(tmp_path / "runs" / "ft")
    for row in store.all():
        store.update(row.variant, status="interrupted")
    store.close()
    again = caffegen(tmp_path, "sweep", str(spec), "--no-report")
    assert again.returncode == 0, again.stderr
    m = json.loads((run / "manifest.json").read_text())
    assert "-snapshot" in m["command"] and "-weights" not in m["command"]
    assert m["start"].startswith("resumed from its newest snapshot: -snapshot, not -weights")


def _spec(tmp_path: Path, name: str, net: Path, classes: int, net_extra: str = "", data: str = "") -> Path:
    return own_net_spec(tmp_path, name, net.name, classes, net_extra=net_extra, data=data)


def test_lmdb_data_layers_read_the_sweeps_lmdbs_or_become_imagedata(caffe_install, tmp_path):
    net = tiny_net(tmp_path / "lmdb_net.prototxt", backend="lmdb", train_source="nowhere_lmdb",
                   val_source="nowhere_lmdb")
    # [net] data = "imagedata": the Data layers read the sweep's lists, same transform and batch
    proc = caffegen(tmp_path, "sweep", str(_spec(tmp_path, "asimg", net, 3, 'data = "imagedata"\nresize = 36')),
                    "--no-report")
    assert proc.returncode == 0, proc.stderr
    wired = parse((tmp_path / "runs" / "asimg" / "lr0.01_fixed" / "train_val.prototxt").read_text())
    data = [layer for layer in wired.layer if layer.name == "data"]
    assert [layer.type for layer in data] == ["ImageData", "ImageData"]
    assert [layer.image_data_param.new_height for layer in data] == [36, 36]
    assert [layer.transform_param.crop_size for layer in data] == [32, 32]
    # [data] train_lmdb/val_lmdb: the LMDBs that `caffegen prepare --lmdb` makes
    lists = tmp_path / "runs" / "asimg" / "lists"
    prep = caffegen(tmp_path, "prepare", "--lmdb", "--resize", "36", "--lists", str(lists), "--out", "db")
    assert prep.returncode == 0, prep.stderr
    data_table = (f'train_list = "{lists / "list_train_shuffle.txt"}"\nval_list = "{lists / "list_val_shuffle.txt"}"\n'
                  f'train_lmdb = "{tmp_path / "db" / "train_lmdb"}"\nval_lmdb = "{tmp_path / "db" / "val_lmdb"}"')
    proc = caffegen(tmp_path, "sweep", str(_spec(tmp_path, "aslmdb", net, 3, data=data_table)), "--no-report")
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "aslmdb" / "lr0.01_fixed"
    wired = parse((run / "train_val.prototxt").read_text())
    assert [layer.data_param.source for layer in wired.layer if layer.type == "Data"] == [
        str(tmp_path / "db" / "train_lmdb"), str(tmp_path / "db" / "val_lmdb")]
    assert store_rows(tmp_path / "runs" / "aslmdb")["lr0.01_fixed"]["status"] == "done"
    assert "test_iter: 1\n" in (run / "solver.prototxt").read_text()  # 3 val images at batch 4: one pass


def test_a_net_without_accuracy_gets_a_test_top1_and_a_note(tmp_path):
    lst = tmp_path / "val.txt"
    lst.write_text("/x/a.jpg 0\n/x/b.jpg 1\n")
    text = render_net(NetOptions(num_classes=7, **TINY))
    net = parse(text)
    for layer in [layer for layer in net.layer if layer.type == "Accuracy"]:
        net.layer.remove(layer)
    path = tmp_path / "noacc.prototxt"
    path.write_text(text_format.MessageToString(net))
    wired = wire(UserNet(prototxt=str(path)), DataSources(str(lst), str(lst), num_classes=7))
    added = [layer for layer in parse(wired.text).layer if layer.type == "Accuracy"]
    assert [(a.name, a.accuracy_param.top_k, [r.phase for r in a.include]) for a in added] == [
        ("accuracy_at_1", 1, [1]), ("accuracy_at_5", 5, [1])]
    assert wired.metric == "accuracy_at_1" and wired.top5 == "accuracy_at_5"
    assert any("no Accuracy layer" in n for n in wired.notes)


# ------------------------------------------------------------------------------------------ bad input


def _edit(text: str, kind: str) -> str:
    net = parse(text)
    if kind == "no loss":
        for layer in net.layer:
            if layer.type == "SoftmaxWithLoss":
                layer.type = "Softmax"
                del layer.bottom[1:]
    elif kind == "two TRAIN data layers":
        extra = net.layer.add()
        extra.CopyFrom(net.layer[0])
        extra.name = "data2"
    elif kind == "HDF5Data":
        layer = net.layer[0]
        layer.type = "HDF5Data"
        layer.ClearField("image_data_param")
        layer.hdf5_data_param.source = "train_h5.txt"
        layer.hdf5_data_param.batch_size = 4
    elif kind == "unknown layer type":
        net.layer[3].type = "NoSuchLayer"
    return text_format.MessageToString(net)


@pytest.mark.parametrize("case, net_extra, message", [
    ("not a NetParameter", "", "not a valid Caffe net prototxt: 1:"),
    ("no loss", "", "no SoftmaxWithLoss layer"),
    ("two TRAIN data layers", "", "two TRAIN data layers ('data', 'data2')"),
    ("HDF5Data", "", "data layer 'data' (HDF5Data) reads HDF5 files"),
    ("K mismatch", "", "classifier 'fc' has 3 outputs but the data has 4 classes: set [net] num_classes = 4"),
    ("missing weights", 'weights = "nothere.caffemodel"', "[net] weights not found"),
    ("template options", "batchnorm = true", "'batchnorm' is a template option"),
    ("unknown layer type", "", "Unknown layer type: NoSuchLayer"),
    ("missing mean file", "", "set [net] mean = [104, 117, 123]"),
])
def test_a_net_that_cannot_be_swept_is_one_line_exit_2_and_nothing_written(case, net_extra, message, tmp_path):
    net = tiny_net(tmp_path / "net.prototxt")
    if case == "not a NetParameter":
        net.write_text('net: "x"\nbase_lr: 0.01\n')  # a solver, not a net
    elif case == "missing mean file":
        n = parse(net.read_text())
        for layer in n.layer[:2]:
            del layer.transform_param.mean_value[:]
            layer.transform_param.mean_file = "data/ilsvrc12/imagenet_mean.binaryproto"
        net.write_text(text_format.MessageToString(n))
    elif case not in ("K mismatch", "missing weights", "template options"):
        net.write_text(_edit(net.read_text(), case))
    spec = _spec(tmp_path, "bad", net, classes=4 if case == "K mismatch" else 3, net_extra=net_extra)
    proc = caffegen(tmp_path, "sweep", str(spec))
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("caffegen: error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert not (tmp_path / "runs").exists()  # nothing written


def test_user_net_table_errors_are_checked_before_anything_runs(tmp_path):
    from caffegen.sweep.spec import parse_spec

    net = tiny_net(tmp_path / "net.prototxt")
    with pytest.raises(InputError, match=r'data = "imagedata" needs \[net\] resize'):
        parse_spec({"net": {"prototxt": str(net), "data": "imagedata"}, "grid": {"base_lr": [0.1]}})
    with pytest.raises(InputError, match=r"\[solver\] base applies to your own net"):
        parse_spec({"data": {"demo": {}}, "solver": {"base": "s.prototxt"}, "grid": {"base_lr": [0.1]}})
    with pytest.raises(InputError, match="unknown option 'clip_gradient'.*did you mean 'clip_gradients'"):
        parse_spec({"net": {"prototxt": str(net)}, "solver": {"clip_gradient": 10}, "grid": {"base_lr": [0.1]}})
    spec = parse_spec({"net": {"prototxt": str(net)}, "solver": {"clip_gradients": 10.0},
                       "grid": {"base_lr": [0.1], "net.train_batch": [2, 4]}})
    assert [v.name for v in spec.variants] == ["lr0.1_bs2", "lr0.1_bs4"]
