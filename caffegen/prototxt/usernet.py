"""Your own net: a ``train_val.prototxt`` you bring (a Model Zoo net, a colleague's, last year's), wired to a
sweep's data, its classifier fitted to the classes, its metrics found (reading it: :mod:`.netread`; its sizes at a
smaller crop: :mod:`.shapes`; its deploy form for Netscope: :mod:`.deploy`).

Everything works on Caffe's own schema (``caffe_pb2.NetParameter``), so whatever the net holds is kept as it is
except what wiring must change: the sources of the TRAIN and TEST data layers (transform_param, batch sizes
and layer names stay), relative paths (made absolute: caffe runs in each run's folder), a missing mean file
replaced by mean values when asked, the classifier's ``num_output`` (and its name, when fine-tuning), and a TEST
Accuracy layer when the net has none. Each refusal is one :class:`~caffegen.errors.InputError` line that names the
layer and offers the fix.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError
from ..logs.curves import accuracy_name
from ..checks import as_choice, as_float, as_int, as_tuple
from .deploy import input_shape_of, lmdb_shape
from .netread import LOSS, data_layers, load_net, phases
from .options import knob
from .shapes import check_input_size

__all__ = ["UserNet", "DataSources", "Head", "WiredNet", "wire", "heads_of", "classifier_of", "describe", "sha256_of"]


@dataclass(frozen=True)
class UserNet:
    """The ``[net]`` table of a sweep over your own net (``prototxt`` instead of template options)."""

    prototxt: str = knob("", "Your train_val.prototxt (relative to the spec file).")
    weights: str | None = knob(None, "A .caffemodel to fine-tune from (caffe train -weights).", derived="none")
    num_classes: int | None = knob(None, "Resize the classifier to this many outputs (renamed when fine-tuning).",
                                   derived="the data's classes")
    root: str | None = knob(None, "The folder the net's relative paths are relative to (the Caffe root of a Model "
                                  "Zoo net).", derived="the net file's folder")
    mean: tuple[float, ...] | None = knob(None, "mean_value per channel, replacing the net's mean_file.",
                                          derived="the net's own")
    data: Literal["keep", "imagedata"] = knob("keep", "'imagedata': replace LMDB Data layers by ImageData layers "
                                                      "on the sweep's lists (needs resize).")
    resize: int | None = knob(None, "new_height/new_width of every ImageData layer.", derived="the net's own")
    crop: int | None = knob(None, "Train and test at this crop_size (a matching resize unless given): iterate fast "
                                  "at a smaller input. For nets whose head pools globally.", derived="the net's own")
    train_batch: int | None = knob(None, "TRAIN batch_size.", derived="the net's own")
    test_batch: int | None = knob(None, "TEST batch_size.", derived="the net's own")

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        if not self.prototxt:
            raise InputError("[net] prototxt must name a file")
        for name in ("prototxt", "weights", "root"):
            value = getattr(self, name)
            if value is not None:
                set_(name, os.fspath(value))
        if self.num_classes is not None:
            set_("num_classes", as_int("num_classes", self.num_classes, 2))
        for name in ("resize", "crop", "train_batch", "test_batch"):
            if getattr(self, name) is not None:
                set_(name, as_int(name, getattr(self, name), 1))
        if self.mean is not None:
            mean = as_tuple(self.mean)
            if len(mean) not in (1, 3):
                raise InputError(f"[net] mean takes 1 or 3 values (B,G,R), got {len(mean)}")
            set_("mean", tuple(as_float("mean", m) for m in mean))
        set_("data", as_choice("[net] data", self.data, ("keep", "imagedata")))
        if self.data == "imagedata" and self.resize is None and self.crop is None:
            raise InputError('[net] data = "imagedata" needs [net] resize (the new_height/new_width of the images)')
        if self.crop is not None and self.resize is not None and self.resize < self.crop:
            raise InputError(f"[net] resize {self.resize} is smaller than crop {self.crop}: the crop is taken from "
                             "the resized image")


@dataclass(frozen=True)
class DataSources:
    """What a sweep's ``[data]`` gives the net: list files (with their class count) and/or LMDBs."""

    train_list: str | None = None
    val_list: str | None = None
    root_folder: str = ""
    num_classes: int | None = None
    train_lmdb: str | None = None
    val_lmdb: str | None = None


