"""A run's life, named once: ``pending -> running -> done | diverged | early-stopped | timeout | pruned | failed |
interrupted``, and :func:`ended`, the one mapping from how a caffe process ended to a status and its reason.

Final statuses are skipped on a rerun; the others are (re)started, from the newest usable snapshot when there is
one. ``caffegen sweep``, ``extend``, ``lr-find``, ``sanity`` and ``tune`` all report through these names.
"""
from __future__ import annotations

import signal
from pathlib import Path

__all__ = ["PENDING", "RUNNING", "DONE", "DIVERGED", "EARLY_STOPPED", "TIMEOUT", "PRUNED", "FAILED", "INTERRUPTED",
           "FINAL", "RETRY", "STATUSES", "WITH_RESULT", "ended"]

PENDING = "pending"
RUNNING = "running"
DONE = "done"
DIVERGED = "diverged"
EARLY_STOPPED = "early-stopped"
TIMEOUT = "timeout"
PRUNED = "pruned"
FAILED = "failed"
INTERRUPTED = "interrupted"

FINAL = (DONE, DIVERGED, EARLY_STOPPED, TIMEOUT, PRUNED)     # an outcome: skipped on a rerun
RETRY = (FAILED, INTERRUPTED, RUNNING, PENDING)              # (re)started on a rerun, from a snapshot if any
STATUSES = FINAL + RETRY
WITH_RESULT = (DONE, EARLY_STOPPED, TIMEOUT, DIVERGED)       # final with a result a study can be told (COMPLETE)


def ended(rc: int, *, decided: tuple[str, str] | None = None, stopped_by: int | None = None,
          fatal_line: str | None = None, log: Path | None = None, disk_note: str | None = None) -> tuple[str, str | None]:
    """(status, reason) of a caffe that exited with ``rc``: the stop policy's decision when it made one, else
    ``interrupted`` when the user's signal ``stopped_by`` stopped it, else done (rc 0) or failed with the first
    fatal line of its log (``disk_note``: a full disk, said first)."""
    if decided is not None:
        return decided
    if stopped_by is not None:
        how = "Ctrl-C" if stopped_by == signal.SIGINT else signal.Signals(stopped_by).name
        return INTERRUPTED, f"stopped by {how}" + (" (snapshot kept)" if rc == 0 else "")
    if rc == 0:
        return DONE, None
    why = fatal_line or (f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}")
    return FAILED, (f"{disk_note}: " if disk_note else "") + why + (f" (see {log})" if log else "")
