"""``caffegen sanity``: overfit a tiny subset before sweeping (seed 003: "make it overfit a few images first").

The spec's net trains on ``per_class`` images of each class (the first ones of its train list), with no mirror and
no weight decay, at a fixed learning rate (``--lr``, else the spec's best guess: its ``[solver] base_lr``, or the
middle of its grid's base_lr values), until the displayed train loss (averaged over 5 iterations) falls below
the threshold (10% of ln(classes), the loss of a uniform guess) or ``max_iter`` passes. A net and data that are
wired right memorise a few images quickly; one that cannot has a bug no sweep will tune away.

On FAIL, the likely causes in the seeds' order: the labels or the list (a frozen classifier, one label for every
image), the learning rate far too low or too high (from the loss curve's shape), then the data layer and its
transform. ``control``: the same training with the labels shuffled among the images, for up to twice the
iterations the real labels needed; if it gets below the threshold within 1.5x of them, the real labels taught the
net nothing a random labelling would not (it is not learning from the labels, or the subset is so small that it
memorises anything): a FAIL.
"""
from __future__ import annotations

import dataclasses
import math
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..data.lists import read_list
from ..data.sources import PreparedData
from ..errors import InputError
from ..layout import TRAIN_VAL
from ..paths import write_atomic
from ..prototxt.usernet import heads_of
from ..run.stops import LossBelow
from ..run.status import DIVERGED, FAILED
from ..sweep.runs import plan_run
from ..sweep.spec import SweepSpec, Variant
from ..toolchain import CaffeInstall
from .oneshot import train_once

__all__ = ["Sanity", "sanity", "threshold_for", "guess_lr", "tiny_subset", "causes", "too_high", "frozen_classifier"]

WINDOW = 5  # the displayed loss is the mean over this many iterations
CONTROL_BUDGET = 2.0   # the control trains up to this many times the iterations the real labels needed...
CONTROL_MARGIN = 1.5   # ...and fails the check when it gets below the threshold within this many times


def threshold_for(classes: int) -> float:
    """10% of ln(classes): a tenth of the loss of a uniform guess."""
    return 0.1 * math.log(max(2, classes))


