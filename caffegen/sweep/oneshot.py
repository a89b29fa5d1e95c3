"""One short ``caffe train`` outside a sweep (``lr-find``, ``sanity``): a run folder written from a plan, caffe
started in it, its train loss followed line by line, and caffe stopped as soon as the caller's rule says so."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..logs.follower import LogTail
from ..toolchain import CaffeInstall
from .executor import Job, LocalExecutor
from .runs import RunPlan

__all__ = ["Followed", "train_following"]


@dataclass
class Followed:
    """What one followed run left: its exit status, each (iteration, loss) caffe displayed, whether the rule stopped
    it, and the first fatal line of its log."""

    rc: int | None
    losses: list[tuple[int, float]]
    stopped: bool
    fatal: str | None
    log: Path


def train_following(plan: RunPlan, run_dir: Path, caffe: CaffeInstall, *, stop: Callable[[list[tuple[int, float]]],
                    bool], gpus: tuple[int, ...] = (), name: str = "run",
                    notes: Callable[[str], None] | None = None) -> Followed:
    """Write ``plan`` into ``run_dir`` (validated by pycaffe), train it, and kill caffe once ``stop(losses)`` is true
    (nothing of such a run is worth a snapshot)."""
    written = plan.write(run_dir, pycaffe_check=True)
    for note in written.notes:
        if notes:
            notes(f"caffegen: note: {note}")
    logfile = run_dir / "train.log"
    logfile.unlink(missing_ok=True)
    executor = LocalExecutor(jobs=1, gpus=gpus[:1], per_gpu=1)
    (slot,) = executor.slots()[:1]
    argv = [str(caffe.binary), "train", "-solver", "solver.prototxt"]
    if plan.user is not None and plan.user.weights:
        argv += ["-weights", plan.user.weights]
    handle = executor.launch(Job(name, argv, run_dir, logfile, env=caffe.env()), slot)
    tail = LogTail(logfile)
    losses: list[tuple[int, float]] = []
    stopped = False
    try:
        while True:
            rc = handle.poll()
            tail.read() if rc is None else tail.flush()
            for point in tail.follower.loss_history[len(losses):]:
                losses.append(point)
                stopped = stopped or stop(losses)
            if stopped and rc is None:
                handle.kill()
            if rc is not None:
                break
            time.sleep(0.1)
    except KeyboardInterrupt:
        handle.kill()
        raise
    return Followed(rc, losses, stopped, tail.follower.fatal_line, logfile)
