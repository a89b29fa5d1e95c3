"""Check rendered prototxt with Caffe itself before anything is written or run.

Two levels, both against the real Caffe:

* :func:`check_text` parses with Caffe's own schema (``caffe_pb2`` + ``google.protobuf.text_format``):
  unknown fields, bad enums and malformed text fail with the parser's ``line:col`` message;
* :func:`check_net_shapes` builds the net with pycaffe in TRAIN and TEST (and the deploy net) on a
  one-image list and checks the shapes: data is N x 3 x crop x crop, the last pool is 1x1 (global),
  fc is N x num_classes.

pycaffe runs in a child process (``python -c``): a failed Caffe ``CHECK`` aborts the whole process
(SIGABRT), and it must end up as one :class:`~caffegen.errors.ValidationError` line, not a crash.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import InputError, ValidationError

if TYPE_CHECKING:
    from .options import NetOptions

PROBE_BATCH = 2  # batch size of the probe nets: shapes do not depend on it beyond N, memory does
_PROBE_MARK = "CAFFEGEN_PROBE "
_GLOG_FATAL = re.compile(r"^F\d{4,8} [\d:.]+\s+\d+ [^\]]*\] (.*)$")


def _message(kind: str):
    from ..toolchain import caffe_pb2

    pb2 = caffe_pb2()
    return pb2.NetParameter() if kind == "net" else pb2.SolverParameter()


def parse_text(text: str, kind: Literal["net", "solver"], where: str = "<text>"):
    """The parsed ``NetParameter`` / ``SolverParameter``; ValidationError (one line) when it does not parse."""
    from google.protobuf import text_format

    if kind not in ("net", "solver"):
        raise ValueError(f"kind must be 'net' or 'solver', not {kind!r}")
    msg = _message(kind)
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as exc:
        detail = " ".join(str(exc).split())
        raise ValidationError(f"{where}: not a valid Caffe {kind} prototxt: {detail}") from None
    return msg


def parse_file(path: str | Path, kind: Literal["net", "solver"]):
    """:func:`parse_text` of a file; a file that cannot be read is one InputError line too."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {kind}: {exc.strerror or exc}") from None
    return parse_text(text, kind, str(path))


def check_text(text: str, kind: Literal["net", "solver"], where: str = "<text>") -> None:
    """Raise ValidationError when ``text`` is not a valid Caffe net/solver (caffe.proto schema)."""
    msg = parse_text(text, kind, where)
    if kind == "net" and not msg.layer:
        raise ValidationError(f"{where}: net has no layers")
    if kind == "solver":
        missing = [f for f in ("base_lr", "max_iter", "lr_policy") if not msg.HasField(f)]
        if not (msg.HasField("net") or msg.HasField("net_param") or msg.HasField("train_net")):
            missing.append("net")
        if missing:
            raise ValidationError(f"{where}: solver lacks {', '.join(missing)}")


def _tiny_list(folder: Path) -> Path:
    """One small JPEG and an ImageData list naming it by absolute path."""
    from PIL import Image

    img = folder / "probe.jpg"
    Image.new("RGB", (48, 40), (120, 60, 200)).save(img, quality=90)
    lst = folder / "probe_list.txt"
    lst.write_text(f"{img} 0\n")
    return lst


def probe_net_text(net_text: str, opts: NetOptions, list_path: Path) -> str:
    """The train_val net rewired to a tiny list: every data layer becomes ImageData on ``list_path``.

    ImageData layers keep their transform and resize, with source/root_folder/batch replaced. LMDB
    ``Data`` layers become ImageData resizing to ``resize`` (TRAIN) / ``test_resize`` (TEST), the sizes
    the LMDBs were made at, so every shape downstream is the one training will see.
    """
    from google.protobuf import text_format

    msg = parse_text(net_text, "net")
    for layer in msg.layer:
        if layer.type not in ("ImageData", "Data"):
            continue
        is_test = any(rule.phase == 1 for rule in layer.include)
        if layer.type == "Data":
            layer.type = "ImageData"
            layer.ClearField("data_param")
            layer.image_data_param.new_height = layer.image_data_param.new_width = (
                opts.test_resize if is_test else opts.resize)
        p = layer.image_data_param
        p.source = str(list_path)
        p.root_folder = ""
        p.batch_size = PROBE_BATCH
    return text_format.MessageToString(msg)


