"""``caffegen evaluate``: a thin wrapper over :mod:`caffegen.evaluate`."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import InputError


def _default_gpu(cpu: bool, gpu: int | None) -> int | None:
    """--gpu as given; else GPU 0 when this Caffe is a CUDA build and a GPU is visible; else the CPU."""
    if cpu or gpu is not None:
        return None if cpu else gpu
    from ..toolchain import locate
    from ..toolchain.build import visible_gpus

    return 0 if locate().gpu_build and visible_gpus() else None


@click.command()
@click.argument("target", metavar="RUN|SWEEP", type=click.Path(file_okay=False, path_type=Path), required=False)
@click.option("--snapshot", default="best", show_default=True, metavar="best|last|ITER",
              help="Which snapshot: the one nearest the best test top-1, the newest, or an iteration.")
@click.option("--list", "list_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Evaluate on this list file (`path label` lines) instead of the run's val list.")
@click.option("--top", type=click.IntRange(1), default=1, show_default=True,
              help="On a sweep folder: evaluate its K best variants (of repeats, the best seed).")
@click.option("--gpu", type=click.IntRange(0), default=None, metavar="ID",
              help="Run the forward pass on this GPU [default: GPU 0 with a CUDA build of Caffe, else the CPU].")
@click.option("--cpu", is_flag=True, help="Use the CPU even where a GPU is visible.")
@click.option("--mistakes", type=click.IntRange(0), default=48, show_default=True,
              help="Images in the gallery of the most confident mistakes.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for one run's results [default: RUN/eval].")
def evaluate(target: Path | None, snapshot: str, list_file: Path | None, top: int, gpu: int | None, cpu: bool,
             mistakes: int, out_dir: Path | None) -> int:
    """Score a run's snapshot image by image and write RUN/eval/.

    \b
    RUN is one run folder (runs/default/lr0.01_sigmoid); SWEEP a sweep
    folder [default: runs/default], whose winner (or --top K) is evaluated
    and linked from its report.html. The run's train_val.prototxt runs in
    TEST phase with the snapshot's weights over its val list (or --list),
    in order, each image once, batch by batch with pycaffe.

    \b
    RUN/eval/ holds: index.html (everything on one page, with a gallery of
    the most confident mistakes), summary.json (top-1 and top-5 counted as
    Caffe's Accuracy layer counts them, and Caffe's own test top-1 at that
    iteration beside it), confusion.png/.csv (class names from labels.txt),
    per_class.csv (precision, recall, F1, support, AP, ROC AUC),
    pr.png, roc.png and curves.csv (one class against the rest),
    predictions.csv, scores.npz (for `caffegen export tensorboard`).

    \b
    Examples:
      caffegen evaluate runs/default                  # the sweep's winner
      caffegen evaluate runs/default --top 3
      caffegen evaluate runs/default/lr0.01_step --snapshot last --list my_test.txt
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..evaluate import evaluate_run, evaluate_sweep
    from ..layout import REPORT_HTML, default_out, is_sweep_dir

    target = target or default_out("default")
    if not target.is_dir():
        raise InputError(f"{target}: no such run or sweep folder")
    if out_dir is not None and is_sweep_dir(target):
        raise InputError("--out applies to one run folder; a sweep's evaluations go into each run's eval/")
    device = _default_gpu(cpu, gpu)
    with Progress(TextColumn("[evaluate] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("batches"), TimeRemainingColumn(), transient=True,
                  disable=not click.get_text_stream("stderr").isatty()) as bar:
        task = bar.add_task(str(target), total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        common = dict(snapshot=snapshot, list_file=list_file, gpu=device, progress=progress, mistakes=mistakes)
        if is_sweep_dir(target):
            evals = evaluate_sweep(target, top=top, **common)
        else:
            evals = [evaluate_run(target, out_dir=out_dir, **common)]
    for ev in evals:
        top5 = f", top-5 {ev.top5:.4f}" if ev.top5 is not None else ""
        line = (f"{ev.run_dir.name} @ iteration {ev.iteration}: top-1 {ev.top1:.4f}{top5} on {ev.images} images "
                f"({ev.scores.device})")
        if ev.caffe_test:
            same = "the same images" if ev.caffe_test["same_images"] else f"{ev.caffe_test['images']} images"
            line += f"; Caffe's test pass there: {ev.caffe_test['top1']:.4f} on {same}"
        click.echo(line)
        click.echo(f"  {ev.out_dir / 'index.html'}")
    if is_sweep_dir(target):
        click.echo(f"  linked from {target / REPORT_HTML}")
    return 0
