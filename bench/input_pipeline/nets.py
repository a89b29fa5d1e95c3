"""Hand-written prototxt for the input-pipeline benchmark and the demo-data learnability check.

The net is the seed's baseline (5 x [3x3 conv stride 2 + ReLU], global average pool, fc, softmax;
gaussian std 0.01 convs, xavier fc) with its widths scaled by ``width``; the data layer is either the
seed's ``ImageData`` (JPEG decode + resize every batch) or ``Data`` over an LMDB, with the same
``transform_param`` (crop, mirror, mean). Written here rather than with caffegen's template so the
benchmark pins exactly what it measures.
"""
from __future__ import annotations

import json

SEED_WIDTHS = (64, 64, 128, 128, 256)
MEAN = (104.0, 117.0, 124.0)


def _q(s: str) -> str:
    """A prototxt string literal (JSON escaping is a valid subset of protobuf text escaping)."""
    return json.dumps(str(s), ensure_ascii=False)


def data_layer(phase: str, *, backend: str, source: str, batch: int, crop: int, resize: int,
               mirror: bool, shuffle: bool) -> str:
    """One TRAIN or TEST data layer: ``imagedata`` (list file of JPEGs) or ``lmdb``."""
    mean = "".join(f"    mean_value: {m}\n" for m in MEAN)
    transform = (f"  transform_param {{\n    mirror: {str(mirror).lower()}\n    crop_size: {crop}\n{mean}  }}\n")
    if backend == "imagedata":
        param = (f"  image_data_param {{\n    source: {_q(source)}\n    batch_size: {batch}\n"
                 f"    shuffle: {str(shuffle).lower()}\n    new_height: {resize}\n    new_width: {resize}\n  }}\n")
        kind = "ImageData"
    elif backend == "lmdb":
        param = f"  data_param {{\n    source: {_q(source)}\n    batch_size: {batch}\n    backend: LMDB\n  }}\n"
        kind = "Data"
    else:
        raise ValueError(backend)
    return (f'layer {{\n  name: "data"\n  type: "{kind}"\n  top: "data"\n  top: "label"\n'
            f"  include {{\n    phase: {phase}\n  }}\n{transform}{param}}}\n")


def body(num_classes: int, widths=SEED_WIDTHS, *, accuracy: bool) -> str:
    """The seed's conv stack, global average pool, fc and loss (plus top-1 accuracy for TEST)."""
    out, bottom = [], "data"
    for i, w in enumerate(widths, 1):
        out.append(f'layer {{\n  name: "conv{i}"\n  type: "Convolution"\n  bottom: "{bottom}"\n  top: "conv{i}"\n'
                   "  param {\n    lr_mult: 1\n    decay_mult: 1\n  }\n  param {\n    lr_mult: 2\n    decay_mult: 0\n  }\n"
                   f"  convolution_param {{\n    num_output: {w}\n    pad: 1\n    kernel_size: 3\n    stride: 2\n"
                   '    weight_filler {\n      type: "gaussian"\n      std: 0.01\n    }\n'
                   '    bias_filler {\n      type: "constant"\n      value: 0\n    }\n  }\n}\n')
        out.append(f'layer {{\n  name: "relu{i}"\n  type: "ReLU"\n  bottom: "conv{i}"\n  top: "conv{i}"\n}}\n')
        bottom = f"conv{i}"
    out.append(f'layer {{\n  name: "pool"\n  type: "Pooling"\n  bottom: "{bottom}"\n  top: "pool"\n'
               "  pooling_param {\n    pool: AVE\n    global_pooling: true\n  }\n}\n")
    out.append('layer {\n  name: "fc"\n  type: "InnerProduct"\n  bottom: "pool"\n  top: "fc"\n'
               f"  inner_product_param {{\n    num_output: {num_classes}\n"
               '    weight_filler {\n      type: "xavier"\n    }\n'
               '    bias_filler {\n      type: "constant"\n      value: 0\n    }\n  }\n}\n')
    if accuracy:
        out.append('layer {\n  name: "accuracy_at_1"\n  type: "Accuracy"\n  bottom: "fc"\n  bottom: "label"\n'
                   '  top: "accuracy_at_1"\n  include {\n    phase: TEST\n  }\n}\n')
    out.append('layer {\n  name: "loss"\n  type: "SoftmaxWithLoss"\n  bottom: "fc"\n  bottom: "label"\n  top: "loss"\n}\n')
    return "".join(out)


def solver(net: str, *, base_lr: float, max_iter: int, display: int, test_iter: int = 0,
           test_interval: int = 0) -> str:
    """A fixed-lr SGD solver; no test net unless ``test_iter`` (the benchmark times training only)."""
    lines = [f"net: {_q(net)}", f"base_lr: {base_lr}", 'lr_policy: "fixed"', "momentum: 0.9",
             "weight_decay: 0.0005", f"display: {display}", f"max_iter: {max_iter}",
             "snapshot_after_train: false", "solver_mode: CPU", "random_seed: 1"]
    if test_iter:
        lines += [f"test_iter: {test_iter}", f"test_interval: {test_interval}", "test_initialization: true"]
    return "\n".join(lines) + "\n"
