"""Render the baseline net and its solver variants from the Jinja templates in ``templates/``.

The templates are data; this module turns checked options into template context and back into text:

* :class:`NetOptions` / :class:`SolverOptions` hold every knob with the seed's values as defaults and
  refuse bad input (:class:`~caffegen.errors.InputError`, one line) when they are built;
* :func:`render_net`, :func:`render_solver`, :func:`render_deploy` are pure (options -> text);
* :func:`write_variant` / :func:`write_solver_set` validate every file (caffe_pb2 schema, pycaffe
  shapes) *before* writing any of them, so a failed check leaves nothing half-written.

Paths inside the rendered files are relative to Caffe's working directory: the sweep runs
``caffe train -solver solver.prototxt`` with ``cwd`` set to the variant's folder.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import io
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .errors import InputError
from .schedule import POLICY_PARAMS, policy_defaults, resolve_policy

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(os.environ.get("CAFFEGEN_TEMPLATES") or Path(__file__).resolve().parent.parent / "templates")

SOLVER_TYPES: tuple[str, ...] = ("SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam")
SOLVER_MODES: tuple[str, ...] = ("CPU", "GPU")

# test_iter fallback when the validation list cannot be read: the seed's GHIM-10k split holds
# 20 classes x 50 images = 1000 validation images.
DEFAULT_VAL_IMAGES = 1000

# Which optimiser hyper-parameters each solver type reads, and their defaults. Caffe aborts when
# AdaGrad or RMSProp get a non-zero momentum, so those two never get one.
TYPE_DEFAULTS: dict[str, dict[str, float]] = {
    "SGD": {"momentum": 0.9},
    "Nesterov": {"momentum": 0.9},
    "AdaGrad": {"delta": 1e-8},
    "RMSProp": {"rms_decay": 0.99, "delta": 1e-8},
    "AdaDelta": {"momentum": 0.95, "delta": 1e-6},
    "Adam": {"momentum": 0.9, "momentum2": 0.999, "delta": 1e-8},
}

FILES = ("train_val.prototxt", "solver.prototxt", "deploy.prototxt")


# --------------------------------------------------------------------------------------------------
# Strings and numbers as prototxt text


def prototxt_string(value: Any) -> str:
    """``value`` as a double-quoted protobuf text-format string literal (quotes included).

    Backslash, double quote and control characters are escaped, so no path can end the literal and
    inject a field; non-ASCII text stays as UTF-8, which both caffe_pb2 and Caffe's C++ parser read back
    unchanged. A NUL byte or text that is not valid Unicode (undecodable file names) cannot be a Caffe
    path, so it is refused.
    """
    s = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if "\x00" in s:
        raise InputError(f"{s!r} contains a NUL byte, which no Caffe path or name can hold")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{s!r} is not valid UTF-8 text ({exc.reason}); rename it") from None
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def prototxt_number(value: Any) -> str:
    """Shortest text that reads back as the same number (``0.01``, ``104.0``, ``1e-05``)."""
    if isinstance(value, bool):
        raise TypeError("booleans are not numbers in prototxt")
    if isinstance(value, int):
        return str(value)
    x = float(value)
    if not math.isfinite(x):
        raise InputError(f"{value!r} is not a finite number")
    return repr(x)


def _pbool(value: Any) -> str:
    return "true" if value else "false"


@functools.lru_cache(maxsize=1)
def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(q=prototxt_string, num=prototxt_number, pbool=_pbool)
    return env


def _render(template: str, **context: Any) -> str:
    import jinja2

    try:
        return _env().get_template(template).render(**context)
    except jinja2.TemplateNotFound as exc:
        raise InputError(f"template {exc.name} not found in {TEMPLATE_DIR} (set CAFFEGEN_TEMPLATES)") from None


# --------------------------------------------------------------------------------------------------
# Options


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{name} must be an integer, got {value!r}")
    try:
        f = float(value)
    except ValueError:
        raise InputError(f"{name} must be an integer, got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if int(f) < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value!r}")
    return int(f)


def _float(name: str, value: Any, *, gt: float | None = None, ge: float | None = None,
           lt: float | None = None) -> float:
    if isinstance(value, bool):
        raise InputError(f"{name} must be a number, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(f):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if gt is not None and not f > gt:
        raise InputError(f"{name} must be > {gt:g}, got {value!r}")
    if ge is not None and not f >= ge:
        raise InputError(f"{name} must be >= {ge:g}, got {value!r}")
    if lt is not None and not f < lt:
        raise InputError(f"{name} must be < {lt:g}, got {value!r}")
    return f


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    import difflib

    by_lower = {c.lower(): c for c in choices}
    key = str(value).strip().lower()
    if key in by_lower:
        return by_lower[key]
    near = difflib.get_close_matches(key, list(by_lower), n=1, cutoff=0.0)
    hint = f"; did you mean {by_lower[near[0]]!r}?" if near else ""
    raise InputError(f"unknown {name} {value!r}{hint} (valid: {', '.join(choices)})")


def spatial_after_convs(size: int, n_convs: int) -> int:
    """Side of the feature map after ``n_convs`` 3x3, pad 1, stride 2 convolutions (224 -> 7 for 5)."""
    for _ in range(n_convs):
        size = (size + 2 * 1 - 3) // 2 + 1
    return size


@dataclass(frozen=True)
class NetOptions:
    """The knobs of the baseline net. Defaults render the seed's net exactly.

    ``resize`` is the TRAIN ImageData new_height/new_width (the random ``crop`` is taken from it);
    ``test_resize`` the TEST one (the seed resizes validation images straight to 224, so the centre crop
    is the whole image). ``backend="lmdb"`` emits Caffe ``Data`` layers reading LMDBs made beforehand
    (resizing happened then); crop, mirror and mean still apply. ``dropout`` 0 means no Dropout layer.
    ``accuracy_top_k`` ks that are not below ``num_classes`` are left out (top-k of k >= N classes is
    always 1, and Caffe aborts for k > N); top-1 is always kept.
    """

    num_classes: int = 20
    resize: int = 256
    test_resize: int = 224
    crop: int = 224
    train_batch: int = 16
    test_batch: int = 16
    mean: tuple[float, ...] = (104.0, 117.0, 124.0)
    mirror: bool = True
    train_source: str = "list_train_shuffle.txt"
    val_source: str = "list_val_shuffle.txt"
    root_folder: str = ""
    conv_widths: tuple[int, ...] = (64, 64, 128, 128, 256)
    filler_std: float = 0.01
    dropout: float = 0.0
    batchnorm: bool = False
    accuracy_phase: Literal["both", "test"] = "both"
    accuracy_top_k: tuple[int, ...] = (1, 5)
    backend: Literal["imagedata", "lmdb"] = "imagedata"
    name: str = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Coerce and check every field; raise InputError naming the first bad one."""
        set_ = functools.partial(object.__setattr__, self)
        set_("num_classes", _int("num_classes (--classes)", self.num_classes, 2))
        for name in ("resize", "test_resize", "crop", "train_batch", "test_batch"):
            set_(name, _int(name, getattr(self, name), 1))
        if self.crop > self.resize:
            raise InputError(f"crop {self.crop} is larger than resize {self.resize} (the TRAIN image side)")
        if self.crop > self.test_resize:
            raise InputError(f"crop {self.crop} is larger than test_resize {self.test_resize} (the TEST image side)")
        mean = _tuple(self.mean)
        if len(mean) not in (1, 3):
            raise InputError(f"mean takes 1 or 3 values (B,G,R), got {len(mean)}")
        set_("mean", tuple(_float("mean", m) for m in mean))
        if not isinstance(self.mirror, bool):
            raise InputError(f"mirror must be true or false, got {self.mirror!r}")
        for name in ("train_source", "val_source", "root_folder", "name"):
            value = getattr(self, name)
            if value is None and name in ("root_folder", "name"):
                value = ""  # None reads as "not set"
            value = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
            prototxt_string(value)  # refuses what cannot be escaped
            set_(name, value)
        if not self.train_source or not self.val_source:
            raise InputError("train_source and val_source must not be empty")
        widths = _tuple(self.conv_widths)
        if not 1 <= len(widths) <= 8:
            raise InputError(f"conv_widths takes 1 to 8 widths, got {len(widths)}")
        set_("conv_widths", tuple(_int("conv width", w, 1) for w in widths))
        set_("filler_std", _float("filler_std", self.filler_std, gt=0))
        set_("dropout", _float("dropout", self.dropout, ge=0, lt=1))
        if not isinstance(self.batchnorm, bool):
            raise InputError(f"batchnorm must be true or false, got {self.batchnorm!r}")
        set_("accuracy_phase", _choice("accuracy_phase", self.accuracy_phase, ("both", "test")))
        set_("accuracy_top_k", tuple(sorted({_int("accuracy top_k", k, 1) for k in _tuple(self.accuracy_top_k)} | {1})))
        set_("backend", _choice("backend", self.backend, ("imagedata", "lmdb")))
        if self.backend == "lmdb" and self.root_folder:
            raise InputError("root_folder applies to the imagedata backend only (LMDBs hold the images)")

    @property
    def pool_kernel(self) -> int:
        """Global average pooling for the crop: the feature map side after the convs (7 at 224)."""
        return spatial_after_convs(self.crop, len(self.conv_widths))

    @property
    def pool_name(self) -> str:
        return f"pool{len(self.conv_widths)}"

    @property
    def top_k(self) -> tuple[int, ...]:
        """The Accuracy layers written: top-1, and each other k below num_classes."""
        return tuple(k for k in self.accuracy_top_k if k == 1 or k < self.num_classes)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def _tuple(value: Any) -> tuple:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    try:
        return tuple(value)
    except TypeError:
        return (value,)


