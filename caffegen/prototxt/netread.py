"""Reading a Caffe net: the NetParameter of a file, the phases a layer exists in, and its data layers (the one TRAIN
and the one TEST layer a sweep wires, or the line that says why it cannot)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["UNWIRABLE", "LOSS", "load_net", "phases", "is_data", "data_layers"]

# Data layer types caffegen cannot point at a sweep's images, and why.
UNWIRABLE = {
    "HDF5Data": "reads HDF5 files (no image list or LMDB to replace)",
    "MemoryData": "is fed from Python at run time",
    "Python": "is a Python data layer",
    "DummyData": "produces random data",
    "WindowData": "reads detection windows",
}
LOSS = "SoftmaxWithLoss"



def load_net(path: str | Path):
    """The NetParameter in ``path``; one error line (with line:column) when it is not a Caffe net."""
    from .validate import parse_file

    net = parse_file(path, "net")
    if not net.layer:
        raise InputError(f"{path}: not a Caffe net (no layer {{ ... }} found); give a train_val.prototxt")
    return net


def phases(layer) -> set[str]:
    """The phases a layer exists in: ``include { phase }`` rules, else both (an ``exclude`` removes one)."""
    names = {0: "TRAIN", 1: "TEST"}
    inc = {names[r.phase] for r in layer.include if r.HasField("phase")}
    if layer.include and not inc:
        inc = {"TRAIN", "TEST"}
    got = inc or {"TRAIN", "TEST"}
    return got - {names[r.phase] for r in layer.exclude if r.HasField("phase")}


def is_data(layer) -> bool:
    """A layer that makes the input (no bottom): a data layer of any kind, or an Input."""
    return not layer.bottom and (layer.type in ("Data", "ImageData", "Input") or layer.type in UNWIRABLE)


def data_layers(net, where: str) -> dict[str, Any]:
    """The one TRAIN and the one TEST data layer, or the error that says why this net cannot be swept."""
    layers = [layer for layer in net.layer if is_data(layer)]
    for layer in layers:
        if layer.type in UNWIRABLE:
            raise InputError(f"{where}: data layer {layer.name!r} ({layer.type}) {UNWIRABLE[layer.type]}: caffegen "
                             "can wire ImageData and Data (LMDB) layers only")
    if layers and all(layer.type == "Input" for layer in layers):
        raise InputError(f"{where}: the net has only Input layers (a deploy net): give its train_val.prototxt")
    found: dict[str, Any] = {}
    for phase in ("TRAIN", "TEST"):
        mine = [layer for layer in layers if layer.type != "Input" and phase in phases(layer)]
        if len(mine) > 1:
            names = ", ".join(repr(layer.name) for layer in mine)
            raise InputError(f"{where}: two {phase} data layers ({names}): caffegen wires one per phase")
        if not mine:
            if phase == "TEST":
                raise InputError(f"{where}: no TEST phase data layer: without a test pass no run can be ranked "
                                 "(add a TEST data layer, as in the Model Zoo's train_val.prototxt files)")
            raise InputError(f"{where}: no TRAIN phase data layer")
        found[phase] = mine[0]
    return found
