"""``caffegen lr-find``: the LR range test (Leslie Smith; fastai's ``lr_find``) as one short real Caffe run.

The learning rate rises exponentially from ``start`` to ``end`` over ``iters`` iterations, which Caffe 1.0 does by
itself: ``lr_policy: "exp"`` with ``gamma = (end/start)^(1/iters) > 1`` (Caffe never checks that gamma < 1),
``display: 1`` and ``average_loss: 1`` for one raw loss per iteration, no test pass. The loss is smoothed with a
debiased moving average (beta 0.98); the run is stopped once the smoothed loss exceeds 4x its best or turns nan.
From the smoothed curve, with the first 10% and the last 5 points left out as fastai does, three suggestions:

* **valley** (fastai's default): the middle of the longest falling stretch of the loss (fastai's ``valley``: the
  longest decreasing subsequence, then 1/3 + 1/6 of its length in);
* **steep**: where the loss falls fastest per log-lr;
* **minimum/10**: a tenth of the lr at the lowest loss.

Single suggestions are known to be unreliable, so the plot shows all three; valley is the one printed, with a grid
of three rates around it that ``--write-spec`` puts into a sweep spec.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..layout import TRAIN_LOG
from ..paths import write_atomic
from ..prototxt.schedule import learning_rate
from ..run.stops import LossBlowsUp
from ..run.status import FAILED
from ..sweep.runs import plan_run
from ..sweep.spec import SweepSpec, Variant
from ..toolchain import CaffeInstall
from .oneshot import train_once

__all__ = ["gamma_for", "smooth", "suggest", "LRFind", "lr_find", "grid_around", "spec_with_lrs", "BETA",
           "BLOW_UP"]

BETA = 0.98     # the debiased moving average of the loss
BLOW_UP = 4.0   # stop once the smoothed loss exceeds this many times its best


def gamma_for(start: float, end: float, iters: int) -> float:
    """The ``exp`` gamma that takes the lr from ``start`` to ``end`` in ``iters`` iterations."""
    return (end / start) ** (1.0 / iters)


def smooth(losses: list[float], beta: float = BETA) -> list[float]:
    """Debiased exponential moving average (fastai's): ``avg = beta*avg + (1-beta)*x``, divided by ``1 - beta^k``."""
    out, avg = [], 0.0
    for k, x in enumerate(losses, 1):
        avg = beta * avg + (1 - beta) * x
        out.append(avg / (1 - beta ** k))
    return out


def blown_up(smoothed: list[float]) -> bool:
    """The stop rule: the latest smoothed loss is nan/inf or above BLOW_UP x the best so far."""
    if not smoothed:
        return False
    last = smoothed[-1]
    return not math.isfinite(last) or last > BLOW_UP * min(smoothed)


def suggest(lrs: list[float], smoothed: list[float]) -> dict[str, float]:
    """valley, steep and minimum/10 (see the module docstring), on the curve without its first 10% and last 5
    points (all of it when that would leave too little). Empty when fewer than 3 points are finite."""
    pts = [(lr, loss) for lr, loss in zip(lrs, smoothed) if math.isfinite(loss)]
    cut = pts[len(pts) // 10: len(pts) - 5] if len(pts) >= 20 else pts
    if len(cut) < 3:
        return {}
    xs, ys = [p[0] for p in cut], [p[1] for p in cut]
    n = len(ys)
    lds, max_start, max_end = [1] * n, 0, 0
    for i in range(1, n):  # fastai's valley: the longest strictly decreasing subsequence
        for j in range(i):
            if ys[i] < ys[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
        if lds[max_end] < lds[i]:
            max_end, max_start = i, i - lds[i]
    sections = (max_end - max_start) / 3
    valley = xs[min(n - 1, max_start + int(sections) + int(sections / 2))]
    grads = [(ys[i + 1] - ys[i]) / (math.log(xs[i + 1]) - math.log(xs[i])) for i in range(n - 1)]
    steep = xs[min(range(n - 1), key=lambda i: grads[i])]
    minimum = xs[min(range(n), key=lambda i: ys[i])] / 10
    return {"valley": valley, "steep": steep, "minimum/10": minimum}


def _round1(x: float) -> float:
    """One significant digit (0.0063 -> 0.006)."""
    e = math.floor(math.log10(x))
    return round(x / 10 ** e) * 10 ** e


def grid_around(lr: float) -> list[float]:
    """Three base_lr around a suggestion: a third, itself, three times, at one significant digit."""
    return sorted({float(f"{_round1(lr * f):.1g}") for f in (1 / 3, 1, 3)})


@dataclass
class LRFind:
    """What the range test saw and suggests."""

    iterations: list[int]
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    blew_up_at: float | None            # the lr at which the smoothed loss blew up (None: it never did)
    suggestions: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None

    @property
    def suggested(self) -> float | None:
        return self.suggestions.get("valley")

    @property
    def grid(self) -> list[float]:
        return grid_around(self.suggested) if self.suggested else []

    def csv(self) -> str:
        lines = ["iteration,lr,loss,smoothed"]
        lines += [f"{i},{lr!r},{loss!r},{s!r}" for i, lr, loss, s in zip(self.iterations, self.lrs, self.losses,
                                                                          self.smoothed)]
        return "\n".join(lines) + "\n"


def lr_find(spec: SweepSpec, out_dir: Path, caffe: CaffeInstall, *, start: float = 1e-7, end: float = 10.0,
            iters: int = 100, gpus: tuple[int, ...] = (), log: Callable[[str], None] = print) -> LRFind:
    """Run the range test on ``spec``'s net, data and shared solver fields (its grid is ignored), in ``out_dir``."""
    from ..data.sources import prepare_data

    if not (0 < start < end) or not all(map(math.isfinite, (start, end))):
        raise InputError(f"lr-find needs 0 < --start < --end, got {start:g} and {end:g}")
    if iters < 10:
        raise InputError(f"lr-find needs --iters >= 10, got {iters}")
    gamma = gamma_for(start, end, iters)
    data = prepare_data(spec.data, out_dir, log, spec.source)
    d = spec.data
    solver = {**spec.solver, "base_lr": start, "lr_policy": "exp", "gamma": gamma, "max_iter": iters, "display": 1,
              "average_loss": 1, "test_interval": iters + 1, "test_initialization": False, "snapshot": iters + 1}
    variant = Variant(name="lr-find", axes={}, net=dict(spec.net), solver=solver, group="lr-find")
    plan = plan_run(variant, data, gpu=bool(gpus), lmdb=(d.train_lmdb, d.val_lmdb) if d.train_lmdb else None,
                    base_solver=spec.base_solver)
    plan = dataclasses.replace(plan, solver=dataclasses.replace(plan.solver, snapshot=0, snapshot_prefix="lr_find"))
    run_dir = out_dir / "lr-find"
    log(f"[lr-find] lr {start:g} -> {end:g} over {iters} iterations (exp, gamma {gamma:.6g}); "
        f"log: {run_dir / TRAIN_LOG}")
    run = train_once(plan, run_dir, caffe, rule=LossBlowsUp(lambda losses: blown_up(smooth(losses))), gpus=gpus,
                     name="lr-find", log=log, where=spec.run)
    losses, logfile = list(run.follower.loss_history), run.log_path
    status, reason = run.outcome
    if status == FAILED:
        raise InputError(f"lr-find: caffe failed: {reason}")
    if len(losses) < 3:
        raise InputError(f"lr-find: caffe logged only {len(losses)} losses (see {logfile})")
    its = [it for it, _ in losses]
    lrs = [learning_rate("exp", it, start, gamma=gamma) for it in its]
    raw = [v for _, v in losses]
    sm = smooth(raw)
    keep = len(sm)
    for k in range(len(sm)):  # the curve ends at the first point that blew up (fastai cuts there too)
        if blown_up(sm[:k + 1]):
            keep = k + 1
            break
    blew = lrs[keep - 1] if blown_up(sm[:keep]) else None  # the lr at which the smoothed loss blew up
    result = LRFind(its[:keep], lrs[:keep], raw[:keep], sm[:keep], blew, run_dir=run_dir)
    result.suggestions = suggest(result.lrs, result.smoothed)
    write_atomic(run_dir / "lr_find.csv", result.csv())
    return result


def spec_with_lrs(spec_text: str, lrs: list[float]) -> str:
    """The spec's text with ``[grid] base_lr`` set to ``lrs`` (the line replaced, or added under ``[grid]``)."""
    value = "base_lr = [" + ", ".join(f"{lr:g}" for lr in lrs) + "]  # from caffegen lr-find"
    lines = spec_text.splitlines()
    section, grid_at = None, None
    for i, line in enumerate(lines):
        m = re.match(r"\s*\[([^\]]+)\]", line)
        if m:
            section = m.group(1).strip()
            if section == "grid":
                grid_at = i
            continue
        if section == "grid" and re.match(r"\s*base_lr\s*=", line):
            lines[i] = value
            return "\n".join(lines) + "\n"
    if grid_at is None:
        return "\n".join(lines + ["", "[grid]", value, 'lr_policy = "all"']) + "\n"
    lines.insert(grid_at + 1, value)
    return "\n".join(lines) + "\n"
