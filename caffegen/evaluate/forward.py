"""The forward pass of an evaluation: a run's ``train_val.prototxt`` in TEST phase with a snapshot's weights, batch by
batch in a pycaffe child process (a Caffe CHECK failure aborts its process: here it becomes one error line, and
the caller's process stays alive).

:func:`eval_net` rewrites the TEST data layer (pure): an ``ImageData`` layer reads ``--list`` (or the val list it
already reads) in order, ``shuffle: false``, so row *i* of the scores is line *i* of the list; a ``Data`` (LMDB)
layer is read as it is. The batches past the last image wrap around to the first ones (as Caffe's layers do);
:func:`forward` keeps the first ``images`` rows only, so every image counts exactly once.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import CaffegenError, InputError
from ..layout import TRAIN_VAL
from ..prototxt.netread import data_layers
from ..prototxt.usernet import Head, heads_of

__all__ = ["EvalNet", "eval_net", "forward", "Scores"]

_MARK = "@@caffegen-eval "


@dataclass(frozen=True)
class EvalNet:
    """The TEST-phase net an evaluation runs: its text, what it reads, and the blobs it scores with."""

    text: str
    head: Head                      # the main (last) classifier head: its scores blob and label blob
    batch: int
    list_file: Path | None          # the ImageData list it reads in order (None: an LMDB)
    root_folder: str
    lmdb: str | None = None


def eval_net(train_val: str, run_dir: Path, list_file: Path | None = None, where: str = TRAIN_VAL) \
        -> EvalNet:
    """``train_val``'s text with its TEST data layer reading ``list_file`` (or its own source) in order."""
    from google.protobuf import text_format

    from ..prototxt.validate import parse_text

    net = parse_text(train_val, "net", where)
    layer = data_layers(net, where)["TEST"]
    head = heads_of(net, where)[-1]
    if layer.type == "ImageData":
        p = layer.image_data_param
        if list_file is not None:
            p.source = str(Path(list_file).resolve())
        p.shuffle = False
        source = Path(p.source) if Path(p.source).is_absolute() else Path(run_dir) / p.source
        return EvalNet(text_format.MessageToString(net), head, p.batch_size, source, p.root_folder)
    if list_file is not None:
        raise InputError(f"{where}: its TEST data layer {layer.name!r} reads an LMDB ({layer.data_param.source}); "
                         "--list needs an ImageData layer (evaluate without --list to use the LMDB)")
    return EvalNet(text_format.MessageToString(net), head, layer.data_param.batch_size, None, "",
                   lmdb=layer.data_param.source)


@dataclass
class Scores:
    """What the forward pass saw: the classifier's raw scores (images x classes) and each image's label."""

    scores: np.ndarray
    labels: np.ndarray
    device: str

    @property
    def probs(self) -> np.ndarray:
        """Softmax of the scores (what the net's SoftmaxWithLoss turns them into)."""
        z = self.scores - self.scores.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


def forward(net: EvalNet, weights: Path, run_dir: Path, images: int, work: Path, *, gpu: int | None = None,
            progress: Callable[[int, int], None] | None = None, timeout: float | None = None) -> Scores:
    """Run ``net`` with ``weights`` over its first ``images`` images, in a pycaffe child whose working directory is
    the run folder (where the net's relative paths point, as in ``caffe train``). ``work`` receives the net it ran
    (``net.prototxt``)."""
    from ..prototxt.validate import failure_line
    from ..toolchain import locate

    run_dir = Path(run_dir).resolve()
    iters = math.ceil(images / net.batch)
    work = Path(work).resolve()  # the child runs in the run folder: every path it gets is absolute
    net_path, out = work / "net.prototxt", work / "forward.npz"
    net_path.write_text(net.text, encoding="utf-8")
    job = {"net": str(net_path), "weights": str(Path(weights).resolve()), "iters": iters, "scores": net.head.blob,
           "label": net.head.label, "out": str(out), "gpu": gpu}
    inst = locate()
    env = inst.env()
    env.setdefault("GLOG_minloglevel", "2")
    here = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    code = "import sys; from caffegen.evaluate.forward import _child; _child(sys.argv)"
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(job)], cwd=run_dir, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    import threading

    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)  # never blocks the child
    reader.start()
    device = "CPU"
    try:
        for line in proc.stdout:
            if not line.startswith(_MARK):
                continue
            kind, *rest = line[len(_MARK):].split()
            if kind == "device":
                device = " ".join(rest)
            elif kind == "batch" and progress is not None:
                progress(int(rest[0]), iters)
        rc = proc.wait(timeout=timeout)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    reader.join(timeout=5)
    if rc != 0 or not out.exists():
        raise CaffegenError(f"evaluate: pycaffe failed on {run_dir.name}: {failure_line(''.join(err), rc)}")
    with np.load(out) as z:
        scores, labels = z["scores"][:images], z["labels"][:images]
    out.unlink()
    if scores.ndim > 2 and int(np.prod(scores.shape[2:])) != 1:
        raise InputError(f"evaluate: the classifier blob {net.head.blob!r} has shape {list(scores.shape[1:])} per "
                         "image: caffegen evaluates one class score vector per image")
    return Scores(scores.reshape(len(scores), -1).astype(np.float64), labels.reshape(-1).astype(np.int64), device)


def _child(argv: list[str]) -> None:
    """Child side: build the net with the weights, forward ``iters`` batches, save scores and labels."""
    job = json.loads(argv[1])
    from caffegen.toolchain import import_caffe

    caffe = import_caffe()
    if job["gpu"] is not None:
        caffe.set_mode_gpu()
        caffe.set_device(int(job["gpu"]))
        print(f"{_MARK}device GPU {job['gpu']}", flush=True)
    else:
        caffe.set_mode_cpu()
        print(f"{_MARK}device CPU", flush=True)
    net = caffe.Net(job["net"], caffe.TEST, weights=job["weights"])
    scores, labels = [], []
    for i in range(job["iters"]):
        net.forward()
        scores.append(net.blobs[job["scores"]].data.copy())
        labels.append(net.blobs[job["label"]].data.copy())
        print(f"{_MARK}batch {i + 1}", flush=True)
    np.savez(job["out"], scores=np.concatenate(scores), labels=np.concatenate(labels))
    sys.stdout.flush()
    os._exit(0)  # skip pycaffe's slow, noisy teardown