@dataclass(frozen=True)
class Head:
    """One classifier head: the layer that feeds a SoftmaxWithLoss, and the Accuracy outputs that score it."""

    classifier: str
    blob: str
    label: str
    num_output: int
    top1: str | None = None
    top5: str | None = None
    path: tuple[str, ...] = ()    # the layers between the classifier and the loss (a pooling, a ReLU...)


@dataclass(frozen=True)
class WiredNet:
    """A user net ready for a run folder: its text, heads (the last is the main output), notes for the user, and
    what test_iter is derived from."""

    text: str
    name: str
    source: Path
    heads: tuple[Head, ...]
    notes: tuple[str, ...] = ()
    val_list: Path | None = None
    test_batch: int = 1
    reduced: str | None = None    # [net] crop: the sentence the report repeats (a reduced-input sweep)

    @property
    def metric(self) -> str | None:
        """The ranking metric: top-1 of the main (last) head."""
        return self.heads[-1].top1

    @property
    def top5(self) -> str | None:
        return self.heads[-1].top5


# Layers a classifier's output may pass through on its way to the loss: they keep the class (channel) axis.
KEEPS_CLASSES = frozenset({
    "Pooling", "ReLU", "PReLU", "ELU", "TanH", "Sigmoid", "AbsVal", "BNLL", "Power", "Exp", "Log", "Dropout",
    "Flatten", "Reshape", "BatchNorm", "Scale", "Bias", "Split", "Concat",
})
CLASSIFIERS = ("InnerProduct", "Convolution", "Deconvolution")
PER_CHANNEL = ("BatchNorm", "Scale", "Bias", "PReLU")   # learned per class after the classifier: renamed with it


def _producers(net) -> dict[str, list[tuple[int, Any]]]:
    """{blob: [(layer index, layer) that writes it, in order]} (in-place layers write their bottom again)."""
    out: dict[str, list[tuple[int, Any]]] = {}
    for i, layer in enumerate(net.layer):
        for top in layer.top:
            out.setdefault(top, []).append((i, layer))
    return out


def classifier_of(net, loss_index: int, where: str) -> tuple[Any, tuple[str, ...]]:
    """The layer that holds a loss's classes (an InnerProduct or Convolution), found by walking back from the loss
    through layers that keep the class axis (:data:`KEEPS_CLASSES`), and the names of the layers walked through;
    one error line naming the layer where the walk stopped."""
    producers = _producers(net)
    loss = net.layer[loss_index]
    blob, before, path = loss.bottom[0], loss_index, []
    while True:
        writers = [(i, layer) for i, layer in producers.get(blob, []) if i < before]
        if not writers:
            raise InputError(f"{where}: loss layer {loss.name!r} reads {blob!r}, which no layer before it produces")
        i, layer = writers[-1]
        if layer.type in CLASSIFIERS:
            return layer, tuple(path)
        walk = " <- ".join([loss.name, *path, layer.name])
        if layer.type not in KEEPS_CLASSES:
            raise InputError(f"{where}: the classifier of loss {loss.name!r} cannot be found: the walk {walk} stopped "
                             f"at {layer.name!r} ({layer.type}), which is neither an InnerProduct/Convolution nor a "
                             "layer that keeps the class axis")
        if layer.type == "Concat" and len(layer.bottom) != 1:
            raise InputError(f"{where}: the classifier of loss {loss.name!r} cannot be found: the walk {walk} stopped "
                             f"at Concat {layer.name!r}, which joins {len(layer.bottom)} blobs (which one holds the "
                             "classes is not known)")
        if not layer.bottom:
            raise InputError(f"{where}: the walk {walk} reached {layer.name!r} ({layer.type}), which reads nothing")
        path.append(layer.name)
        blob, before = layer.bottom[0], i


