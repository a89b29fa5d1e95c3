"""``caffegen report``."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import InputError


@click.command()
@click.argument("sweep_dir", type=click.Path(file_okay=False, path_type=Path), default=None, required=False)
def report(sweep_dir: Path | None) -> int:
    """Rank and diagnose a sweep: report.html, report.md, summary.csv.

    \b
    SWEEP_DIR (default runs/default) is a folder written by `caffegen sweep`.
    The HTML is self-contained (figures embedded, opens offline): an overlay
    of test top-1 and train loss of every run, a base_lr x lr_policy heatmap
    of best top-1, the ranked table (best/final top-1 and top-5, iteration of
    best, final loss, wall time, status), the winner and its margin in one
    sentence, and a diagnosis per run (diverged, stalled, still improving,
    overfitting, late jump) with what to try next. Each run's curves also
    land in <run>/curves.png. Works on a running sweep too.
    """
    from ..report import write_report

    d = sweep_dir or Path("runs") / "default"
    if not d.exists():
        raise InputError(f"{d}: no such sweep folder")
    paths = write_report(d)
    for key in ("html", "md", "csv"):
        click.echo(str(paths[key]))
    return 0
