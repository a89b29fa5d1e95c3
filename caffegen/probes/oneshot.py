"""One short ``caffe train`` outside a sweep, for ``lr-find`` and ``sanity``: the plan written into a fresh run folder
(built by pycaffe first), trained through the one run path (:class:`~caffegen.run.trainer.Training`), stopped as soon
as the probe's own rule is met."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from ..errors import Interrupted
from ..run.status import INTERRUPTED
from ..run.stops import Divergence, StopRule
from ..run.trainer import Training, follow, local_slot
from ..sweep.runs import RunPlan
from ..toolchain import CaffeInstall

__all__ = ["train_once"]


def train_once(plan: RunPlan, run_dir: Path, caffe: CaffeInstall, *, rule: StopRule | None, gpus: tuple[int, ...] = (),
               name: str = "run", log: Callable[[str], None] = print, check: bool = True,
               share: int = 1, where: Any = None) -> Training:
    """Write ``plan`` into ``run_dir`` (built by pycaffe first unless ``check`` is False: the caller did) and train
    it until ``rule`` (a :class:`~caffegen.run.stops.StopRule`) stops it or caffe ends. The probe's rule, not the
    divergence kill, decides about an exploding loss (an lr range test makes one on purpose); a nan still ends it.
    ``share``: train with the CPU threads one of that many slots gets (what a sweep's run gets); ``where``: the
    spec's ``[run]`` settings, whose backend runs it (a cluster's: on one of its nodes, as the sweep's runs will be;
    None or local: here). Ctrl-C, SIGTERM or SIGHUP: :class:`~caffegen.errors.Interrupted`."""
    written = plan.write(run_dir, pycaffe_check=check)
    for note in written.notes:
        log(f"caffegen: note: {note}")
    if where is not None and where.backend != "local":
        from ..run.backends import make_executor

        executor = make_executor(where)
        slot = executor.slots()[0]
    else:
        executor, slot = local_slot(gpus, share)
    stops = [Divergence(math.inf), *([rule] if rule is not None else [])]     # nan only: the probe decides the rest
    training = Training(run_dir, caffe, executor, slot, stops=stops, name=name,
                        weights=plan.user.weights if plan.user is not None else None, fresh=True)
    status, reason = follow(training, log=log, poll_s=0.1)
    node = getattr(training.handle, "node", None)      # a cluster's run: where it trained
    if node:
        log(f"[{name}] trained on Ray node {str(node.get('id', '?'))[:8]} ({node.get('ip', '?')})")
    if status == INTERRUPTED:
        raise Interrupted(f"{name}: {reason}", training.stopped_by or 2)
    return training
