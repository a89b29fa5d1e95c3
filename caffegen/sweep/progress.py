"""Showing a sweep: a live table on a terminal, nothing extra when output is a pipe or a file.

:func:`run_view` is what one row shows (store row + what the run's log says now, ETA included); the driver's
live table and ``caffegen status`` (:func:`collect_views`, from ``sweep.db`` at any time) both build their rows
with it, so they show the same numbers.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..layout import TRAIN_LOG
from ..logs.follower import LogFollower, LogTail
from ..run.status import (DIVERGED, DONE, EARLY_STOPPED, FAILED, FINAL, INTERRUPTED, PENDING, PRUNED, RUNNING,
                          TIMEOUT)
from .store import RunRow, read_sweep


@dataclass
class RunView:
    """What the progress display shows for one run."""

    variant: str
    status: str
    iteration: int = 0
    max_iter: int = 0
    loss: float | None = None
    top1: float | None = None
    eta_s: float | None = None
    reason: str = ""


def eta_seconds(iteration: int, max_iter: int, iterations_per_second: float | None) -> float | None:
    """Seconds left at the run's current speed (None before the speed is known)."""
    if not iterations_per_second or iterations_per_second <= 0 or not max_iter:
        return None
    return max(0, max_iter - iteration) / iterations_per_second


def run_view(row: RunRow, follower: LogFollower | None, metric: str) -> RunView:
    """One row of the table: the store's record, brought up to date from the log of a running run."""
    view = RunView(row.variant, row.status, row["last_iter"] or 0, row["max_iter"] or 0, row["final_loss"],
                   row["best_top1"], None, row["reason"] or "")
    if follower is not None and row.status == RUNNING:
        view.iteration = follower.iteration or 0
        view.loss = follower.last_loss
        view.top1 = follower.last_test.get(metric)
        view.eta_s = eta_seconds(view.iteration, view.max_iter, follower.iterations_per_second)
    return view

_STYLE = {DONE: "green", RUNNING: "cyan", DIVERGED: "red", FAILED: "bold red", EARLY_STOPPED: "yellow",
          PRUNED: "blue", TIMEOUT: "yellow", INTERRUPTED: "magenta", PENDING: "dim"}


def _num(x: float | None, fmt: str = "{:.4g}") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return fmt.format(x)


def _eta(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    s = int(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def status_table(views: Iterable[Any], total: int, title: str = "") -> Any:
    """A rich Table: overall done/total, then one row per run (iteration, loss, top-1, ETA, status)."""
    from rich.table import Table
    from rich.text import Text

    views = list(views)
    finished = sum(v.status in FINAL or v.status == FAILED for v in views)
    table = Table(title=f"{title}  {finished}/{total} runs finished".strip(), title_justify="left",
                  expand=False, pad_edge=False)
    for col, just in (("run", "left"), ("status", "left"), ("iter", "right"), ("loss", "right"),
                      ("top-1", "right"), ("ETA", "right"), ("note", "left")):
        table.add_column(col, justify=just, no_wrap=col != "note", overflow="fold")
    for v in views:
        it = f"{v.iteration}/{v.max_iter}" if v.max_iter else str(v.iteration)
        style = _STYLE.get(v.status, "")
        # Text objects, not markup strings: rich.live re-renders this table inside console.print(markup=False).
        table.add_row(Text(v.variant), Text(v.status, style=style), it, _num(v.loss),
                      _num(v.top1, "{:.3f}"), _eta(v.eta_s) if v.status == RUNNING else "",
                      Text((v.reason or "")[:70]))
    return table


class LiveDisplay:
    """rich.live on a TTY; refreshes in place."""

    def __init__(self, title: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.title = title
        self.console = Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def update(self, views: list, total: int, final: bool = False) -> None:
        self.live.update(status_table(views, total, self.title))
        if final:
            self.live.stop()

    def log(self, line: str) -> None:
        self.live.console.print(line, markup=False, highlight=False)


class QuietDisplay:
    """Not a TTY: the driver's one-line start/finish messages are the whole output."""

    def update(self, views: list, total: int, final: bool = False) -> None:  # noqa: ARG002
        return None

    def log(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)


def make_display(title: str, live: bool | None = None):
    if live is None:
        live = sys.stderr.isatty()
    return LiveDisplay(title) if live else QuietDisplay()


def collect_views(out_dir: str | Path) -> tuple[list[RunView], int, str]:
    """Views of every run in a sweep folder, read from sweep.db and, for running runs, their logs."""
    out_dir = Path(out_dir)
    rows, record = read_sweep(out_dir)
    metric, name = record.metric, record.name or out_dir.name
    views = []
    for r in rows:
        follower = None
        if r.status == RUNNING:
            tail = LogTail(out_dir / r.variant / TRAIN_LOG)
            tail.flush()
            follower = tail.follower
        views.append(run_view(r, follower, metric))
    return views, len(rows), name
