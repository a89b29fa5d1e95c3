"""Where runs execute. The driver talks only to :class:`Executor`; :class:`LocalExecutor` runs
``caffe train`` as child processes on this machine, :class:`~caffegen.run.ray_executor.RayExecutor` as Ray
actors on a cluster. A backend implements the same two methods and nothing else changes.
"""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .processes import launch_prefix, start_time

LOST = 256   # what poll() returns for a run lost with its node (no process exits with 256): the driver retries it


@dataclass(frozen=True)
class Slot:
    """A place to run one job: a GPU id (None = CPU) and the CPU threads it may use."""

    index: int
    gpu: int | None
    threads: int


@dataclass
class Job:
    """One ``caffe train``: the command, its folder (cwd), and where its whole output goes."""

    variant: str
    argv: list[str]
    cwd: Path
    log: Path
    env: dict[str, str] = field(default_factory=dict)


class Handle(Protocol):
    """A launched job."""

    pid: int | None       # a local process (None on a cluster: nothing here for the leftover check to find)
    started: int | None   # the process's start time (``processes.start_time``): with pid, who trains the run
    node: dict | None     # the cluster node it runs on ({"id", "ip", ...}, for the manifest); None locally

    def poll(self) -> int | None: ...   # exit status once finished (negative = killed by that signal), or LOST

    def interrupt(self) -> None: ...    # SIGINT: caffe snapshots and stops (-sigint_effect stop)

    def kill(self) -> None: ...         # stop now, no snapshot


class Executor(Protocol):
    def slots(self) -> list[Slot]: ...

    def launch(self, job: Job, slot: Slot) -> Handle: ...


class LocalHandle:
    node: dict | None = None
    lost: str | None = None   # a local run is never lost: its crash is its exit status

    def __init__(self, proc: subprocess.Popen, logfile) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.started = start_time(proc.pid)
        self._logfile = logfile

    def poll(self) -> int | None:
        rc = self.proc.poll()
        if rc is not None and not self._logfile.closed:
            self._logfile.close()
        return rc

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def interrupt(self) -> None:
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


class LocalExecutor:
    """Child processes on this machine.

    CPU: ``jobs`` runs at once with the cores split between them (OMP/OpenBLAS thread caps), since
    several single-threaded Caffe runs use 2 cores better than one run with 2 BLAS threads.
    GPU: one run per listed GPU, or ``per_gpu`` small runs packed on each.
    """

    def __init__(self, jobs: int | None = None, gpus: tuple[int, ...] = (), per_gpu: int = 1,
                 cores: int | None = None) -> None:
        self.cores = cores or len(os.sched_getaffinity(0))
        self.gpus = tuple(gpus)
        self.per_gpu = per_gpu
        self.jobs = jobs

    def slots(self) -> list[Slot]:
        if self.gpus:
            n = len(self.gpus) * self.per_gpu
            threads = max(1, self.cores // n)
            return [Slot(i, self.gpus[i % len(self.gpus)], threads) for i in range(n)]
        jobs = self.jobs or min(2, self.cores)
        threads = max(1, self.cores // jobs)
        return [Slot(i, None, threads) for i in range(jobs)]

    def launch(self, job: Job, slot: Slot) -> LocalHandle:
        env = dict(job.env)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(slot.threads)
        argv = list(job.argv)
        if slot.gpu is not None:
            argv += ["-gpu", str(slot.gpu)]
        logfile = open(job.log, "ab")
        # A session of its own: Ctrl-C in the terminal reaches caffegen only, which then stops each
        # run itself (SIGINT -> snapshot) instead of racing the children. The launch prefix makes the child die
        # with this process (PR_SET_PDEATHSIG), even when it is killed with -9.
        try:
            proc = subprocess.Popen(launch_prefix() + argv, cwd=job.cwd, env=env, stdout=logfile,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            logfile.close()
            raise
        return LocalHandle(proc, logfile)