def heads_of(net, where: str) -> list[Head]:
    """Each SoftmaxWithLoss's classifier (:func:`classifier_of`: through pooling, activations, dropout, flatten,
    batch norm...) and its Accuracy outputs, in layer order; top-1/top-5 recognised by ``accuracy_param.top_k``, not
    by name."""
    heads = []
    for i, layer in enumerate(net.layer):
        if layer.type == LOSS:
            if len(layer.bottom) < 2:
                raise InputError(f"{where}: loss layer {layer.name!r} has no label bottom")
            clf, path = classifier_of(net, i, where)
            heads.append(Head(clf.name, layer.bottom[0], layer.bottom[1], _num_output(clf), path=path))
    if not heads:
        raise InputError(f"{where}: no {LOSS} layer: caffegen tunes classifiers trained with a softmax loss")
    by_blob = {h.blob: i for i, h in enumerate(heads)}
    for layer in net.layer:
        if layer.type != "Accuracy" or "TEST" not in phases(layer) or not layer.bottom:
            continue
        i = by_blob.get(layer.bottom[0])
        if i is None:
            continue
        k = layer.accuracy_param.top_k if layer.HasField("accuracy_param") else 1
        which = "top1" if k == 1 else "top5" if k == 5 else None
        if which and getattr(heads[i], which) is None:
            heads[i] = dataclasses.replace(heads[i], **{which: layer.top[0]})
    return heads


def _num_output(layer) -> int:
    param = layer.inner_product_param if layer.type == "InnerProduct" else layer.convolution_param
    return param.num_output


# ------------------------------------------------------------------------------------------ wiring


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def wire(user: UserNet, sources: DataSources | None, where: str | None = None) -> WiredNet:
    """The user's net with the sweep's data in its data layers, its classifier fitted, its metrics found."""
    from google.protobuf import text_format

    path = Path(user.prototxt)
    where = where or str(path)
    net = load_net(path)
    base = Path(user.root).expanduser() if user.root else path.parent
    notes: list[str] = []
    layers = data_layers(net, where)
    own = _own_side(layers["TEST"], base)
    val_list: Path | None = None
    for phase, layer in layers.items():
        list_path = _wire_source(layer, phase, user, sources, base, where)
        if phase == "TEST":
            val_list = list_path
        batch = user.train_batch if phase == "TRAIN" else user.test_batch
        param = layer.image_data_param if layer.type == "ImageData" else layer.data_param
        if batch is not None:
            param.batch_size = batch
        if layer.type == "ImageData" and user.resize is not None:
            param.new_height = param.new_width = user.resize
        _wire_mean(layer, user, base, where)
    reduced = _apply_crop(net, layers, user, own, where) if user.crop is not None else None
    if reduced:
        notes.append(reduced)
    test_layer = layers["TEST"]
    test_batch = (test_layer.image_data_param if test_layer.type == "ImageData" else test_layer.data_param).batch_size
    heads = _fit_classes(net, user, sources, where, notes)
    heads = _add_accuracy(net, heads, notes)
    return WiredNet(text=text_format.MessageToString(net), name=net.name or path.stem, source=path.resolve(),
                    heads=tuple(heads), notes=tuple(notes), val_list=val_list, test_batch=max(1, test_batch),
                    reduced=reduced)


def _wire_source(layer, phase: str, user: UserNet, sources: DataSources | None, base: Path,
                 where: str) -> Path | None:
    """Point one data layer at the sweep's data (or check its own sources); the list it reads, if any."""
    lst = lmdb = None
    if sources is not None:
        lst = sources.train_list if phase == "TRAIN" else sources.val_list
        lmdb = sources.train_lmdb if phase == "TRAIN" else sources.val_lmdb
    if layer.type == "Data" and user.data == "imagedata" and lst:
        _to_imagedata(layer, user.resize, phase)
    if layer.type == "ImageData":
        p = layer.image_data_param
        if lst:
            p.source, p.root_folder = str(lst), sources.root_folder if sources else ""
            return Path(lst)
        if sources is not None and lmdb:
            raise InputError(f"{where}: layer {layer.name!r} is ImageData but [data] gives only LMDBs: give list "
                             "files ([data] train_list/val_list, root or demo) for it")
        src = _resolve(base, p.source)
        if not src.is_file():
            raise InputError(f"{where}: layer {layer.name!r} reads the list {src}, which does not exist "
                             f"(give the sweep a [data] table, or [net] root = the folder its paths are relative to)")
        p.source = str(src)
        if p.root_folder:
            p.root_folder = os.path.join(str(_resolve(base, p.root_folder)), "")
        return src
    p = layer.data_param  # Data (LMDB / LevelDB)
    if lmdb:
        p.source, p.backend = str(Path(lmdb).expanduser().resolve()), 1  # LMDB
        return Path(lst) if lst else None
    if sources is not None and lst:
        raise InputError(f"{where}: layer {layer.name!r} reads an LMDB (Data): give [data] train_lmdb and val_lmdb "
                         "(made by `caffegen prepare --lmdb`), or set [net] data = \"imagedata\" and [net] resize = "
                         "N to read the sweep's lists instead")
    src = _resolve(base, p.source)
    if not src.exists():
        raise InputError(f"{where}: layer {layer.name!r} reads {src}, which does not exist "
                         f"(give the sweep a [data] table, or [net] root = the folder its paths are relative to)")
    p.source = str(src)
    return None


