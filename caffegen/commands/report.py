"""``caffegen report``."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import InputError
from ..layout import default_out


@click.command()
@click.argument("sweep_dir", type=click.Path(file_okay=False, path_type=Path), default=None, required=False)
@click.option("--live", is_flag=True, help="The lighter report of a running sweep: no per-run figures, and a refresh "
              "header so an open browser tab follows it (what `caffegen sweep` writes after each test pass).")
@click.option("--tensorboard", "tensorboard", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="DIR", help="Also export the sweep as a TensorBoard log into DIR (`caffegen export tensorboard`).")
def report(sweep_dir: Path | None, live: bool, tensorboard: Path | None) -> int:
    """Rank and diagnose a sweep: report.html, report.md, summary.csv.

    \b
    SWEEP_DIR (default runs/default) is a folder written by `caffegen sweep`.
    The HTML is self-contained (figures embedded, opens offline). Its headline
    says which variant won and how sure that is: each top-1 has a 95% interval
    (Wilson's over the images a test pass evaluates; over repeats, from the
    sweep's seed noise, estimated once from all its repeats with the seed as a
    block), and it names the variants the data cannot separate from the winner
    ("tied"): with repeats, Hsu's multiple comparisons with the best
    (Dunnett's critical value); with one run each, the two-proportion z-test on
    the test images, at 5%. Figures: best top-1 against base_lr with error bars,
    test top-1 and train loss as small multiples by lr_policy (against
    iteration and wall-clock time), the base_lr x lr_policy heatmap. Then the
    ranked table (repeats grouped) and a diagnosis per run (diverged, stalled,
    still improving, overfitting, late jump) with what to try next and why it
    lost. Each run's curves also land in <run>/curves.png. Works on a running
    sweep too.
    """
    from ..report import write_report

    d = sweep_dir or default_out("default")
    if not d.exists():
        raise InputError(f"{d}: no such sweep folder")
    paths = write_report(d, live=live)
    for key in ("html", "md", "csv"):
        click.echo(str(paths[key]))
    if tensorboard is not None:
        from ..export.tensorboard import export_tensorboard

        click.echo(str(export_tensorboard(d, tensorboard).logdir))
    return 0


@click.command("tensorboard")
@click.argument("target", metavar="SWEEP|RUN", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Log directory to write [default: SWEEP/tensorboard]; replaced on re-export.")
def tensorboard(target: Path | None, out_dir: Path | None) -> int:
    """A sweep (or one run) as a TensorBoard log directory.

    \b
    One folder per run: train/loss, train/lr, test/loss, test/top1, test/top5
    against iteration (wall time from the log); the HParams plugin's table and
    parallel coordinates (the sweep's axes as hyperparameters, best/final top-1,
    best top-5 and final loss as metrics); and, for runs `caffegen evaluate`
    scored, one PR curve per class. Written with TensorBoard's own event writer
    (pip install 'caffegen[tensorboard]'); no TensorFlow needed.

    \b
    Example:
      caffegen export tensorboard runs/default
      tensorboard --logdir runs/default/tensorboard
    """
    from ..export.tensorboard import export_tensorboard

    d = target or default_out("default")
    if not d.exists():
        raise InputError(f"{d}: no such sweep or run folder")
    result = export_tensorboard(d, out_dir)
    click.echo(f"{result.logdir}: {len(result.runs)} runs, {result.scalars} scalar points, "
               f"{len(result.hparams)} hparams ({', '.join(result.hparams) or '-'}), {result.pr_curves} PR curves")
    click.echo(f"  tensorboard --logdir {result.logdir}")
    return 0
