"""How fast this net trains on this hardware: one short real ``caffe train`` (a few dozen iterations and two test
passes) through the one run path, timed from its own glog clock. What ``caffegen tune`` plans its budget with before
anything else trains."""
from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..run.status import FAILED
from ..sweep.runs import plan_run
from ..sweep.spec import SweepSpec, Variant
from ..toolchain import CaffeInstall
from .oneshot import train_once

__all__ = ["Timing", "measure", "test_pass_seconds"]

_CLOCK = re.compile(r"^[IWEF]\d{4,8} (\d\d):(\d\d):(\d\d\.\d+)")


@dataclass(frozen=True)
class Timing:
    iter_s: float       # one training iteration
    test_s: float       # one test pass (test_iter batches of the TEST net)
    start_s: float      # the rest of a run's wall time: start (net setup, data layers), final snapshot, exit
    iters: int
    wall_s: float       # the probe's own cost
    check_s: float      # building the net once with pycaffe (what every sweep does first, and evaluate)
    figure_s: float     # drawing one run's curves (what a report does per run)


def _seconds(line: str) -> float | None:
    m = _CLOCK.match(line)
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else None


def test_pass_seconds(log_text: str) -> list[float]:
    """The duration of each test pass in a log: from its ``Testing net (#0)`` line to its last ``Test net output``
    line, by glog's clock (a pass across midnight is dropped)."""
    out, start, last = [], None, None
    for line in log_text.splitlines():
        if "Testing net (#0)" in line:
            if start is not None and last is not None and last >= start:
                out.append(last - start)
            start, last = _seconds(line), None
        elif "Test net output" in line and start is not None:
            last = _seconds(line)
    if start is not None and last is not None and last >= start:
        out.append(last - start)
    return out


def measure(spec: SweepSpec, out_dir: Path, caffe: CaffeInstall, *, iters: int = 40, lr: float = 0.001,
            gpus: tuple[int, ...] = (), log: Callable[[str], None] = print, slots: int = 1) -> Timing:
    """Train ``spec``'s net ``iters`` iterations at a small fixed lr (test passes at 0 and at the end) in
    ``out_dir/timing``; its iteration time, test-pass time and the rest of its wall time. ``slots``: the runs that
    will go at once: the probe trains with the CPU threads one of them gets (on a small net one run with every core
    iterates slower than one of several single-threaded runs: it would overstate a run's cost)."""
    from ..data.sources import prepare_data

    data = prepare_data(spec.data, out_dir, log, spec.source)
    d = spec.data
    solver = {**spec.solver, "base_lr": lr, "lr_policy": "fixed", "max_iter": iters, "display": max(1, iters // 4),
              "average_loss": 1, "test_interval": iters, "test_initialization": True, "snapshot": iters + 1}
    for key in ("gamma", "stepsize", "stepvalue", "power"):
        solver.pop(key, None)
    variant = Variant(name="timing", axes={}, net=dict(spec.net), solver=solver, group="timing")
    plan = plan_run(variant, data, gpu=bool(gpus), lmdb=(d.train_lmdb, d.val_lmdb) if d.train_lmdb else None,
                    base_solver=spec.base_solver)
    plan = dataclasses.replace(plan, solver=dataclasses.replace(plan.solver, snapshot=0, snapshot_prefix="timing"))
    t0 = time.time()
    plan.write(out_dir / "timing", pycaffe_check=True)       # (train_once writes it again: cached, no check)
    check = time.time() - t0
    t0 = time.time()
    run = train_once(plan, out_dir / "timing", caffe, rule=None, gpus=gpus, name="timing", log=log,
                     check=False, share=slots, where=spec.run)
    wall = time.time() - t0
    status, reason = run.outcome
    if status == FAILED:
        raise InputError(f"timing run: caffe failed: {reason}")
    speed = run.follower.iterations_per_second
    passes = test_pass_seconds(run.log_path.read_text(errors="replace"))
    if not speed or not passes:
        raise InputError(f"timing run: too little in its log to time it (see {run.log_path})")
    iter_s, test_s = 1.0 / speed, max(passes)
    start = max(0.0, wall - iters * iter_s - len(passes) * test_s)
    from ..logs import parse_log
    from ..report.figures import plot_curves

    curves = parse_log(run.log_path)
    plot_curves(curves, out_dir / "timing" / "curves.png", title="timing")   # (the first pays matplotlib's import)
    t0 = time.time()
    plot_curves(curves, out_dir / "timing" / "curves.png", title="timing")
    return Timing(iter_s, test_s, start, iters, wall + check, check, time.time() - t0)