def _own_side(layer, base: Path) -> int | None:
    """The side of the input the net was written for (its TEST crop_size, new_height, or its LMDB's), if known."""
    try:
        return int(input_shape_of(layer, "", "", base)[2])
    except (InputError, IndexError):
        return None


MATCHING_RESIZE = 8 / 7   # resize / crop when the net says none (256 -> 224, the Model Zoo's usual ratio)
PATCH_LIMIT = 1.5         # an LMDB image larger than this x the crop would be cropped to a patch, not shrunk


def _apply_crop(net, layers: dict[str, Any], user: UserNet, own: int | None, where: str) -> str:
    """``[net] crop``: every data layer crops ``user.crop`` (ImageData resized to match: the net's own
    resize/crop ratio, or ``user.resize``), after checking that the net runs at that size; the sentence that says
    so."""
    side = int(user.crop)  # type: ignore[arg-type]
    check_input_size(net, side, own, where)
    for layer in layers.values():
        if layer.type == "Data":
            stored = lmdb_shape(layer.data_param.source)
            if stored is None or min(stored[1:]) > PATCH_LIMIT * side:
                size = f"holds {stored[1]}x{stored[2]} images" if stored else "cannot be read"
                raise InputError(f"{where}: [net] crop {side}: layer {layer.name!r} reads an LMDB that {size}: a "
                                 f"{side} crop of them is a patch, not a smaller image; set [net] data = \"imagedata\" "
                                 f"(the sweep's lists, resized to match) or make the LMDB at that size (caffegen "
                                 f"prepare --lmdb --resize {round(side * MATCHING_RESIZE)})")
        layer.transform_param.crop_size = side
        if layer.type == "ImageData":
            p = layer.image_data_param
            if user.resize is None:
                ratio = p.new_height / own if p.new_height and own else MATCHING_RESIZE
                p.new_height = p.new_width = max(side, round(side * ratio))
    resize = next((lay.image_data_param.new_height for lay in layers.values() if lay.type == "ImageData"), None)
    return (f"[net] crop {side}: the net trains and tests at {side}x{side}" + (f" (images resized to {resize})"
            if resize else "") + (f" instead of its own {own}x{own}" if own else "")
            + ": a fast, reduced-input sweep; confirm the winner at full size")


def _to_imagedata(layer, resize: int | None, phase: str) -> None:
    """A Data layer as an ImageData layer with the same name, tops, phase, transform and batch size."""
    batch = layer.data_param.batch_size
    layer.ClearField("data_param")
    layer.type = "ImageData"
    p = layer.image_data_param
    p.batch_size = batch
    p.shuffle = phase == "TRAIN"
    if resize:
        p.new_height = p.new_width = resize


def _wire_mean(layer, user: UserNet, base: Path, where: str) -> None:
    tp = layer.transform_param
    if user.mean is not None:
        tp.ClearField("mean_file")
        del tp.mean_value[:]
        tp.mean_value.extend(user.mean)
        return
    if tp.HasField("mean_file"):
        mean = _resolve(base, tp.mean_file)
        if not mean.is_file():
            raise InputError(f"{where}: layer {layer.name!r} subtracts the mean file {mean}, which does not exist: set "
                             "[net] mean = [104, 117, 123] (per-channel values, BGR) to use mean values instead, or "
                             "compute the file with `caffegen prepare --mean`")
        tp.mean_file = str(mean)