def guess_lr(spec: SweepSpec) -> float:
    """The spec's best guess at base_lr: ``[solver] base_lr``, else the middle of the grid's (or the search space's
    geometric middle), else 0.01."""
    if "base_lr" in spec.solver:
        return float(spec.solver["base_lr"])
    grid = sorted(float(v) for v in spec.grid.get("base_lr", []))
    if grid:
        return grid[len(grid) // 2]
    space = (spec.search.space if spec.search is not None else {}).get("base_lr")
    if isinstance(space, dict) and "low" in space and "high" in space:
        return math.sqrt(float(space["low"]) * float(space["high"]))
    return 0.01


def tiny_subset(items: list[tuple[str, int]], per_class: int) -> list[tuple[str, int]]:
    """The first ``per_class`` images of each label, in list order (the train list is already shuffled)."""
    seen: dict[int, int] = {}
    out = []
    for path, label in items:
        if seen.get(label, 0) < per_class:
            seen[label] = seen.get(label, 0) + 1
            out.append((path, label))
    return out


def shuffled_labels(items: list[tuple[str, int]], seed: int = 0) -> list[tuple[str, int]]:
    """The same images with their labels shuffled among them (the control)."""
    labels = [label for _, label in items]
    random.Random(f"sanity-control-{seed}").shuffle(labels)
    return [(path, label) for (path, _), label in zip(items, labels)]


def frozen_classifier(net_text: str, where: str) -> str | None:
    """The main classifier's name when every one of its params has lr_mult 0 (it cannot learn), else None."""
    from ..prototxt.validate import parse_text

    net = parse_text(net_text, "net", where)
    head = heads_of(net, where)[-1]
    layer = next(layer for layer in net.layer if layer.name == head.classifier)
    return layer.name if layer.param and all(p.lr_mult == 0 for p in layer.param) else None


@dataclass
class Sanity:
    """One sanity run: whether it overfit, when, and what its loss did."""

    passed: bool
    images: int
    classes: int
    lr: float
    threshold: float
    max_iter: int
    reached_at: int | None               # the iteration whose displayed loss first fell below the threshold
    losses: list[tuple[int, float]]
    causes: list[str] = field(default_factory=list)
    control: Sanity | None = None
    run_dir: Path | None = None
    failed: str | None = None            # caffe's fatal line when it crashed
    blew_up: str | None = None           # the divergence check's reason when it stopped the run
    window: int = WINDOW                 # the displayed loss is averaged over this many iterations

    @property
    def line(self) -> str:
        """The verdict: ``PASS: overfit 40 images in 180 iterations`` or ``FAIL: ...``."""
        if self.passed:
            return (f"PASS: overfit {self.images} images in {self.reached_at} iterations (train loss "
                    f"{self.final_loss:.3g} < {self.threshold:.3g}, base_lr {self.lr:g})")
        what = f"caffe failed: {self.failed}" if self.failed else f"the loss blew up: {self.blew_up}" if \
            self.blew_up else (
            f"train loss {self.final_loss:.3g} after {self.last_iter} iterations, not below {self.threshold:.3g}"
            if self.losses else "no train loss logged")
        if self.passed_alone:
            what = "the loss fell as fast with the labels shuffled (see the control)"
        return f"FAIL: {what} ({self.images} images, {self.classes} classes, base_lr {self.lr:g})"

    @property
    def diverged(self) -> bool:
        """A FAIL whose loss blew up (:func:`too_high`; caffe itself did not crash): the rate, not the net, is the
        first suspect."""
        return not self.passed and self.failed is None and (self.blew_up is not None or too_high(self.losses))

    @property
    def passed_alone(self) -> bool:
        """It overfit, but the control overfit as fast: a FAIL."""
        return self.reached_at is not None and not self.passed

    @property
    def final_loss(self) -> float:
        return self.losses[-1][1] if self.losses else float("nan")

    @property
    def last_iter(self) -> int:
        return self.losses[-1][0] if self.losses else 0

    def csv(self) -> str:
        return "iteration,loss\n" + "".join(f"{it},{v!r}\n" for it, v in self.losses)


def too_high(losses: list[tuple[int, float]]) -> bool:
    """The loss turned nan/inf or rose by half over the run: the rate is too high for this net (pure)."""
    vals = [v for _, v in losses]
    return bool(vals) and (any(not math.isfinite(v) for v in vals) or vals[-1] > 1.5 * vals[0])


def causes(losses: list[tuple[int, float]], *, lr: float, classes: int, labels: set[int], frozen: str | None,
           max_iter: int, blew_up: bool = False) -> list[str]:
    """The likely causes of a FAIL from what the loss did, in the seeds' order (pure)."""
    out = []
    if frozen:
        out.append(f"labels/classifier: the classifier {frozen!r} is frozen (lr_mult 0 on all its params): it cannot "
                   "learn; set lr_mult > 0 on it")
    if len(labels) < 2:
        out.append(f"labels/list: every image of the subset has label {min(labels, default='?')}: check the list file "
                   "(one 'path label' per line, labels 0..classes-1)")
    vals = [v for _, v in losses]
    chance = math.log(max(2, classes))
    if not vals:
        out.append("no train loss was logged: check display > 0 in the solver")
    elif blew_up or too_high(losses):
        out.append(f"learning rate: base_lr {lr:g} looks far too high: the loss "
                   + ("turned nan/inf" if any(not math.isfinite(v) for v in vals) else
                      f"rose from {vals[0]:.3g} to {vals[-1]:.3g}") + f"; try {lr / 10:g} (or `caffegen lr-find`)")
    elif vals[-1] > 0.9 * vals[0]:
        out.append(f"learning rate: base_lr {lr:g} looks far too low (or the net cannot learn): the loss barely moved "
                   f"({vals[0]:.3g} -> {vals[-1]:.3g}) in {losses[-1][0]} iterations; try {lr * 10:g} "
                   "(or `caffegen lr-find`)")
    elif vals[-1] < vals[0]:
        out.append(f"not there yet: the loss fell from {vals[0]:.3g} to {vals[-1]:.3g} but not below the threshold in "
                   f"{max_iter} iterations: give it more --max-iter, or a higher base_lr than {lr:g}")
    if vals and vals[0] < 0.5 * chance:
        out.append(f"labels: the first loss {vals[0]:.3g} is far below ln({classes}) = {chance:.3g}, the loss of a "
                   "guess: are the labels constant, or is the net reading the labels as input?")
    out.append("data layer/transform: check scale, mean_value/mean_file and crop_size in transform_param, and that "
               "new_height/new_width fit the crop (`caffegen export netscope` shows every blob's shape)")
    return out


def sparkline(losses: list[tuple[int, float]], width: int = 60) -> str:
    """The loss curve in one line of block characters (nan/inf as '!')."""
    vals = [v for _, v in losses]
    if not vals:
        return ""
    step = max(1, math.ceil(len(vals) / width))
    pts = [statistics.fmean(vals[i:i + step]) if all(map(math.isfinite, vals[i:i + step])) else float("nan")
           for i in range(0, len(vals), step)]
    finite = [v for v in pts if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    blocks = "▁▂▃▄▅▆▇█"
    return "".join("!" if not math.isfinite(v) else blocks[int((v - lo) / (hi - lo or 1) * 7)] for v in pts)


def _one(spec: SweepSpec, data: PreparedData, items: list[tuple[str, int]], run_dir: Path, caffe: CaffeInstall, *,
         lr: float, max_iter: int, threshold: float, gpus: tuple[int, ...], log: Callable[[str], None]) -> Sanity:
    run_dir.mkdir(parents=True, exist_ok=True)
    tiny = run_dir / "tiny.txt"
    write_atomic(tiny, "".join(f"{p} {label}\n" for p, label in items))
    sub = dataclasses.replace(data, train_list=tiny.resolve(), val_list=tiny.resolve())
    iters = max_iter
    solver = {**spec.solver, "base_lr": lr, "lr_policy": "fixed", "weight_decay": 0.0, "max_iter": iters,
              "display": 1, "average_loss": WINDOW, "test_interval": iters + 1, "test_initialization": False}
    for key in ("gamma", "stepsize", "stepvalue", "power"):
        solver.pop(key, None)
    net = dict(spec.net)
    if not spec.user_net:
        net["mirror"] = False
    variant = Variant(name=run_dir.name, axes={}, net=net, solver=solver, group=run_dir.name)
    plan = plan_run(variant, sub, gpu=bool(gpus), base_solver=spec.base_solver)
    plan = dataclasses.replace(plan, solver=dataclasses.replace(plan.solver, snapshot=0, snapshot_prefix="sanity"))
    if plan.wired is not None:  # your own net: its TRAIN mirror off too
        plan = dataclasses.replace(plan, wired=dataclasses.replace(plan.wired, text=_no_mirror(plan.wired.text)))
    frozen = frozen_classifier(plan.net_text, str(run_dir / TRAIN_VAL))
    rule = LossBelow(threshold, after=WINDOW)
    run = train_once(plan, run_dir, caffe, rule=rule, gpus=gpus, name=run_dir.name, log=log, where=spec.run)
    rule.read(run.follower)     # the lines logged after the last poll: a fast net can finish before the first one
    reached = rule.reached
    losses = [p for p in run.follower.loss_history if reached is None or p[0] <= reached]
    status, reason = run.outcome
    failed = run.follower.fatal_line or f"exit status {run.rc}" if status == FAILED else None
    blew_up = reason if status == DIVERGED else None
    result = Sanity(reached is not None and failed is None and blew_up is None, len(items), data.num_classes, lr,
                    threshold, iters, reached, losses, run_dir=run_dir, failed=failed, blew_up=blew_up)
    if not result.passed:
        result.causes = causes(losses, lr=lr, classes=data.num_classes, labels={label for _, label in items},
                               frozen=frozen, max_iter=iters, blew_up=blew_up is not None)
    write_atomic(run_dir / "loss.csv", result.csv())
    return result


def _no_mirror(text: str) -> str:
    from google.protobuf import text_format

    from ..prototxt.netread import data_layers
    from ..prototxt.validate import parse_text

    net = parse_text(text, "net", TRAIN_VAL)
    data_layers(net, TRAIN_VAL)["TRAIN"].transform_param.mirror = False
    return text_format.MessageToString(net)


def sanity(spec: SweepSpec, out_dir: Path, caffe: CaffeInstall, *, per_class: int = 2, max_iter: int = 300,
           threshold: float | None = None, lr: float | None = None, control: bool = False,
           gpus: tuple[int, ...] = (), log: Callable[[str], None] = print) -> Sanity:
    """Overfit ``per_class`` images per class of ``spec``'s train list (see the module docstring)."""
    from ..data.sources import prepare_data

    if per_class < 1:
        raise InputError(f"sanity needs --per-class >= 1, got {per_class}")
    if max_iter < 2 * WINDOW:
        raise InputError(f"sanity needs --max-iter >= {2 * WINDOW}, got {max_iter}")
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise InputError(f"sanity needs --lr > 0, got {lr:g}")
    data = prepare_data(spec.data, out_dir, log, spec.source)
    if data is None:
        raise InputError(f"{spec.source}: sanity needs image lists ([data] demo, root or train_list): the tiny "
                         "subset is drawn from the train list")
    items = tiny_subset(read_list(data.train_list), per_class)
    lr = guess_lr(spec) if lr is None else lr
    threshold = threshold_for(data.num_classes) if threshold is None else threshold
    log(f"[sanity] {len(items)} images ({per_class} per class, {data.num_classes} classes), base_lr {lr:g} fixed, "
        f"no mirror, no weight decay: until the train loss < {threshold:.3g} or {max_iter} iterations")
    result = _one(spec, data, items, out_dir / "sanity", caffe, lr=lr, max_iter=max_iter, threshold=threshold,
                  gpus=gpus, log=log)
    if control and result.failed is None:
        at = result.reached_at or max_iter
        log(f"[sanity] control: the same {len(items)} images with shuffled labels, up to {CONTROL_BUDGET * at:g} "
            "iterations")
        result.control = _one(spec, data, shuffled_labels(items), out_dir / "sanity-control", caffe, lr=lr,
                              max_iter=max(2 * WINDOW, int(CONTROL_BUDGET * at)), threshold=threshold, gpus=gpus,
                              log=log)
        reached = result.control.reached_at
        if result.passed and reached is not None and reached <= CONTROL_MARGIN * at:
            result.passed = False
            result.causes = [f"labels: with the labels shuffled the loss fell below the threshold about as fast "
                             f"(iteration {reached} vs {at}): either the net does not learn from the labels "
                             "(is the label blob wired to the loss?), or "
                             f"{len(items)} images are too few to tell (a net memorises any labels of a handful of "
                             "images): rerun with a larger --per-class"]
    return result
