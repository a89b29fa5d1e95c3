"""``caffegen parse`` and ``caffegen plot``: thin wrappers over :mod:`caffegen.logs` and
:mod:`caffegen.report.figures`."""
from __future__ import annotations

import math
from pathlib import Path

import click

from ..errors import InputError
from ..layout import CURVES_PNG, TRAIN_LOG


def _log_of(target: str) -> Path:
    """A log file, or a run folder holding ``train.log``."""
    path = Path(target)
    if path.is_dir():
        path = path / TRAIN_LOG
    if not path.is_file():
        raise InputError(f"no log at {path} (give a log file or a run folder with train.log)")
    return path


def _caffe_curves(path: Path, curves):
    """The curves, unless the file holds nothing a Caffe run writes (a wrong file is bad input, not 0 rows)."""
    if not (len(curves.train) or len(curves.test) or curves.fatal_line or curves.seconds is not None):
        raise InputError(f"{path}: not a Caffe log (no glog line, no 'Iteration N' line); "
                         "give the output of `caffe train`")
    return curves


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) and math.isfinite(v) else str(v)


@click.command()
@click.argument("log")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for LOG.train, LOG.test (CSV) and LOG.json. Default: next to the log.")
@click.option("--engine", type=click.Choice(["auto", "native", "lines"]), default="auto", show_default=True,
              help="auto: the native C scanner for logs of 1 MB and more, the reference parser otherwise; native: "
                   "the scanner for any size; lines: the reference alone. The scanner hands every log it does not "
                   "model exactly to the reference; both give the same rows.")
def parse(log: str, out_dir: str | None, engine: str) -> None:
    """Turn a Caffe training LOG (or a run folder's train.log) into curves.

    Writes LOG.train and LOG.test in the CSV layout of Caffe's tools/extra/parse_log.py
    (NumIters, Seconds, LearningRate, then one column per net output; nan/inf kept, missing cells
    empty) and LOG.json, then prints a short summary. Reads every Caffe dialect: BVLC, NVCaffe,
    this project's Caffe, old "Test score" logs, glog prefixes with or without the year.

    \b
    Example:
      caffegen parse runs/default/lr0.01/train.log --out /tmp/curves
    """
    from ..logs import parse_log, write_outputs

    path = _log_of(log)
    curves = _caffe_curves(path, parse_log(path, engine=engine))
    written = write_outputs(curves, path, out_dir or path.parent)
    s = curves.summary()
    click.echo(f"{path}: {s['train_rows']} train rows, {s['test_rows']} test rows, "
               f"last iteration {s['last_iteration']}" + (f", {s['segments']} segments" if s["segments"] > 1 else ""))
    for name, value in s["final_test"].items():
        best = s["best_test"].get(name)
        best_txt = f" (best {_fmt(best[0])} at iteration {best[1]})" if best else ""
        click.echo(f"  {name}: final {_fmt(value)}{best_txt}")
    if curves.nonfinite:
        click.echo("  the train loss became nan/inf: the run diverged")
    if curves.fatal_line:
        click.echo(f"  caffe died: {curves.fatal_line}")
    for p in written:
        click.echo(f"wrote {p}")
    if engine == "native" and curves.engine != "native":
        click.echo("  (read by the reference parser: the native scanner declined this log or is unavailable)")


@click.command()
@click.argument("target")
@click.option("--out", "out_png", type=click.Path(dir_okay=False), default=None,
              help="PNG to write. Default: curves.png in the run folder, or LOG.png next to a log.")
@click.option("--smooth", type=click.FloatRange(0.0, 0.999), default=0.6, show_default=True,
              help="EMA factor for the smoothed train loss (0 = no smoothing).")
@click.option("--title", default=None, help="Plot title. Default: the log's path.")
def plot(target: str, out_png: str | None, smooth: float, title: str | None) -> None:
    """Plot the curves of one run: TARGET is a run folder (with train.log) or a log file.

    Draws train loss (raw and EMA-smoothed), test loss, test top-1/top-5 and the learning rate
    (log axis) against iteration; nan/inf points are red crosses.
    """
    from ..logs import parse_log
    from ..report.figures import plot_curves

    path = _log_of(target)
    if out_png is None:
        out_png = str(path.parent / CURVES_PNG) if Path(target).is_dir() else str(path) + ".png"
    out = plot_curves(_caffe_curves(path, parse_log(path)), out_png, title=title or str(path), smooth=smooth)
    click.echo(f"wrote {out}")
