"""Showing a sweep: a live table on a terminal, nothing extra when output is a pipe or a file.

The same :func:`status_table` renders ``caffegen status`` from ``sweep.db`` at any time.
"""
from __future__ import annotations

import math
import sys
from typing import Any, Iterable

from .store import FINAL

_STYLE = {"done": "green", "running": "cyan", "diverged": "red", "failed": "bold red", "early-stopped": "yellow",
          "timeout": "yellow", "interrupted": "magenta", "pending": "dim"}


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
    finished = sum(v.status in FINAL or v.status == "failed" for v in views)
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
                      _num(v.top1, "{:.3f}"), _eta(v.eta_s) if v.status == "running" else "",
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


def collect_views(out_dir) -> tuple[list, int, str]:
    """Views of every run in a sweep folder, read from sweep.db and, for running runs, their logs."""
    from pathlib import Path

    from ..errors import InputError
    from ..parse import LogFollower
    from .driver import RunView
    from .monitor import LogTail
    from .store import open_store

    out_dir = Path(out_dir)
    if not (out_dir / "sweep.db").exists():
        raise InputError(f"{out_dir}: no sweep.db here (not a sweep folder, or the sweep has not started)")
    store = open_store(out_dir)
    try:
        rows = store.all()
        metric = (store.meta("spec") or {}).get("metric", "accuracy_at_1")
        name = (store.meta("spec") or {}).get("name", out_dir.name)
    finally:
        store.close()
    views = []
    for r in rows:
        v = RunView(r.variant, r.status, r["last_iter"] or 0, r["max_iter"] or 0, r["final_loss"], r["best_top1"],
                    None, r["reason"] or "")
        if r.status == "running":
            tail = LogTail(out_dir / r.variant / "train.log", LogFollower())
            tail.flush()
            f = tail.follower
            v.iteration, v.loss, v.top1 = f.iteration or 0, f.last_loss, f.last_test.get(metric)
            secs = f.seconds
            if secs and v.iteration:
                v.eta_s = (v.max_iter - v.iteration) * secs / v.iteration
        views.append(v)
    return views, len(rows), name
