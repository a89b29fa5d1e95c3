"""Reading a sweep from the outside while it runs, as the tests (and bench/soak) do: its store's rows, a condition
polled until it holds, and who wrote each stretch of a log."""
from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

GLOG_LINE = re.compile(r"^[IWEF]\d{4,8} \d\d:\d\d:\d\d\.\d{6}\s+(\d+) ")


def store_rows(sweep_dir: Path) -> dict[str, dict]:
    """The sweep store's rows by variant, read with the store's own read-only reader; empty while the store is still
    being created."""
    from caffegen.sweep.store import read_sweep

    if not (sweep_dir / "sweep.db").exists():
        return {}
    try:
        rows, _ = read_sweep(sweep_dir)
    except sqlite3.OperationalError as exc:   # the file exists but the driver has not created the table yet
        if "no such table" in str(exc):
            return {}
        raise
    return {r.variant: {**r.values, "params": r.params, "axes": r.axes} for r in rows}


def wait_for(pred, timeout: float = 120, every: float = 0.1):
    """Poll ``pred`` until it returns something true, and return that (never a fixed sleep)."""
    end = time.time() + timeout
    while time.time() < end:
        value = pred()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def writers(log: Path) -> list[int]:
    """The glog thread ids of the log's lines, consecutive repeats folded: one entry per writing stretch."""
    out: list[int] = []
    for line in log.read_text(errors="replace").splitlines():
        m = GLOG_LINE.match(line)
        if m and (not out or out[-1] != int(m.group(1))):
            out.append(int(m.group(1)))
    return out
