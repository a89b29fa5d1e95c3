"""One writer per run folder: what a sweep does, before it launches anything, about runs an earlier driver left
"running" (it was killed with -9, or its machine rebooted)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Callable

from ..errors import CaffegenError
from ..layout import TRAIN_LOG
from ..run.processes import is_running
from ..run.status import INTERRUPTED, RUNNING
from .store import Store


def settle_leftovers(store: Store, out_dir: Path, *, force: bool, stop_grace: float,
                     log: Callable[[str], None]) -> None:
    """A caffe still training a run of this sweep is asked to snapshot and stop, and waited for; with ``force`` it is
    killed at once. One that does not stop is refused with one line, so a second trainer never starts on its
    folder. A run left "running" on a cluster node (no pid here) is waited for until its log is still."""
    for row in store.all():
        pid, started = row["pid"], row["pid_start"]
        if row.status == RUNNING and pid is None:   # it ran on a cluster node: no pid here to look at
            wait_quiet_log(Path(out_dir) / row.variant / TRAIN_LOG, row.variant, stop_grace)
            continue
        if row.status != RUNNING or not is_running(pid, started):
            continue
        what = f"run {row.variant} is still being trained by caffe pid {pid} (started by an earlier caffegen sweep)"
        log(f"[sweep] {what}: {'killing it (--force)' if force else 'asking it to snapshot and stop'}")
        try:
            os.killpg(pid, signal.SIGKILL if force else signal.SIGINT)
        except ProcessLookupError:
            pass
        except PermissionError:
            raise CaffegenError(f"{what}, and this user may not stop it") from None
        deadline = time.time() + (10 if force else stop_grace)
        while is_running(pid, started) and time.time() < deadline:
            time.sleep(0.1)
        if is_running(pid, started):
            raise CaffegenError(f"{what} and did not stop within {stop_grace:g} s; wait for it, or "
                                "rerun with --force to kill it")
        store.update(row.variant, status=INTERRUPTED, pid=None, pid_start=None,
                     reason=f"its caffe (pid {pid}) outlived the driver; stopped before this sweep resumed it")


def wait_quiet_log(log: Path, variant: str, stop_grace: float, quiet_s: float = 3.0) -> None:
    """A run an earlier driver left "running" on another node: its caffe dies with its Ray actor, but may still be
    writing its last snapshot. Wait until the run's log has not changed for ``quiet_s`` (at most ``stop_grace``);
    one that keeps changing is refused with one line, so a second trainer never starts beside it."""
    def state():
        try:
            st = log.stat()
            return st.st_size, st.st_mtime
        except OSError:
            return None

    last, since, deadline = state(), time.time(), time.time() + stop_grace
    while time.time() - since < quiet_s:
        if time.time() > deadline:
            raise CaffegenError(f"run {variant}'s train.log is still being written (by a caffe that an earlier "
                                f"caffegen sweep started on a cluster node?) after {stop_grace:g} s; "
                                "rerun once it has stopped")
        time.sleep(0.2)
        now = state()
        if now != last:
            last, since = now, time.time()
