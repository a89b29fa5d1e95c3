"""The caffe processes of a sweep as the operating system sees them: started so that they die with the driver,
and recognised again by a later driver (pid + start time, so a reused pid is never mistaken for a run's trainer).

Linux: every ``caffe train`` is started through ``caffegen-launch`` (``launcher.c``, compiled into the cache
with the system compiler), which sets ``PR_SET_PDEATHSIG`` to SIGINT before exec: when the driver dies, even by
``kill -9``, each caffe snapshots and stops. Without a C compiler, util-linux's ``setpriv --pdeathsig`` does the
same; without either (and on macOS or the BSDs, which have no such call) a driver killed by -9 leaves its caffe
processes running, and the next ``caffegen sweep`` on the folder finds them by pid and start time and waits for
them, kills them (``--force``) or refuses: never two trainers on one run folder.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from ..cc import compile_c
from ..paths import package_file

__all__ = ["start_time", "is_running", "launch_prefix", "DEATH_SIGNAL"]

DEATH_SIGNAL = signal.SIGINT  # what a caffe gets when its driver dies: snapshot and stop (-sigint_effect stop)


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, field 22 of ``/proc/PID/stat``); None if it is gone
    (or there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat[stat.rindex(")") + 2:].split()[19])  # the fields after "(comm)": state is field 3
    except (ValueError, IndexError):
        return None


def is_running(pid: int | None, started: int | None) -> bool:
    """True when ``pid`` is alive and is the very process that started at ``started`` (not a reused pid)."""
    if not pid:
        return False
    now = start_time(pid)
    if now is None:
        if sys.platform.startswith("linux"):
            return False
        try:  # no /proc: the best there is, a signal-0 probe
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return started is None or now == started


@lru_cache(maxsize=1)
def _launcher() -> list[str] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return [str(compile_c(package_file("caffegen.run", "launcher.c"), "caffegen-launch", ("-O2",)))]
    except (OSError, subprocess.SubprocessError):  # no compiler: util-linux's setpriv does the same
        pass
    setpriv = shutil.which("setpriv")
    return [setpriv, f"--pdeathsig={DEATH_SIGNAL.name[3:]}", "--"] if setpriv else None


def launch_prefix() -> list[str]:
    """What to put before a command so that it dies with this process; empty where the system cannot."""
    prefix = _launcher()
    if not prefix:
        return []
    if prefix[0].endswith("setpriv"):
        return list(prefix)
    return [prefix[0], str(int(DEATH_SIGNAL)), str(os.getpid())]