@dataclass(frozen=True)
class SolverOptions:
    """Every SolverParameter a tuner touches. ``None`` means "derive it" (see docs/render.md):

    * gamma / stepsize / stepvalue / power: :func:`caffegen.schedule.policy_defaults` for ``lr_policy``
      over ``max_iter``; a policy's solver carries only the parameters that policy reads;
    * test_iter: ceil(val images / test batch) from the val list (:func:`resolve_test_iter`), else
      ceil(1000 / test batch), the seed's validation set;
    * test_interval: max(1, max_iter // 20);
    * momentum / momentum2 / delta / rms_decay: per solver type, :data:`TYPE_DEFAULTS`.
    """

    base_lr: float = 0.01
    lr_policy: str = "step"
    max_iter: int = 10000
    gamma: float | None = None
    stepsize: int | None = None
    stepvalue: tuple[int, ...] | None = None
    power: float | None = None
    net: str = "train_val.prototxt"
    test_iter: int | None = None
    test_interval: int | None = None
    momentum: float | None = None
    momentum2: float | None = None
    delta: float | None = None
    rms_decay: float | None = None
    weight_decay: float = 0.0005
    type: str = "SGD"
    display: int = 20
    average_loss: int = 1
    iter_size: int = 1
    snapshot: int = 0
    snapshot_prefix: str = "snapshot"
    solver_mode: str = "CPU"
    device_id: int = 0
    random_seed: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Coerce and check every field; raise InputError naming the first bad one."""
        set_ = functools.partial(object.__setattr__, self)
        set_("base_lr", _float("base_lr (--lr)", self.base_lr, gt=0))
        set_("lr_policy", resolve_policy(self.lr_policy))
        set_("max_iter", _int("max_iter", self.max_iter, 1))
        if self.gamma is not None:
            set_("gamma", _float("gamma", self.gamma))
        if self.stepsize is not None:
            set_("stepsize", _int("stepsize", self.stepsize, 1))
        if self.stepvalue is not None:
            values = tuple(_int("stepvalue", v, 1) for v in _tuple(self.stepvalue))
            if not values:
                raise InputError("stepvalue needs at least one iteration")
            for a, b in zip(values, values[1:]):
                if b <= a:
                    raise InputError(f"stepvalue must be strictly increasing, got {','.join(map(str, values))}")
            set_("stepvalue", values)
        if self.power is not None:
            set_("power", _float("power", self.power))
        for name in ("net", "snapshot_prefix"):
            value = getattr(self, name)
            value = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
            if not value:
                raise InputError(f"{name} must not be empty")
            prototxt_string(value)
            set_(name, value)
        if self.test_iter is not None:
            set_("test_iter", _int("test_iter", self.test_iter, 1))
        if self.test_interval is not None:
            set_("test_interval", _int("test_interval", self.test_interval, 1))
        set_("type", _choice("solver type", self.type, SOLVER_TYPES))
        for name in ("momentum", "momentum2", "rms_decay"):
            if getattr(self, name) is not None:
                set_(name, _float(name, getattr(self, name), ge=0, lt=1))
        if self.delta is not None:
            set_("delta", _float("delta", self.delta, gt=0))
        if self.type in ("AdaGrad", "RMSProp") and self.momentum:
            raise InputError(f"momentum cannot be used with {self.type} (Caffe aborts); leave it unset")
        set_("weight_decay", _float("weight_decay", self.weight_decay, ge=0))
        set_("display", _int("display", self.display, 0))
        set_("average_loss", _int("average_loss", self.average_loss, 1))
        set_("iter_size", _int("iter_size", self.iter_size, 1))
        set_("snapshot", _int("snapshot", self.snapshot, 0))
        set_("solver_mode", _choice("solver_mode", self.solver_mode, SOLVER_MODES))
        set_("device_id", _int("device_id", self.device_id, 0))
        if self.random_seed is not None:
            set_("random_seed", _int("random_seed", self.random_seed, 0))
        self._check_policy(self.policy_params())

    def _check_policy(self, p: dict[str, Any]) -> None:
        pol = self.lr_policy
        if pol in ("step", "exp", "multistep") and not p["gamma"] > 0:
            raise InputError(f"lr_policy {pol} needs gamma > 0, got {p['gamma']!r}")
        if pol == "inv" and not p["gamma"] >= 0:
            raise InputError(f"lr_policy inv needs gamma >= 0, got {p['gamma']!r}")
        if pol == "poly" and not p["power"] >= 0:
            raise InputError(f"lr_policy poly needs power >= 0, got {p['power']!r}")

    def policy_params(self) -> dict[str, Any]:
        """The policy parameters this solver writes: defaults from max_iter, overridden by given values."""
        params = policy_defaults(self.lr_policy, self.max_iter)
        for key in POLICY_PARAMS[self.lr_policy]:
            value = getattr(self, key)
            if value is not None:
                params[key] = list(value) if key == "stepvalue" else value
        return params

    def type_params(self) -> dict[str, float]:
        """The optimiser hyper-parameters this solver type reads: defaults overridden by given values."""
        params = dict(TYPE_DEFAULTS[self.type])
        for key in params:
            value = getattr(self, key)
            if value is not None:
                params[key] = value
        return params

    def effective(self) -> dict[str, Any]:
        """Every field as it will be written (derived values filled in, unused ones None)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("gamma", "stepsize", "stepvalue", "power", "momentum", "momentum2", "delta", "rms_decay"):
            d[key] = None
        d.update(self.policy_params())
        d.update(self.type_params())
        if d["stepvalue"] is not None:
            d["stepvalue"] = list(d["stepvalue"])
        if d["test_interval"] is None:
            d["test_interval"] = max(1, self.max_iter // 20)
        return d


# --------------------------------------------------------------------------------------------------
# Rendering (pure)


def net_context(opts: NetOptions) -> dict[str, Any]:
    """What the net templates see: the options plus the derived layer list, pool and data layers."""
    convs, bottom = [], "data"
    for i, width in enumerate(opts.conv_widths, start=1):
        convs.append({"name": f"conv{i}", "bottom": bottom, "num_output": width,
                      "relu": f"relu{i}", "bn": f"bn{i}", "scale": f"scale{i}"})
        bottom = f"conv{i}"
    layer_type = "ImageData" if opts.backend == "imagedata" else "Data"
    data = [
        {"phase": "TRAIN", "type": layer_type, "mirror": opts.mirror, "source": opts.train_source,
         "batch": opts.train_batch, "shuffle": True, "resize": opts.resize},
        {"phase": "TEST", "type": layer_type, "mirror": False, "source": opts.val_source,
         "batch": opts.test_batch, "shuffle": False, "resize": opts.test_resize},
    ]
    ctx = opts.to_dict()
    ctx.update(convs=convs, data=data, top_k=list(opts.top_k),
               pool={"name": opts.pool_name, "bottom": bottom, "kernel": opts.pool_kernel},
               drop_name=f"drop{len(opts.conv_widths)}")
    return ctx


def render_net(opts: NetOptions | None = None) -> str:
    """train_val.prototxt text (the seed's net at defaults)."""
    return _render("train_val.prototxt.j2", net=net_context(opts or NetOptions()))


def render_deploy(opts: NetOptions | None = None) -> str:
    """deploy.prototxt text: Input [1, 3, crop, crop] -> ... -> fc -> Softmax ``prob``."""
    return _render("deploy.prototxt.j2", net=net_context(opts or NetOptions()))


def count_list(path: str | Path) -> int | None:
    """Non-blank lines of an ImageData list file, or None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError:
        return None


def resolve_test_iter(solver: SolverOptions, net: NetOptions | None = None,
                      base_dir: str | Path | None = None) -> tuple[SolverOptions, str | None]:
    """``solver`` with test_iter filled in so one test pass covers the whole validation set.

    test_iter = ceil(lines of ``net.val_source`` / ``net.test_batch``); a relative val_source is
    resolved against ``base_dir`` (Caffe's working directory; default: this process's cwd). When the
    list cannot be read (or the backend is LMDB) the fallback is ceil(1000 / test_batch), the seed's
    validation set, and the second item is a note saying so.
    """
    if solver.test_iter is not None:
        return solver, None
    net = net or NetOptions()
    source = Path(net.val_source)
    if not source.is_absolute():
        source = Path(base_dir or ".") / source
    images = count_list(source) if net.backend == "imagedata" else None
    note = None
    if not images:
        images = DEFAULT_VAL_IMAGES
        what = "an LMDB" if net.backend == "lmdb" else f"{source} not readable or empty"
        note = (f"test_iter = ceil({DEFAULT_VAL_IMAGES}/{net.test_batch}) = {math.ceil(images / net.test_batch)} "
                f"(fallback: {what}; pass --test-iter to set it)")
    return dataclasses.replace(solver, test_iter=math.ceil(images / net.test_batch)), note


def solver_context(opts: SolverOptions) -> dict[str, Any]:
    """What solver.prototxt.j2 sees: :meth:`SolverOptions.effective` (test_iter must be set)."""
    if opts.test_iter is None:
        raise ValueError("test_iter is unresolved: call resolve_test_iter first")
    return opts.effective()


def render_solver(opts: SolverOptions | None = None, net: NetOptions | None = None,
                  base_dir: str | Path | None = None) -> str:
    """solver.prototxt text. An unset test_iter is derived via :func:`resolve_test_iter` (the fallback
    note is logged at debug level here; :func:`write_variant` and the CLI report it)."""
    opts, note = resolve_test_iter(opts or SolverOptions(), net, base_dir)
    if note:
        log.debug(note)
    return _render("solver.prototxt.j2", s=solver_context(opts))


# --------------------------------------------------------------------------------------------------
# Writing (validate everything first, then write)


def _write_all(files: dict[Path, str]) -> None:
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


def write_variant(out_dir: str | Path, net: NetOptions, solver: SolverOptions, validate: bool = True,
                  pycaffe_check: bool = True) -> dict[str, Path]:
    """Render, validate, then write ``train_val.prototxt``, ``solver.prototxt``, ``deploy.prototxt``.

    The solver's ``net`` becomes ``train_val.prototxt`` (relative): run caffe with ``cwd=out_dir``, which
    the list sources need anyway, and the folder stays relocatable. Nothing is written when a check fails.
    """
    out = Path(out_dir)
    solver = dataclasses.replace(solver, net="train_val.prototxt")
    solver, note = resolve_test_iter(solver, net, out)
    if note:
        log.warning(note)
    texts = {
        "train_val.prototxt": ("net", render_net(net)),
        "solver.prototxt": ("solver", render_solver(solver)),
        "deploy.prototxt": ("net", render_deploy(net)),
    }
    if validate:
        from .validate import check_net_shapes, check_text

        for name, (kind, text) in texts.items():
            check_text(text, kind, str(out / name))
        if pycaffe_check:
            check_net_shapes(texts["train_val.prototxt"][1], net, deploy_text=texts["deploy.prototxt"][1],
                             where=str(out / "train_val.prototxt"))
    paths = {name: out / name for name in texts}
    _write_all({paths[name]: text for name, (_, text) in texts.items()})
    return paths


def variant_name(base_lr: float, policy: str, solver_type: str = "SGD") -> str:
    """Stable, readable file stem: ``lr0.01_step`` (``_adam`` etc. appended for non-SGD types)."""
    name = f"lr{base_lr:g}_{policy}"
    if solver_type != "SGD":
        name += f"_{solver_type.lower()}"
    return name


INDEX_FIELDS = ("name", "file", "base_lr", "lr_policy", "gamma", "stepsize", "stepvalue", "power", "max_iter",
                "type", "momentum", "momentum2", "delta", "rms_decay", "weight_decay", "test_iter",
                "test_interval", "snapshot_prefix")


def write_solver_set(out_dir: str | Path, net: NetOptions, base: SolverOptions, lrs: list[float],
                     policies: list[str], validate: bool = True, pycaffe_check: bool = True) -> list[dict[str, Any]]:
    """One solver per (lr, policy) in ``out_dir`` plus ``train_val.prototxt`` and ``index.csv``/``index.json``.

    Each solver is ``<name>.prototxt`` (:func:`variant_name`) with ``net: "train_val.prototxt"`` and
    ``snapshot_prefix: "<name>"`` (``"<prefix>_<name>"`` for a non-default prefix): run ``caffe train -solver <name>.prototxt`` with cwd = ``out_dir``.
    Everything is rendered and validated before the first file is written.
    """
    out = Path(out_dir)
    lrs = [_float("base_lr (--lr)", lr, gt=0) for lr in lrs]
    if not lrs:
        raise InputError("no learning rate given")
    base, note = resolve_test_iter(dataclasses.replace(base, net="train_val.prototxt"), net, out)
    if note:
        log.warning(note)
    net_text = render_net(net)
    solvers: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for lr in lrs:
        for policy in policies:
            name = variant_name(lr, resolve_policy(policy), base.type)
            if name in solvers:
                raise InputError(f"two variants would both be written as {name}.prototxt (duplicate --lr?)")
            prefix = name if base.snapshot_prefix == "snapshot" else f"{base.snapshot_prefix}_{name}"
            opts = dataclasses.replace(base, base_lr=lr, lr_policy=policy, snapshot_prefix=prefix)
            solvers[name] = render_solver(opts)
            eff = opts.effective()
            rows.append({"name": name, "file": f"{name}.prototxt", **{k: eff[k] for k in INDEX_FIELDS[2:]}})
    if validate:
        from .validate import check_net_shapes, check_text

        check_text(net_text, "net", str(out / "train_val.prototxt"))
        for name, text in solvers.items():
            check_text(text, "solver", str(out / f"{name}.prototxt"))
        if pycaffe_check:
            check_net_shapes(net_text, net, where=str(out / "train_val.prototxt"))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=INDEX_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else ",".join(map(str, v)) if isinstance(v, list) else v)
                         for k, v in row.items()})
    files = {out / "train_val.prototxt": net_text}
    files.update({out / f"{name}.prototxt": text for name, text in solvers.items()})
    files[out / "index.json"] = json.dumps({"net": net.to_dict(), "variants": rows}, indent=2) + "\n"
    files[out / "index.csv"] = buf.getvalue()
    _write_all(files)
    return rows


def parse_lrs(spec: str) -> list[float]:
    """``"0.1,0.01,0.001"`` -> learning rates, each a finite number > 0 (else one InputError line)."""
    return [_float("--lr", lr, gt=0) for lr in parse_floats(spec, "--lr")]


def parse_floats(spec: str, what: str = "--lr") -> list[float]:
    """``"0.1,0.01,1e-3"`` -> floats; anything that is not a number is one clear InputError."""
    items = [s for s in re.split(r"[,\s]+", str(spec).strip()) if s]
    if not items:
        raise InputError(f"{what} needs at least one number")
    out = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise InputError(f"{what}: {item!r} is not a number") from None
        out.append(value)
    return out