def _fit_classes(net, user: UserNet, sources: DataSources | None, where: str, notes: list[str]) -> list[Head]:
    heads = heads_of(net, where)
    data_k = sources.num_classes if sources is not None else None
    if user.num_classes and data_k and user.num_classes != data_k:
        raise InputError(f"{where}: [net] num_classes = {user.num_classes} but the data has {data_k} classes")
    want = user.num_classes or data_k
    if want is None:
        return heads
    by_name = {layer.name: layer for layer in net.layer}
    out = []
    for h in heads:
        if h.num_output == want:
            out.append(h)
            continue
        if user.num_classes is None:
            raise InputError(f"{where}: classifier {h.classifier!r} has {h.num_output} outputs but the data has "
                             f"{want} classes: set [net] num_classes = {want} to resize it")
        layer = by_name[h.classifier]
        param = layer.inner_product_param if layer.type == "InnerProduct" else layer.convolution_param
        param.num_output = want
        name = h.classifier
        if user.weights:  # Caffe copies weights by layer name: a new name makes the resized layer start fresh
            name = layer.name = f"{h.classifier}_{want}cls"
            renamed = [name]
            for between in reversed(h.path):   # per-class parameters after it (a BatchNorm, a Scale) start fresh
                other = by_name[between]
                if other.type in PER_CHANNEL and not (other.type == "PReLU" and other.prelu_param.channel_shared):
                    other.name = f"{between}_{want}cls"
                    renamed.append(other.name)
            notes.append(f"classifier {h.classifier!r} resized to {want} outputs and renamed {name!r}, so that "
                         f"-weights does not copy its {h.num_output}-class weights into it: it starts fresh"
                         + (f" (and {', '.join(repr(n) for n in renamed[1:])} after it)" if renamed[1:] else ""))
        else:
            notes.append(f"classifier {h.classifier!r} resized from {h.num_output} to {want} outputs")
        out.append(dataclasses.replace(h, classifier=name, num_output=want))
    return _drop_topk_above(net, out, want, notes)


def _drop_topk_above(net, heads: list[Head], classes: int, notes: list[str]) -> list[Head]:
    """Accuracy layers whose top_k exceeds the class count (a top-5 on 3 classes: Caffe refuses to build it, and it
    would be 1.0 anyway) leave the net, with a note."""
    blobs = {h.blob for h in heads}
    gone = [layer for layer in net.layer if layer.type == "Accuracy" and layer.bottom and layer.bottom[0] in blobs
            and layer.accuracy_param.top_k > classes]
    for layer in gone:
        net.layer.remove(layer)
    if not gone:
        return heads
    names = {layer.top[0] for layer in gone}
    notes.append(f"{', '.join(repr(layer.name) for layer in gone)} removed: top-{gone[0].accuracy_param.top_k} "
                 f"of {classes} classes is always 1")
    return [dataclasses.replace(h, top5=None if h.top5 in names else h.top5) for h in heads]


def _add_accuracy(net, heads: list[Head], notes: list[str]) -> list[Head]:
    """A net without any Accuracy layer gets TEST top-1 (and top-5 when it has more than 5 classes) on its main
    head: the sweep ranks runs by it."""
    if any(h.top1 for h in heads):
        return heads
    main = heads[-1]
    added = {"top1": accuracy_name(1)}
    if main.num_output > 5:
        added["top5"] = accuracy_name(5)
    for which, name in added.items():
        layer = net.layer.add(name=name, type="Accuracy", bottom=[main.blob, main.label], top=[name])
        layer.include.add(phase=1)  # TEST
        if which == "top5":
            layer.accuracy_param.top_k = 5
    notes.append(f"the net has no Accuracy layer: added TEST-phase {' and '.join(added.values())} on "
                 f"{main.blob!r} (runs are ranked by {added['top1']})")
    return heads[:-1] + [dataclasses.replace(main, **added)]


def sha256_of(path: str | Path | None) -> str | None:
    from ..paths import sha256_file

    return sha256_file(path) if path else None


def describe(user: UserNet) -> dict[str, Any]:
    """What the manifest and the store record of a user net: its fields, and the hashes of its files."""
    return {**dataclasses.asdict(user), "sha256": sha256_of(user.prototxt), "weights_sha256": sha256_of(user.weights)}