def _probe_main(argv: list[str]) -> None:
    """Child side: build each (path, phase[, weights[, forward]]) net with pycaffe (copying the weights into it:
    Caffe's own check that they fit; running one forward pass when asked) and print its blob shapes as JSON."""
    jobs = json.loads(argv[1])
    from caffegen.toolchain import import_caffe

    caffe = import_caffe()
    caffe.set_mode_cpu()
    shapes = []
    for path, phase, *more in jobs:
        weights, forward = (more + [None, False])[:2]
        net = caffe.Net(path, getattr(caffe, phase))
        if weights:
            net.copy_from(weights)
        if forward:
            net.forward()
        shapes.append({name: list(blob.data.shape) for name, blob in net.blobs.items()})
        del net
    sys.stdout.write(_PROBE_MARK + json.dumps(shapes) + "\n")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: pycaffe's static destructors are slow and noisy


def failure_line(stderr: str, returncode: int) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        m = _GLOG_FATAL.match(ln)
        if m:
            return m.group(1)
    for ln in reversed(lines):
        if not ln.startswith(("*** ", "@ ", "File ", "Traceback")):
            return ln
    return f"pycaffe exited with status {returncode}"


def run_probe(jobs: list[tuple], timeout: float = 600) -> list[dict[str, list[int]]]:
    """Build each (prototxt path, "TRAIN"|"TEST"[, weights[, forward]]) net in one pycaffe child; shapes per job, in
    order."""
    from ..toolchain import locate

    inst = locate()
    env = inst.env(threads=1)
    env.setdefault("GLOG_minloglevel", "2")
    here = str(Path(__file__).resolve().parents[2])  # the folder holding the caffegen package
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    code = "import sys; from caffegen.prototxt.validate import _probe_main; _probe_main(sys.argv)"
    try:
        proc = subprocess.run([sys.executable, "-c", code, json.dumps(jobs)], capture_output=True, text=True,
                              env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ValidationError(f"pycaffe did not build the net within {timeout:.0f} s") from None
    for line in proc.stdout.splitlines():
        if line.startswith(_PROBE_MARK) and proc.returncode == 0:
            return json.loads(line[len(_PROBE_MARK):])
    raise ValidationError(failure_line(proc.stderr, proc.returncode))


def check_shapes(shapes: dict[str, list[int]], opts: NetOptions, batch: int, where: str) -> None:
    """data N x 3 x crop x crop, last pool N x C x 1 x 1, fc N x num_classes."""
    want = {
        "data": [batch, 3, opts.crop, opts.crop],
        opts.pool_name: [batch, opts.conv_widths[-1], 1, 1],
        "fc": [batch, opts.num_classes],
    }
    for blob, shape in want.items():
        got = shapes.get(blob)
        if got != shape:
            raise ValidationError(f"{where}: blob {blob!r} has shape {got}, expected {shape}")


def check_net_shapes(net_text: str, opts: NetOptions, *, deploy_text: str | None = None,
                     where: str = "train_val.prototxt") -> dict[str, dict[str, list[int]]]:
    """Build the net with pycaffe in TRAIN and TEST (and ``deploy_text`` if given) and check its shapes.

    The data layers are pointed at a one-image temporary list (:func:`probe_net_text`) with batch
    :data:`PROBE_BATCH`; returns the blob shapes per phase ("TRAIN", "TEST", "deploy").
    """
    with tempfile.TemporaryDirectory(prefix="caffegen-probe-") as tmp:
        folder = Path(tmp)
        lst = _tiny_list(folder)
        probe = folder / "train_val.prototxt"
        probe.write_text(probe_net_text(net_text, opts, lst), encoding="utf-8")
        jobs = [(str(probe), "TRAIN"), (str(probe), "TEST")]
        if deploy_text is not None:
            dep = folder / "deploy.prototxt"
            dep.write_text(deploy_text, encoding="utf-8")
            jobs.append((str(dep), "TEST"))
        try:
            shapes = run_probe(jobs)
        except ValidationError as exc:
            raise ValidationError(f"{where}: pycaffe could not build the net: {exc}") from None
    result = {"TRAIN": shapes[0], "TEST": shapes[1]}
    check_shapes(result["TRAIN"], opts, PROBE_BATCH, f"{where} (TRAIN)")
    check_shapes(result["TEST"], opts, PROBE_BATCH, f"{where} (TEST)")
    if deploy_text is not None:
        result["deploy"] = shapes[2]
        _check_deploy_shapes(shapes[2], opts, "deploy.prototxt")
    return result


def _check_deploy_shapes(shapes: dict[str, list[int]], opts: NetOptions, where: str) -> None:
    check_shapes(shapes, opts, 1, where)
    if shapes.get("prob") != [1, opts.num_classes]:
        raise ValidationError(f"{where}: blob 'prob' has shape {shapes.get('prob')}, expected [1, {opts.num_classes}]")


def check_deploy(deploy_text: str, opts: NetOptions, where: str = "deploy.prototxt") -> dict[str, list[int]]:
    """Load a deploy net with pycaffe and check data [1,3,crop,crop], 1x1 pool, fc and prob [1, classes]."""
    with tempfile.TemporaryDirectory(prefix="caffegen-probe-") as tmp:
        dep = Path(tmp) / "deploy.prototxt"
        dep.write_text(deploy_text, encoding="utf-8")
        try:
            (shapes,) = run_probe([(str(dep), "TEST")])
        except ValidationError as exc:
            raise ValidationError(f"{where}: pycaffe could not build the net: {exc}") from None
    _check_deploy_shapes(shapes, opts, where)
    return shapes


def check_user_net(net_text: str, deploy_text: str | None, weights: str | None, where: str) -> None:
    """Build a user's wired net with pycaffe in TRAIN (copying ``weights`` into it) and TEST on its real data, at
    a batch of :data:`PROBE_BATCH`, and its deploy form: a layer type this Caffe lacks, a shape error, a missing
    Python module or weights that do not fit become one ValidationError line."""
    from google.protobuf import text_format

    if weights and not Path(weights).is_file():
        raise ValidationError(f"{where}: weights file not found: {weights}")
    msg = parse_text(net_text, "net", where)
    for layer in msg.layer:
        if layer.type == "ImageData":
            layer.image_data_param.batch_size = PROBE_BATCH
        elif layer.type == "Data":
            layer.data_param.batch_size = PROBE_BATCH
    with tempfile.TemporaryDirectory(prefix="caffegen-probe-") as tmp:
        probe = Path(tmp) / "train_val.prototxt"
        probe.write_text(text_format.MessageToString(msg), encoding="utf-8")
        jobs: list[tuple] = [(str(probe), "TRAIN", weights), (str(probe), "TEST")]
        if deploy_text is not None:
            dep = Path(tmp) / "deploy.prototxt"
            dep.write_text(deploy_text, encoding="utf-8")
            jobs.append((str(dep), "TEST", None, True))
        try:
            run_probe(jobs)
        except ValidationError as exc:
            what = "the weights do not fit the net" if "Cannot copy param" in str(exc) else "pycaffe could not build the net"
            raise ValidationError(f"{where}: {what}: {exc}") from None


def check_forward(deploy_text: str, where: str) -> dict[str, list[int]]:
    """Load a deploy net in pycaffe and run one forward pass (zeros in): the blob shapes, or one error line."""
    with tempfile.TemporaryDirectory(prefix="caffegen-probe-") as tmp:
        dep = Path(tmp) / "deploy.prototxt"
        dep.write_text(deploy_text, encoding="utf-8")
        try:
            (shapes,) = run_probe([(str(dep), "TEST", None, True)])
        except ValidationError as exc:
            raise ValidationError(f"{where}: pycaffe could not run the net: {exc}") from None
    return shapes
