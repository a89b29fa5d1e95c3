"""``caffegen tune``."""
from __future__ import annotations

from pathlib import Path

import click

from ..layout import default_out
from ..run.backends import BACKENDS
from .sweep import _gpus


@click.command()
@click.argument("net", required=False, metavar="[NET]")
@click.option("--data", required=True, metavar="FOLDER|TRAIN_LIST,VAL_LIST|TRAIN_LMDB,VAL_LMDB",
              help="An image folder (one sub-folder per class; split 8:2 once), two list files, or two LMDBs "
                   "(read as they are by NET's Data layers).")
@click.option("--weights", default=None, metavar="W.caffemodel", help="Fine-tune NET from these weights.")
@click.option("--solver", default=None, metavar="SOLVER", help="NET's own solver.prototxt, the base of every run's.")
@click.option("--budget", default="10%", show_default=True, metavar="10%|2h|90m|40runs",
              help="The whole command's budget: a share of the repeated grid's compute over the same space "
                   "(everything counted), wall-clock time, or full-length runs' worth of compute.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=default_out("tune"),
              show_default=True, help="The tune folder. Rerunning the same command into it resumes.")
@click.option("--iters", type=click.IntRange(10), default=None, metavar="N",
              help="The full length the winner trains to [default: 6 epochs of the train list].")
@click.option("--search-iters", type=click.IntRange(10), default=None, metavar="H",
              help="With --strategy search (or a budget too small for the scan): the length of the search's runs "
                   "[default: N/3: iterate fast; the confirm stage trains its candidates at the full length].")
@click.option("--strategy", type=click.Choice(["scan", "search"]), default="scan", show_default=True,
              help="scan: base_lr scanned at the full length on poly and cosine, then the other schedules at the "
                   "rate they liked best (where the budget fits it: 12 full-length runs or so; else the search). "
                   "search: TPE over short runs, then the best 4 at the full length (docs/tune.md: which wins "
                   "where).")
@click.option("--final", type=click.Choice(["retrain", "extend", "none"]), default="retrain", show_default=True,
              help="The winner at the full length, when the confirm stage did not train it there (it does by "
                   "default): retrained from scratch, or its search run extended from its snapshot.")
@click.option("--sanity/--no-sanity", default=True, show_default=True,
              help="Check first that the net can overfit a tiny subset (a FAIL stops the tune).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="The tune's seed: the search's sampler and the runs' random_seed (the confirm's fresh seeds are "
                   "the next ones).")
@click.option("--policies", default=None, metavar="all|step,poly,...",
              help="The schedules the search compares: a list, 'all' (Caffe's seven) or 'every' (and every chained one) "
                   "[default: Caffe's seven, linear, cosine, onecycle].")
@click.option("--jobs", "-j", type=click.IntRange(1), default=None, help="Parallel CPU runs [default: min(2, cores)].")
@click.option("--gpus", callback=_gpus, default=None, metavar="0,1", help="Train on these GPUs (CUDA build).")
@click.option("--backend", type=click.Choice(list(BACKENDS)), default="local", show_default=True,
              help="Where runs execute: here, or on a Ray cluster (docs/cluster.md).")
@click.option("--address", default=None, metavar="auto|HOST:PORT", help="With --backend ray: the cluster.")
@click.option("--resize", type=click.IntRange(1), default=None, metavar="N",
              help="Resize the images to NxN [default: the net's own; a net reading LMDBs through Data layers: its "
                   "crop x 8/7].")
@click.option("--crop", type=click.IntRange(1), default=None, metavar="N",
              help="Train and test at an NxN crop [default: the net's own]: a Model Zoo net iterates fast on a CPU "
                   "at a small crop (a head that needs its own size is refused, naming the layer).")
@click.option("--batch", type=click.IntRange(1), default=None, metavar="N",
              help="The TRAIN batch [default: the net's own]; the TEST batch follows, covering the val set once.")
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="A TOML file with the [data], [net], [solver], [run] tables a sweep takes, for everything the "
                   "flags do not set (the flags win).")
def tune(net, data, weights, solver, budget, out, iters, search_iters, strategy, final, sanity, seed, policies, jobs,
         gpus, backend, address, resize, crop, batch, spec_file) -> int:
    """From a net and an image folder to a trusted answer, in one command.

    \b
    The order an expert works in (docs/tune.md), every stage shown as it runs:
      measure  time this net on this hardware, print the plan and its compute
               as a fraction of the repeated grid over the same space (a
               budget too small is refused here; one the repeated grid
               fits runs that grid instead of a search)
      sanity   can the net overfit 2 images per class? FAIL stops, with causes
      lr-find  the LR range test finds the valley of the loss
      search   the rate scan (--strategy scan, the default where the budget
               fits it): poly and cosine at 4 base_lr a half-decade apart up
               from the valley, at the full length; the rate they score best
               at, pooled. (--strategy search, or a budget too small: TPE
               over base_lr x the schedules, runs of a third of the length,
               pruned only when behind beyond the val set's and the seeds'
               noise)
      confirm  the schedules at that rate (after a search: its best 4
               different answers) trained at the full length with a fresh
               seed; the best full-length value wins
      final    that run is the final one (--final retrain|extend: when the
               confirm stage could not run)
      look     evaluated per class; reports; TensorBoard log; the bill
    \b
    NET is your train_val.prototxt (none: the template net at a fast size).
    Everything lands in --out: a spec per stage (specs/, rerun any with
    `caffegen sweep`), tune.json (the decisions and their numbers),
    report.html, tensorboard/. Rerunning the same command resumes after
    Ctrl-C, SIGTERM or kill -9; other arguments on the same folder are
    refused. Exit 0 with a winner, 1 when sanity fails or nothing trained,
    2 on bad input, 130/143/129 when interrupted.

    \b
    A net that reads LMDBs through Data layers (BVLC's LeNet, CIFAR-10,
    CaffeNet...) is fed --data through ImageData layers instead, its own
    transform kept. On a CPU, tune a Model Zoo net at a small --crop and
    --batch: the winner is then a candidate for the full size, not a proof.

    \b
    Examples:
      caffegen tune --data ~/data/flowers
      caffegen tune squeezenet_v1.1_train_val.prototxt --data ~/data/flowers \\
          --crop 64 --batch 16 --budget 30m
      caffegen tune models/finetune_flickr_style/train_val.prototxt \\
          --weights bvlc_reference_caffenet.caffemodel --data ~/data/styles --budget 2h
    """
    from ..prototxt.chains import parse_schedules
    from ..sweep.progress import make_display
    from ..tune import TuneOptions
    from ..tune.specs import TUNE_SCHEDULES
    from ..tune import tune as run_tune

    opts = TuneOptions(data=data, net=net, weights=weights, solver=solver, budget=budget, out=out, iters=iters,
                       search_iters=search_iters, strategy=strategy, final=final, sanity=sanity, seed=seed,
                       policies=tuple(parse_schedules(policies)) if policies else TUNE_SCHEDULES, jobs=jobs,
                       gpus=gpus or (), backend=backend, address=address, resize=resize, crop=crop, batch=batch,
                       spec=str(spec_file.expanduser().resolve()) if spec_file else None)
    display = make_display(f"tune -> {out}")
    result = run_tune(opts, log=display.log, display=display)
    if result.exit_code:
        click.echo(f"caffegen: error: {result.message}", err=True)
    else:
        click.echo(result.message)
        click.echo(f"[tune] report: {result.report}")
    return result.exit_code
