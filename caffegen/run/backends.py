"""Where runs execute: the backends ``[run] backend`` (and ``--backend``) can name, one registry.

A backend is an :class:`~caffegen.run.executor.Executor` made from the spec's ``[run]`` settings, and the number of
runs it trains at once. Adding one (say a Slurm executor) is a module with the Executor protocol and an entry here;
the spec's check, the commands' ``--backend`` choices, the driver and the tune read this dict.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .executor import Executor

__all__ = ["Backend", "BACKENDS", "make_executor", "slot_count"]


@dataclass(frozen=True)
class Backend:
    """``make(run)``: the executor for ``[run]`` settings; ``slots(run)``: how many runs go at once;
    ``require(address)``: what it needs before anything starts (an InputError line with the fix when it is missing:
    Ray not installed, no cluster answering at the address); ``preflight(run, folder)``: what a tune needs of
    where its runs go, before anything trains (a cluster: CPUs, a caffe on every node, ``folder`` seen by every
    node)."""

    make: Callable[[Any], Executor]
    slots: Callable[[Any], int]
    about: str
    address: bool = False       # takes ``[run] address`` (--address): a cluster's
    require: Callable[[str | None], Any] = lambda address: None
    preflight: Callable[[Any, Any], Any] = lambda run, folder: None


def _local(run: Any) -> Executor:
    from .executor import LocalExecutor

    return LocalExecutor(jobs=run.jobs, gpus=run.gpus, per_gpu=run.per_gpu)


def _require_ray(address: str | None) -> None:
    from .ray_executor import reachable, require_ray

    require_ray()
    reachable(address)


def _check_ray(run: Any, folder: Any) -> str:
    from .ray_executor import check_cluster

    return check_cluster(run.address, folder, gpu=bool(run.gpus), jobs=run.jobs)


def _ray(run: Any) -> Executor:
    from .ray_executor import RayExecutor      # Ray is an extra: imported only when a spec names it

    return RayExecutor(address=run.address, jobs=run.jobs, gpu=bool(run.gpus), per_gpu=run.per_gpu)


BACKENDS: dict[str, Backend] = {
    "local": Backend(_local, lambda run: len(_local(run).slots()), "child processes on this machine"),
    "ray": Backend(_ray, lambda run: len(_ray(run).slots()), "Ray actors on a cluster (its CPUs or GPUs make the "
                   "slots)", address=True, require=_require_ray, preflight=_check_ray),
}


def make_executor(run: Any) -> Executor:
    """The executor ``run.backend`` names (a name the spec's check has accepted)."""
    return BACKENDS[run.backend].make(run)


def slot_count(run: Any) -> int:
    """How many runs go at once under ``[run]``."""
    return BACKENDS[run.backend].slots(run)
