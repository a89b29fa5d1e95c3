"""The knobs of the baseline net (:class:`NetOptions`) and of a solver (:class:`SolverOptions`).

Each field carries its default and its one-line help (``knob``), so that ``caffegen render --help``, the sweep
spec's checks and the docs all read them from here: the CLI generates its options from these fields
(:mod:`caffegen.commands.options`) and never restates a default. Building an instance coerces and checks every
value and refuses bad input with one :class:`~caffegen.errors.InputError` line naming the field.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass
from typing import Any, Literal

from ..layout import LIST_TRAIN, LIST_VAL
from ..errors import InputError
from ..checks import as_choice, as_float, as_int, as_tuple
from .chains import (CHAINED, base_of, chain_defaults, chain_lr, chained, check_params, pieces, resolve_schedule,
                     schedule_knobs, schedule_params)
from .knobs import coerce, knob, merged
from .schedule import POLICIES, POLICY_FIELDS, POLICY_PARAMS, check_policy, learning_rate, policy_defaults
from .text import prototxt_string

__all__ = ["NetOptions", "SolverOptions", "SCHEDULE_KNOBS", "SOLVER_TYPES", "SOLVER_MODES", "TYPE_DEFAULTS", "DEFAULT_VAL_IMAGES",
           "knob", "test_iter_for", "Coverage", "coverage", "coverage_note", "variant_name", "spatial_after_convs"]

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


def _type_default_text(name: str) -> str:
    """``0.9 (AdaDelta 0.95)``: the per-type defaults of one optimiser field, from :data:`TYPE_DEFAULTS`."""
    by_value: dict[float, list[str]] = {}
    for solver_type, params in TYPE_DEFAULTS.items():
        if name in params:
            by_value.setdefault(params[name], []).append(solver_type)
    common = max(by_value, key=lambda v: len(by_value[v]))
    others = ", ".join(f"{' '.join(types)} {v:g}" for v, types in by_value.items() if v != common)
    return f"{common:g}" + (f" ({others})" if others else "")


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

    num_classes: int = knob(20, "Number of classes: fc outputs (>= 2).", flag="--classes")
    resize: int = knob(256, "TRAIN ImageData new_height/new_width; the random crop is taken from it.")
    test_resize: int = knob(224, "TEST ImageData new_height/new_width (the seed resizes straight to 224).")
    crop: int = knob(224, "crop_size, <= both resizes; the last pool's kernel = the feature side after the convs "
                          "(7 at 224).")
    train_batch: int = knob(16, "TRAIN batch_size.")
    test_batch: int = knob(16, "TEST batch_size (also sets the derived test_iter).")
    mean: tuple[float, ...] = knob((104.0, 117.0, 124.0), "mean_value per channel (B,G,R), or one value.")
    mirror: bool = knob(True, "Random mirror in TRAIN.")
    train_source: str = knob(LIST_TRAIN, "TRAIN list file (LMDB folder with --backend lmdb).")
    val_source: str = knob(LIST_VAL, "TEST list file (LMDB folder with --backend lmdb).")
    root_folder: str = knob("", "ImageData root_folder prefixed to list paths (written only when set).")
    conv_widths: tuple[int, ...] = knob((64, 64, 128, 128, 256), "num_output of conv1..convK (3x3, pad 1, stride 2).")
    filler_std: float = knob(0.01, "std of the conv weights' gaussian filler.")
    dropout: float = knob(0.0, "Dropout ratio before fc; 0 writes no Dropout layer.")
    batchnorm: bool = knob(False, "BatchNorm + Scale after each conv (conv bias dropped).")
    accuracy_phase: Literal["both", "test"] = knob("both", "Accuracy layers in 'both' phases (the seed) or 'test' only.")
    accuracy_top_k: tuple[int, ...] = knob((1, 5), "Accuracy top_k values; k >= --classes are left out (1 is kept).",
                                           flag="--top-k")
    backend: Literal["imagedata", "lmdb"] = knob("imagedata", "'imagedata' (list files) or 'lmdb' (Caffe Data layers, "
                                                              "resized beforehand).")
    name: str = knob("", "Net name (no name: line when empty, like the seed).")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Coerce and check every field; raise InputError naming the first bad one."""
        set_ = functools.partial(object.__setattr__, self)
        set_("num_classes", as_int("num_classes (--classes)", self.num_classes, 2))
        for name in ("resize", "test_resize", "crop", "train_batch", "test_batch"):
            set_(name, as_int(name, getattr(self, name), 1))
        if self.crop > self.resize:
            raise InputError(f"crop {self.crop} is larger than resize {self.resize} (the TRAIN image side)")
        if self.crop > self.test_resize:
            raise InputError(f"crop {self.crop} is larger than test_resize {self.test_resize} (the TEST image side)")
        mean = as_tuple(self.mean)
        if len(mean) not in (1, 3):
            raise InputError(f"mean takes 1 or 3 values (B,G,R), got {len(mean)}")
        set_("mean", tuple(as_float("mean", m) for m in mean))
        for name in ("mirror", "batchnorm"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("train_source", "val_source", "root_folder", "name"):
            value = getattr(self, name)
            if value is None and name in ("root_folder", "name"):
                value = ""  # None reads as "not set"
            value = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
            prototxt_string(value)  # refuses what cannot be escaped
            set_(name, value)
        if not self.train_source or not self.val_source:
            raise InputError("train_source and val_source must not be empty")
        widths = as_tuple(self.conv_widths)
        if not 1 <= len(widths) <= 8:
            raise InputError(f"conv_widths takes 1 to 8 widths, got {len(widths)}")
        set_("conv_widths", tuple(as_int("conv width", w, 1) for w in widths))
        set_("filler_std", as_float("filler_std", self.filler_std, gt=0))
        set_("dropout", as_float("dropout", self.dropout, ge=0, lt=1))
        set_("accuracy_phase", as_choice("accuracy_phase", self.accuracy_phase, ("both", "test")))
        set_("accuracy_top_k", tuple(sorted({as_int("accuracy top_k", k, 1) for k in as_tuple(self.accuracy_top_k)}
                                            | {1})))
        set_("backend", as_choice("backend", self.backend, ("imagedata", "lmdb")))
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


@dataclass(frozen=True)
class _SolverFields:
    """The solver's own fields (:data:`SolverOptions` puts each schedule's knobs after ``max_iter``)."""

    base_lr: float = knob(0.01, "base_lr (> 0).", flag="--lr")
    lr_policy: str = knob("step", f"lr_policy: {', '.join(POLICIES)} (Caffe's own), or a schedule Caffe lacks, run "
                                  f"as a chain of segments: {', '.join(CHAINED)}, <any>+warmup.", flag="--policy")
    max_iter: int = knob(10000, "Iterations (>= 1); the policy defaults scale with it.")
    warmup_iter: int | None = knob(None, "<schedule>+warmup: iterations of the linear warm-up.", derived="N/20")
    warmup_start: float | None = knob(None, "<schedule>+warmup: where the warm-up starts, as a fraction of the "
                                            "schedule's value.", derived="0.1")
    net: str = knob("train_val.prototxt", "The net the solver trains (relative to caffe's working directory).")
    test_iter: int | None = knob(None, "Test batches per test pass; derived from the val list so the whole set is "
                                       f"covered; ceil({DEFAULT_VAL_IMAGES}/test batch) when the list is not readable.",
                                 derived="ceil(val lines/test batch)")
    test_interval: int | None = knob(None, "Test every this many iterations.", derived="max(1, N//20)")
    test_initialization: bool | None = knob(None, "Test at iteration 0 too (Caffe's default: yes).", derived="yes")
    momentum: float | None = knob(None, "SGD/Nesterov/Adam/AdaDelta momentum; AdaGrad/RMSProp take none.",
                                  derived=_type_default_text("momentum"))
    momentum2: float | None = knob(None, "Adam's second moment decay.", derived=_type_default_text("momentum2"))
    delta: float | None = knob(None, "AdaGrad/RMSProp/AdaDelta/Adam delta.", derived=_type_default_text("delta"))
    rms_decay: float | None = knob(None, "RMSProp rms_decay.", derived=_type_default_text("rms_decay"))
    weight_decay: float = knob(0.0005, "weight_decay.")
    type: str = knob("SGD", f"Solver type: {', '.join(SOLVER_TYPES)}.")
    display: int = knob(20, "Log train loss and lr every this many iterations (0: never).")
    average_loss: int = knob(1, "Displayed loss averaged over this many iterations.")
    iter_size: int = knob(1, "Accumulate gradients over this many batches per iteration.")
    snapshot: int = knob(0, "Snapshot every this many iterations (0: only the final one).")
    snapshot_prefix: str = knob("snapshot", "Snapshot file prefix (relative to caffe's cwd).")
    solver_mode: str = knob("CPU", "CPU or GPU.")
    device_id: int = knob(0, "GPU id (written only with --solver-mode GPU).")
    random_seed: int | None = knob(None, "Seed for weight init and shuffling; unset: Caffe picks one.",
                                   derived="unset")


class _Solver:
    """Every SolverParameter a tuner touches. ``None`` means "derive it" (see docs/render.md):

    * a schedule's knobs (gamma, stepsize, ..., min_lr, max_lr, period, ...): its own defaults over ``max_iter``
      (:func:`~caffegen.prototxt.schedule.policy_defaults`, :func:`~caffegen.prototxt.chains.chain_defaults`); a
      policy's solver carries only the parameters that policy reads;
    * test_iter: ceil(val images / test batch) from the val list (``caffegen.prototxt.files.resolve_test_iter``),
      else ceil(1000 / test batch), the seed's validation set (:func:`test_iter_for`);
    * test_interval: max(1, max_iter // 20);
    * momentum / momentum2 / delta / rms_decay: per solver type, :data:`TYPE_DEFAULTS`.
    """

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Coerce and check every field; raise InputError naming the first bad one."""
        set_ = functools.partial(object.__setattr__, self)
        set_("base_lr", as_float("base_lr (--lr)", self.base_lr, gt=0))
        set_("lr_policy", resolve_schedule(self.lr_policy))
        set_("max_iter", as_int("max_iter", self.max_iter, 1))
        for f in _SCHEDULE_KNOBS:
            set_(f.name, coerce(f.name, str(f.type), getattr(self, f.name), f.metadata.get("minimum")))
        if self.warmup_start is not None:
            set_("warmup_start", as_float("warmup_start", self.warmup_start, ge=0))
        if self.warmup_iter is not None:
            set_("warmup_iter", as_int("warmup_iter", self.warmup_iter, 1))
        for name in ("net", "snapshot_prefix"):
            value = getattr(self, name)
            value = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
            if not value:
                raise InputError(f"{name} must not be empty")
            prototxt_string(value)
            set_(name, value)
        if self.test_iter is not None:
            set_("test_iter", as_int("test_iter", self.test_iter, 1))
        if self.test_interval is not None:
            set_("test_interval", as_int("test_interval", self.test_interval, 1))
        if self.test_initialization is not None and not isinstance(self.test_initialization, bool):
            raise InputError(f"test_initialization must be true or false, got {self.test_initialization!r}")
        set_("type", as_choice("solver type", self.type, SOLVER_TYPES))
        for name in ("momentum", "momentum2", "rms_decay"):
            if getattr(self, name) is not None:
                set_(name, as_float(name, getattr(self, name), ge=0, lt=1))
        if self.delta is not None:
            set_("delta", as_float("delta", self.delta, gt=0))
        if self.type in ("AdaGrad", "RMSProp") and self.momentum:
            raise InputError(f"momentum cannot be used with {self.type} (Caffe aborts); leave it unset")
        set_("weight_decay", as_float("weight_decay", self.weight_decay, ge=0))
        set_("display", as_int("display", self.display, 0))
        set_("average_loss", as_int("average_loss", self.average_loss, 1))
        set_("iter_size", as_int("iter_size", self.iter_size, 1))
        set_("snapshot", as_int("snapshot", self.snapshot, 0))
        set_("solver_mode", as_choice("solver_mode", self.solver_mode, SOLVER_MODES))
        set_("device_id", as_int("device_id", self.device_id, 0))
        if self.random_seed is not None:
            set_("random_seed", as_int("random_seed", self.random_seed, 0))
        self._check_policy(self.policy_params())

    def _check_policy(self, p: dict[str, Any]) -> None:
        pol = self.lr_policy
        if chained(pol):
            check_params(pol, self.base_lr, self.max_iter, p)
            pol, _ = base_of(pol)
            if pol not in POLICIES:
                return
        check_policy(pol, p)

    def policy_params(self) -> dict[str, Any]:
        """The schedule's parameters: defaults from max_iter, overridden by given values (Caffe's own policies: the
        fields their solver writes; a chained schedule: what plans its segments)."""
        if chained(self.lr_policy):
            params = chain_defaults(self.lr_policy, self.max_iter, self.base_lr)
            keys = list(schedule_params(self.lr_policy)) + list(POLICY_PARAMS.get(base_of(self.lr_policy)[0], ()))
        else:
            params = policy_defaults(self.lr_policy, self.max_iter)
            keys = list(POLICY_PARAMS[self.lr_policy])
        for key in keys:
            value = getattr(self, key)
            if value is not None:
                params[key] = list(value) if key == "stepvalue" else value
        return params

    @property
    def is_chain(self) -> bool:
        """A schedule Caffe lacks: the run is a chain of segments (:mod:`caffegen.prototxt.chains`)."""
        return chained(self.lr_policy)

    def pieces(self):
        """The chain's segments (a chained schedule; for plateau, its first only), knots off the test passes."""
        return pieces(self.lr_policy, self.base_lr, self.max_iter, self.policy_params(),
                      test_interval=self.test_interval or max(1, self.max_iter // 20))

    def lr_at(self, it: int) -> float:
        """The lr Caffe uses at iteration ``it`` with this solver (:func:`~caffegen.prototxt.schedule.learning_rate`;
        a chain: its segment's)."""
        if self.is_chain:
            return float(chain_lr(self.pieces(), [it])[0])
        p = self.policy_params()
        return learning_rate(self.lr_policy, it, self.base_lr, gamma=p.get("gamma", 0.0),
                             stepsize=p.get("stepsize", 0), stepvalue=p.get("stepvalue", ()),
                             power=p.get("power", 0.0), max_iter=self.max_iter)

    def decay_left(self, it: int) -> float:
        """Decades of lr decay still ahead at iteration ``it``: log10(lr(it) / lr(last iteration)) (0 for fixed, 0
        at the end; what :mod:`caffegen.sweep.pruning` compares runs by)."""
        now, end = self.lr_at(it), self.lr_at(self.max_iter - 1)
        if now <= 0:
            return 0.0
        return math.log10(now / end) if end > 0 else math.log10(now / (self.base_lr * 1e-6))

    def type_params(self) -> dict[str, float]:
        """The optimiser hyper-parameters this solver type reads: defaults overridden by given values."""
        params = dict(TYPE_DEFAULTS[self.type])
        for key in params:
            value = getattr(self, key)
            if value is not None:
                params[key] = value
        return params

    def effective(self, test_batch: int | None = None) -> dict[str, Any]:
        """Every field as it will be written (derived values filled in, unused ones None); an unset test_iter is
        the fallback :func:`test_iter_for` of ``test_batch`` (the net's TEST batch, default 16)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in POLICY_FIELDS + ("momentum", "momentum2", "delta", "rms_decay"):
            d[key] = None
        if self.is_chain:   # the solver file of its first segment (the chain writes the others as it goes)
            first = self.pieces()[0]
            d.update(first.solver_fields())
        else:
            d.update(self.policy_params())
        d.update(self.type_params())
        if d["stepvalue"] is not None:
            d["stepvalue"] = list(d["stepvalue"])
        if d["test_interval"] is None:
            d["test_interval"] = max(1, self.max_iter // 20)
        if d["test_iter"] is None:
            d["test_iter"] = test_iter_for(None, test_batch or NetOptions.__dataclass_fields__["test_batch"].default)
        return d


_HEAD = ("base_lr", "lr_policy", "max_iter")
_KNOBS = merged(schedule_knobs())
SCHEDULE_KNOBS: tuple[str, ...] = tuple(name for name, _, _ in _KNOBS)   # every schedule's knob, once per name


def _build_solver_options() -> type:
    """SolverOptions: the solver's own fields with every schedule's knobs after ``max_iter`` (one field per name,
    its help naming the schedules that read it: :func:`~caffegen.prototxt.knobs.merged`), so a schedule's
    parameters are declared once, in its own module, and the flags, the spec's typing and ``--help`` follow."""
    own = [(f.name, str(f.type), dataclasses.field(default=f.default, metadata=f.metadata))
           for f in dataclasses.fields(_SolverFields)]
    fields = [f for f in own if f[0] in _HEAD] + _KNOBS + [f for f in own if f[0] not in _HEAD]
    return dataclasses.make_dataclass("SolverOptions", fields, bases=(_Solver,), frozen=True,
                                      namespace={"__module__": __name__, "__doc__": _Solver.__doc__})


SolverOptions = _build_solver_options()
_SCHEDULE_KNOBS = tuple(f for f in dataclasses.fields(SolverOptions) if f.name in SCHEDULE_KNOBS)


@dataclass(frozen=True)
class Coverage:
    """How one test pass covers the val set: ``seen`` images (test_iter x TEST batch) against ``val_images``, and
    the TEST batch nearest the one asked for that covers it exactly once (``exact_batch`` x ``exact_iter``)."""

    val_images: int
    test_iter: int
    test_batch: int
    exact_batch: int

    @property
    def seen(self) -> int:
        return self.test_iter * self.test_batch

    @property
    def exact(self) -> bool:
        return self.seen == self.val_images

    @property
    def exact_iter(self) -> int:
        return self.val_images // self.exact_batch


def coverage(val_images: int, test_iter: int, test_batch: int) -> Coverage:
    """The coverage rule's numbers: a TEST batch that divides the val set, nearest ``test_batch`` (the larger on a
    tie)."""
    if test_iter * test_batch == val_images:
        return Coverage(val_images, test_iter, test_batch, test_batch)
    divisors = [d for d in range(1, val_images + 1) if val_images % d == 0]
    return Coverage(val_images, test_iter, test_batch, min(divisors, key=lambda d: (abs(d - test_batch), -d)))


def coverage_note(val_images: int | None, test_iter: int, test_batch: int) -> str | None:
    """A note when one test pass does not see each val image exactly once (Caffe wraps around the list, so some
    count twice, or stops short), with the TEST batch / test_iter pair that would; None when it does."""
    if not val_images:
        return None
    c = coverage(val_images, test_iter, test_batch)
    if c.exact:
        return None
    how = (f"{c.seen - val_images} are counted twice" if c.seen > val_images else f"{val_images - c.seen} are never tested")
    return (f"test_iter {test_iter} x TEST batch {test_batch} = {c.seen} images per test pass, but the val set has "
            f"{val_images}: {how}; TEST batch {c.exact_batch} with test_iter {c.exact_iter} covers it exactly once")


def test_iter_for(val_images: int | None, test_batch: int) -> int:
    """Test batches so that one test pass covers ``val_images`` (unknown: the seed's :data:`DEFAULT_VAL_IMAGES`)."""
    return math.ceil((val_images or DEFAULT_VAL_IMAGES) / test_batch)


_SHORT = {"base_lr": "lr", "lr_policy": "", "weight_decay": "wd", "momentum": "m", "type": "",
          "net.dropout": "drop", "net.train_batch": "bs", "max_iter": "it", "iter_size": "is", "data.augment": "aug-"}


def variant_name(axes: dict[str, Any]) -> str:
    """Stable readable file/folder stem for one point of a grid: ``lr0.01_step``, ``lr0.01_step_wd0.005``,
    ``lr0.1_exp_drop0.5``, ``lr0.001_fixed_adam``. Used for solver files and sweep run folders alike."""
    parts = []
    for key, value in axes.items():
        prefix = _SHORT.get(key, key.replace("net.", "").replace("_", ""))
        text = f"{value:g}" if isinstance(value, float) else str(value)
        parts.append(prefix + (text.lower() if key == "type" else text))
    return "".join(c if c.isalnum() or c in "._-+" else "-" for c in "_".join(parts))
