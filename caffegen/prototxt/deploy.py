"""A net's deploy form, the one Netscope draws and pycaffe loads: one Input layer in place of the data layers (its
shape from the TEST data layer, or an LMDB's first record), no label readers, a Softmax for each loss."""
from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .netread import LOSS, is_data, phases

__all__ = ["deploy_text", "input_shape_of", "lmdb_shape"]


def deploy_text(net, input_shape: tuple[int, ...] | None = None, where: str = "net",
                fix: str = "pass --input-shape 1,3,H,W", root: str | Path | None = None) -> str:
    """The deploy form Netscope draws and pycaffe loads: the data layers become one ``Input`` (shape [1, C, crop,
    crop] from the TEST data layer's transform_param, C from is_color or the mean's channels; an LMDB's own shape
    from its first record when there is no crop; or ``input_shape``),
    layers that read the label (losses, Accuracy, Silence) and TRAIN-only layers go, and each SoftmaxWithLoss
    becomes a Softmax: ``prob`` for the main (last) head, ``prob_1``, ``prob_2``... for the others."""
    from google.protobuf import text_format

    from ..toolchain import caffe_pb2

    data = [layer for layer in net.layer if is_data(layer)]
    if not data:
        raise InputError(f"{where}: no data or Input layer to take the input shape from")
    test = next((layer for layer in data if "TEST" in phases(layer)), data[0])
    data_blob = test.top[0]
    label = test.top[1] if len(test.top) > 1 else None
    shape = tuple(input_shape) if input_shape else input_shape_of(test, where, fix, root)
    out = caffe_pb2().NetParameter()
    if net.name:
        out.name = net.name
    inp = out.layer.add(name=data_blob, type="Input", top=[data_blob])
    inp.input_param.shape.add(dim=list(shape))
    losses = [layer for layer in net.layer if layer.type == LOSS]
    for layer in net.layer:
        if is_data(layer) or "TEST" not in phases(layer) and "TRAIN" in phases(layer) and layer.include:
            continue
        if layer.type == LOSS:
            k = losses.index(layer)
            name = "prob" if k == len(losses) - 1 else f"prob_{k + 1}"
            out.layer.add(name=name, type="Softmax", bottom=[layer.bottom[0]], top=[name])
            continue
        if label is not None and label in layer.bottom:
            continue
        kept = out.layer.add()
        kept.CopyFrom(layer)
        kept.ClearField("include")
        kept.ClearField("exclude")
    return text_format.MessageToString(out)


def input_shape_of(layer, where: str, fix: str, root: str | Path | None) -> tuple[int, ...]:
    """The input shape a data layer feeds (1, C, H, W), or one line that ends with ``fix``."""
    tp = layer.transform_param
    if layer.type == "Input":
        return tuple(layer.input_param.shape[0].dim)
    channels = 3
    if layer.type == "ImageData" and not layer.image_data_param.is_color:
        channels = 1
    elif len(tp.mean_value) in (1, 3) and layer.type != "ImageData":
        channels = len(tp.mean_value)
    side = tp.crop_size
    if layer.type == "Data":
        stored = lmdb_shape(layer.data_param.source, root) if layer.data_param.backend == 1 else None  # LMDB
        if stored is not None:
            return (1, stored[0], side or stored[1], side or stored[2])
    if not side and layer.type == "ImageData":
        p = layer.image_data_param
        if p.new_height and p.new_width:
            return (1, channels, p.new_height, p.new_width)
    if not side:
        what = "nor new_height/new_width" if layer.type == "ImageData" else f"and its LMDB {layer.data_param.source!r} " \
            "is not there to read the shape from"
        raise InputError(f"{where}: data layer {layer.name!r} has no crop_size ({what}): {fix}")
    return (1, channels, side, side)


def lmdb_shape(source: str, root: str | Path | None = None) -> tuple[int, int, int] | None:
    """(channels, height, width) of an LMDB's first record (a Caffe ``Datum``, as ``convert_imageset`` writes it), or
    None when there is no LMDB at ``source`` (relative to ``root``, then to the working folder)."""
    candidates = [Path(source)]
    if root is not None and not Path(source).is_absolute():
        candidates.insert(0, Path(root) / source)
    db = next((c for c in candidates if (c / "data.mdb").is_file()), None)
    if db is None:
        return None
    import lmdb

    from ..toolchain import caffe_pb2

    with lmdb.open(str(db), readonly=True, lock=False) as env, env.begin() as txn:
        first = next(iter(txn.cursor()), None)
    if first is None:
        raise InputError(f"{db}: an empty LMDB")
    datum = caffe_pb2().Datum()
    datum.ParseFromString(first[1])
    return (datum.channels, datum.height, datum.width)
