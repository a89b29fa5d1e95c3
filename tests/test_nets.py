"""Every net a practitioner brings: heads behind pooling, ReLU, BatchNorm or Dropout; LMDB nets without a crop; a
big net at a small crop; the Caffe source tree's own nets (never committed here: set-up downloads them); thin
classes in `caffegen lists`. On the real binary."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import text_format

from caffegen.errors import InputError
from caffegen.prototxt.netread import load_net
from caffegen.prototxt.usernet import heads_of
from helpers import LENET_STYLE, ZOO_SIZED, own_net_spec
from sweep_state import store_rows

CAFFEGEN = [sys.executable, "-m", "caffegen"]
pytestmark = pytest.mark.caffe


def caffegen(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(CAFFEGEN + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("caffegen: error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


# ------------------------------------------------------------------------------------------ the head styles

DATA = """name: "{name}"
layer {{ name: "data" type: "ImageData" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ crop_size: 16 mirror: true mean_value: 104 mean_value: 117 mean_value: 123 }}
  image_data_param {{ source: "train.txt" batch_size: 4 shuffle: true new_height: 20 new_width: 20 }} }}
layer {{ name: "data" type: "ImageData" top: "data" top: "label" include {{ phase: TEST }}
  transform_param {{ crop_size: 16 mean_value: 104 mean_value: 117 mean_value: 123 }}
  image_data_param {{ source: "val.txt" batch_size: 4 new_height: 20 new_width: 20 }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 8 kernel_size: 3 pad: 1 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
"""

HEADS = {
    # a 1x1 convolution per class and a global average pool (Network in Network, SqueezeNet, mobile nets)
    "conv1x1+gap": """
layer {{ name: "cls" type: "Convolution" bottom: "pool1" top: "cls"
  convolution_param {{ num_output: {k} kernel_size: 1 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "gap" type: "Pooling" bottom: "cls" top: "gap" pooling_param {{ pool: AVE global_pooling: true }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "gap" bottom: "label" top: "loss" }}
layer {{ name: "acc" type: "Accuracy" bottom: "gap" bottom: "label" top: "acc" include {{ phase: TEST }} }}
""",
    # a convolution, BatchNorm + Scale, a ReLU, a global pool and a Flatten (per-class parameters after the classifier)
    "conv+bn+relu+gap": """
layer {{ name: "cls" type: "Convolution" bottom: "pool1" top: "cls"
  convolution_param {{ num_output: {k} kernel_size: 3 pad: 1 weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "cls_bn" type: "BatchNorm" bottom: "cls" top: "cls" }}
layer {{ name: "cls_scale" type: "Scale" bottom: "cls" top: "cls" scale_param {{ bias_term: true }} }}
layer {{ name: "cls_relu" type: "ReLU" bottom: "cls" top: "cls" }}
layer {{ name: "gap" type: "Pooling" bottom: "cls" top: "gap" pooling_param {{ pool: AVE global_pooling: true }} }}
layer {{ name: "flat" type: "Flatten" bottom: "gap" top: "flat" }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "flat" bottom: "label" top: "loss" }}
""",
    # an InnerProduct and an in-place Dropout before the loss
    "ip+dropout": """
layer {{ name: "cls" type: "InnerProduct" bottom: "pool1" top: "cls"
  inner_product_param {{ num_output: {k} weight_filler {{ type: "xavier" }} }} }}
layer {{ name: "drop" type: "Dropout" bottom: "cls" top: "cls" dropout_param {{ dropout_ratio: 0.5 }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "cls" bottom: "label" top: "loss" }}
layer {{ name: "acc" type: "Accuracy" bottom: "cls" bottom: "label" top: "acc" include {{ phase: TEST }} }}
""",
}


def head_net(folder: Path, style: str, k: int) -> Path:
    path = folder / f"{style.replace('+', '_')}_{k}.prototxt"
    path.write_text(DATA.format(name=style) + HEADS[style].format(k=k))
    return path


def spec(folder: Path, name: str, net: Path, classes: int, net_extra: str = "", data: str = "",
         lrs: str = "[0.01]", max_iter: int = 12) -> Path:
    return own_net_spec(folder, name, str(net), classes, net_extra=net_extra, data=data, lrs=lrs, max_iter=max_iter,
                        test_interval=6, jobs=2)


def test_the_classifier_is_found_through_layers_that_keep_the_class_axis(tmp_path):
    found = {style: heads_of(load_net(head_net(tmp_path, style, 5)), style)[0] for style in HEADS}
    assert {s: (h.classifier, h.blob, h.num_output) for s, h in found.items()} == {
        "conv1x1+gap": ("cls", "gap", 5), "conv+bn+relu+gap": ("cls", "flat", 5), "ip+dropout": ("cls", "cls", 5)}
    assert found["conv+bn+relu+gap"].path == ("flat", "gap", "cls_relu", "cls_scale", "cls_bn")
    assert found["conv1x1+gap"].top1 == "acc" and found["conv+bn+relu+gap"].top1 is None


@pytest.mark.parametrize("edit, message", [
    ('layer { name: "mix" type: "Eltwise" bottom: "gap" bottom: "gap" top: "mix" }',
     "the walk loss <- mix stopped at 'mix' (Eltwise)"),
    ('layer { name: "mix" type: "Concat" bottom: "gap" bottom: "gap" top: "mix" }',
     "stopped at Concat 'mix', which joins 2 blobs"),
], ids=["eltwise", "concat"])
def test_a_head_whose_classes_cannot_be_found_is_one_line_naming_where_the_walk_stopped(edit, message, tmp_path):
    net = head_net(tmp_path, "conv1x1+gap", 3)
    text = net.read_text().replace('bottom: "gap" bottom: "label" top: "loss"', 'bottom: "mix" bottom: "label" '
                                   'top: "loss"').replace('layer { name: "loss"', edit + '\nlayer { name: "loss"')
    net.write_text(text)
    with pytest.raises(InputError, match="cannot be found") as err:
        heads_of(load_net(net), "net")
    assert message in str(err.value) and "\n" not in str(err.value)
    proc = caffegen(tmp_path, "sweep", spec(tmp_path, "bad", net, 3), "--no-report")
    assert message in one_error_line(proc) and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("style", list(HEADS))
def test_each_head_style_sweeps_fine_tunes_exports_and_evaluates(style, tmp_path):
    """Trained on 5 classes (the net's own count); fine-tuned from those weights on 3 (num_classes: the classifier
    and the per-class layers after it renamed, so they start fresh); exported; the fine-tuned run evaluated."""
    net = head_net(tmp_path, style, 5)
    first = caffegen(tmp_path, "sweep", spec(tmp_path, "five", net, 5), "--no-report")
    assert first.returncode == 0, first.stderr
    assert {r["status"] for r in store_rows(tmp_path / "runs" / "five").values()} == {"done"}
    (weights,) = (tmp_path / "runs" / "five" / "lr0.01_fixed" / "snapshots").glob("*.caffemodel")
    ft = caffegen(tmp_path, "sweep", spec(tmp_path, "three", net, 3, f'num_classes = 3\nweights = "{weights}"'),
                  "--no-report")
    assert ft.returncode == 0, ft.stderr
    assert "classifier 'cls' resized to 3 outputs and renamed 'cls_3cls'" in ft.stderr
    if style == "conv+bn+relu+gap":
        assert "(and 'cls_bn_3cls', 'cls_scale_3cls' after it)" in ft.stderr
    run = tmp_path / "runs" / "three" / "lr0.01_fixed"
    log = (run / "train.log").read_text()
    assert "Copying source layer conv1" in log and "Ignoring source layer cls\n" in log
    assert store_rows(tmp_path / "runs" / "three")["lr0.01_fixed"]["best_top1"] is not None
    exported = caffegen(tmp_path, "export", "netscope", net, "--out", "net.prototxt")
    assert exported.returncode == 0, exported.stderr
    deploy = (tmp_path / "net.prototxt").read_text()
    assert "dim: 1\n" in deploy and "dim: 16" in deploy and 'type: "Softmax"' in deploy
    ev = caffegen(tmp_path, "evaluate", run, "--snapshot", "last")
    assert ev.returncode == 0, ev.stderr
    summary = json.loads((run / "eval" / "summary.json").read_text())
    assert summary["images"] > 0 and len(summary["classes"]) == 3


# ------------------------------------------------------------------------------------------ LMDB nets, no crop



@pytest.mark.parametrize("gray, side, channels", [(True, 28, 1), (False, 32, 3)], ids=["mnist-style", "cifar-style"])
def test_an_lmdb_net_without_crop_exports_with_the_shape_of_its_lmdb(gray, side, channels, tmp_path):
    """Caffe's MNIST and CIFAR-10 example nets read LMDBs with no crop_size (the source package ships no examples/:
    these are written here in their style). The input shape comes from the LMDB's first record; without the LMDB
    the one error line names --input-shape."""
    net = tmp_path / "net.prototxt"
    net.write_text(LENET_STYLE)
    missing = caffegen(tmp_path, "export", "netscope", net, "--out", "deploy.prototxt")
    assert "pass --input-shape 1,3,H,W" in one_error_line(missing) and "'lmdb/val_lmdb' is not there" in missing.stderr
    lists = caffegen(tmp_path, "lists", _demo(tmp_path, 3), "--out", "lists")
    assert lists.returncode == 0, lists.stderr
    prep = caffegen(tmp_path, "prepare", "--lmdb", "--resize", side, *(["--gray"] if gray else []), "--lists",
                    "lists", "--out", "lmdb")
    assert prep.returncode == 0, prep.stderr
    proc = caffegen(tmp_path, "export", "netscope", net, "--out", "deploy.prototxt")
    assert proc.returncode == 0, proc.stderr
    deploy = text_format.Parse((tmp_path / "deploy.prototxt").read_text(), _pb2().NetParameter())
    assert list(deploy.layer[0].input_param.shape[0].dim) == [1, channels, side, side]
    # and it sweeps on those LMDBs: two short runs
    table = (f'train_list = "{tmp_path / "lists" / "list_train_shuffle.txt"}"\n'
             f'val_list = "{tmp_path / "lists" / "list_val_shuffle.txt"}"\n'
             f'train_lmdb = "{tmp_path / "lmdb" / "train_lmdb"}"\nval_lmdb = "{tmp_path / "lmdb" / "val_lmdb"}"')
    swept = caffegen(tmp_path, "sweep", spec(tmp_path, "lenet", net, 3, data=table, lrs="[0.01, 0.001]"),
                     "--no-report")
    assert swept.returncode == 0, swept.stderr
    assert {r["status"] for r in store_rows(tmp_path / "runs" / "lenet").values()} == {"done"}


def _pb2():
    from caffegen.toolchain import caffe_pb2

    return caffe_pb2()


def _demo(folder: Path, classes: int, per_class: int = 6) -> Path:
    out = folder / "demo"
    proc = caffegen(folder, "demo-data", out, "--classes", classes, "--per-class", per_class)
    assert proc.returncode == 0, proc.stderr
    return out


# ------------------------------------------------------------------------------------------ a small crop



def test_a_model_zoo_sized_net_sweeps_at_crop_64_and_the_report_says_so(tmp_path):
    net = tmp_path / "zoo.prototxt"
    net.write_text(ZOO_SIZED)
    proc = caffegen(tmp_path, "sweep", spec(tmp_path, "small", net, 3, "num_classes = 3\ncrop = 64",
                                            lrs="[0.01, 0.001]", max_iter=6))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "small"
    assert {r["status"] for r in store_rows(out).values()} == {"done"}
    wired = text_format.Parse((out / "lr0.01_fixed" / "train_val.prototxt").read_text(), _pb2().NetParameter())
    data = [layer for layer in wired.layer if layer.type == "ImageData"]
    assert [(d.transform_param.crop_size, d.image_data_param.new_height) for d in data] == [(64, 72), (64, 72)]
    note = "the net trains and tests at 64x64 (images resized to 72) instead of its own 227x227"
    assert note in proc.stderr and note in (out / "report.md").read_text()
    # too small a crop, and a fixed-size head: one line each, naming the layer
    tiny = caffegen(tmp_path, "sweep", spec(tmp_path, "tiny", net, 3, "num_classes = 3\ncrop = 16"))
    assert "layer 'pool2' (Pooling) would have no output at that size" in one_error_line(tiny)


def test_crop_is_refused_for_a_fixed_size_head_naming_the_layer(tmp_path):
    from caffegen.toolchain.upstream import caffe_models_dir

    net = caffe_models_dir() / "bvlc_alexnet" / "train_val.prototxt"
    extra = 'num_classes = 3\ncrop = 64\nmean = [104, 117, 123]\ndata = "imagedata"'   # its LMDB input: the lists
    proc = caffegen(tmp_path, "sweep", spec(tmp_path, "alex", net, 3, extra))
    line = one_error_line(proc)
    assert "layer 'fc6' (InnerProduct) reads a 6x6 map at the net's own 227 and 1x1 at 64" in line
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------------ the corpus

def corpus() -> list[Path]:
    """Every train_val / train_test net of the Caffe source tree the project builds (models/ and examples/)."""
    from caffegen.toolchain.upstream import caffe_models_dir

    src = caffe_models_dir().parent
    found = [p for sub in ("models", "examples") for p in sorted((src / sub).rglob("*.prototxt"))
             if "train_val" in p.name or "train_test" in p.name]
    return found


def imagenet_mean(caffe_root: Path) -> None:
    """The mean file the ImageNet nets read, ``data/ilsvrc12/imagenet_mean.binaryproto`` under the Caffe root (a
    download of get_ilsvrc_aux.sh, not shipped): its shape, 3x256x256, with the BGR means 104, 117, 123."""
    import numpy as np

    blob = _pb2().BlobProto()
    blob.shape.dim.extend([1, 3, 256, 256])
    blob.data.extend(np.repeat([104.0, 117.0, 123.0], 256 * 256).tolist())
    path = caffe_root / "data" / "ilsvrc12" / "imagenet_mean.binaryproto"
    path.parent.mkdir(parents=True)
    path.write_bytes(blob.SerializeToString())


def test_every_net_in_the_caffe_source_tree_sweeps_or_is_refused_in_one_line(tmp_path):
    """Each as shipped, its own mean file included: two short runs on demo data (the classifier resized to its 3
    classes; LMDB inputs read the demo lists instead, resized to 256 as ImageNet's LMDBs are, so a 256x256 mean under
    a 227 crop, as in Caffe's own ImageNet recipe) at batch 1, or one error line that names the reason."""
    imagenet_mean(tmp_path / "caffe")
    outcome = {}
    for k, net in enumerate(corpus()):
        extra = (f'num_classes = 3\nroot = "{tmp_path / "caffe"}"\ntrain_batch = 1\ntest_batch = 1\n'
                 'data = "imagedata"\nresize = 256')
        path = spec(tmp_path, f"corpus{k}", net, 3, extra, lrs="[0.0001, 0.00001]", max_iter=2)
        path.write_text(path.read_text().replace("test_interval = 6", "test_interval = 2\ntest_iter = 1"))
        proc = caffegen(tmp_path, "sweep", path, "--no-report")
        if proc.returncode == 2:
            outcome[net.parent.name] = one_error_line(proc)
            continue
        assert proc.returncode == 0, (net, proc.stderr[-3000:])
        rows = store_rows(tmp_path / "runs" / f"corpus{k}")
        assert len(rows) == 2 and all(r["status"] == "done" and r["best_top1"] is not None for r in rows.values())
        outcome[net.parent.name] = "swept"
    print(json.dumps(outcome, indent=1))     # the counts docs/sweep.md gives
    # the four nets of models/ with a train_val (the source package ships no examples/)
    assert outcome == {n: "swept" for n in ("bvlc_alexnet", "bvlc_googlenet", "bvlc_reference_caffenet",
                                            "finetune_flickr_style")}, outcome


# ------------------------------------------------------------------------------------------ thin classes

def test_lists_warns_per_class_with_too_few_val_images_and_says_how_to_fix_it(tmp_path):
    root = _demo(tmp_path, 3, per_class=10)
    only = sorted(p for p in root.iterdir() if p.is_dir())[0]
    for extra in sorted(only.iterdir())[1:]:        # the first class keeps one image
        extra.unlink()
    proc = caffegen(tmp_path, "lists", root, "--out", "lists", "--val-fraction", "0.2")
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("caffegen: warning: class")]
    assert len(warnings) == 3, proc.stderr          # 1 image: no val image; 10 images at 0.2: only 2 each
    assert f"class '{only.name}' (label 0) has no val image: it is never tested (1 image in all); give it" in \
        warnings[0]
    assert "only 2 val images" in warnings[1] and "or set val_fraction 0.25" in warnings[1]
