"""``caffegen sweep`` and ``caffegen status``."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from ..errors import InputError
from ..layout import default_out
from ..run.backends import BACKENDS
from ..run.stops import DIVERGE_FACTOR, STOP_GRACE_S


def _gpus(ctx, param, value: str | None):  # noqa: ARG001
    if value is None:
        return None
    try:
        return tuple(int(g) for g in value.split(",") if g.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of GPU ids, e.g. 0,1") from None


SWEEP_HELP = """Run `caffe train` for every variant of a sweep spec.

\b
SPEC is a TOML file [default: default]. `default` is the seed's
question, 7 lr_policies x 3 base_lr on the embedded demo data
(about 8 min on 2 idle cores); `search` the same question searched by
Optuna's TPE with ASHA pruning (a search run by hand: `caffegen tune`
is the first thing to try); `smoke` is 2 tiny runs.
See caffegen/specs/default.toml for a commented example.

\b
Search and pruning: a [search] table (sampler = "tpe" | "random" | "qmc"
with trials = N and a [search.space], or the grid; pruner = "asha" |
"hyperband" | "median") runs an Optuna study kept in sweep.db: resumable,
one trial per run, pruned runs stopped with a snapshot.

\b
Your own net: [net] prototxt = "train_val.prototxt" (with optional
weights = "x.caffemodel" to fine-tune, num_classes, mean, root) and
[solver] base = "solver.prototxt" sweep any Caffe net on the spec's data
(docs/sweep.md#your-own-net).

\b
Each run gets runs/NAME/<variant>/ with train_val.prototxt,
solver.prototxt, train.log, snapshots/ and manifest.json; runs/NAME/
sweep.db holds one row per run. A run whose loss turns nan/inf or
explodes is killed at once and marked diverged. A crashed run is marked
failed with its first fatal line; the others go on.

\b
Re-running the same command resumes: finished runs are skipped,
interrupted or failed runs continue from their newest usable snapshot
(a truncated one is skipped, with a note). Ctrl-C, SIGTERM (Slurm,
systemd, docker stop) and SIGHUP ask every running caffe to snapshot,
then exit 130 / 143 / 129; a second signal abandons at once. caffe
processes die with the driver even when it is killed with -9 (Linux),
and a rerun never starts a second trainer beside a leftover one.
Exit 0 when every run reached an outcome (done, diverged,
early-stopped, timeout), 1 when a run failed or the disk filled up,
2 on a bad spec.

\b
On a cluster: --backend ray runs each caffe as a Ray actor (num_cpus,
or num_gpus = 1/K with --per-gpu K) on any node; the sweep folder must
be at the same path on every node (a shared file system), where the
driver reads the logs. A run whose node dies is retried on another
node from its newest snapshot (--retries, default 2). Everything else
(store, stop policy, pruning, resume) is as locally (docs/cluster.md).

\b
Examples:
  caffegen sweep                       # the default sweep (make sweep)
  caffegen sweep my.toml -j 2 --early-stop 3
  caffegen sweep my.toml --gpus 0,1 --per-gpu 2
  caffegen sweep my.toml --backend ray --address auto
"""


@click.command(help=SWEEP_HELP)
@click.argument("spec", default="default", metavar="[SPEC]")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Sweep folder [default: runs/<spec name>]. Re-running into it resumes.")
@click.option("--jobs", "-j", type=click.IntRange(1), default=None,
              help="Parallel CPU runs; cores are split between them [default: spec's, else min(2, cores)].")
@click.option("--gpus", callback=_gpus, default=None, metavar="0,1",
              help="Train on these GPUs, one run per GPU (needs a CUDA build of Caffe).")
@click.option("--per-gpu", type=click.IntRange(1), default=None, help="Runs packed on each GPU [default: 1].")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds per run; then it is stopped (snapshot kept) and marked timeout.")
@click.option("--early-stop", type=click.IntRange(0), default=None, metavar="PATIENCE",
              help="Stop a run whose test top-1 has not improved for PATIENCE evaluations [default: off].")
@click.option("--diverge-factor", type=click.FloatRange(min=1, min_open=True), default=None,
              help=f"A loss above this x the run's first loss counts as diverged [default: {DIVERGE_FACTOR:g}]. "
                   "nan/inf always does.")
@click.option("--stop-grace", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="How long a caffe asked to stop (Ctrl-C, SIGTERM, early stop, timeout) may take to snapshot before "
                   f"it is killed [default: {STOP_GRACE_S:g}].")
@click.option("--keep-best", type=click.IntRange(0), default=None, metavar="K",
              help="Keep the K snapshots nearest each run's best test top-1 (for `caffegen evaluate`), beside the "
                   "newest [default: 1].")
@click.option("--backend", type=click.Choice(list(BACKENDS)), default=None,
              help="Where runs execute: child processes here, or one Ray actor per run on a Ray cluster "
                   "(pip install 'caffegen[ray]'; docs/cluster.md) [default: spec's, else local].")
@click.option("--address", default=None, metavar="auto|HOST:PORT",
              help="With --backend ray: the cluster to join (auto: the one `ray start` made here) "
                   "[default: $RAY_ADDRESS, else a new local Ray instance].")
@click.option("--retries", type=click.IntRange(0), default=None, metavar="N",
              help="With --backend ray: restarts of a run lost with its node, from its snapshot [default: 2].")
@click.option("--dry-run", is_flag=True, help="Check the spec and list the variants; run nothing.")
@click.option("--force", is_flag=True,
              help="Kill a caffe that an earlier (killed) caffegen sweep left training a run of this folder. Without "
                   f"it such a caffe is asked to snapshot and stop, and waited for ({STOP_GRACE_S:g} s), never run "
                   "beside.")
@click.option("--report/--no-report", default=True, help="Write the report when the sweep ends [default: on].")
def sweep(spec: str, out_dir: Path | None, jobs, gpus, per_gpu, timeout, early_stop, diverge_factor,
          stop_grace, keep_best, backend, address, retries, dry_run: bool, force: bool, report: bool) -> int:
    from ..sweep.spec import check_run_settings, load_spec

    s = load_spec(spec)
    overrides = {k: v for k, v in dict(jobs=jobs, gpus=gpus, per_gpu=per_gpu, timeout=timeout, early_stop=early_stop,
                                        diverge_factor=diverge_factor, stop_grace=stop_grace,
                                        keep_best=keep_best, backend=backend, address=address,
                                        retries=retries).items() if v is not None}
    run = dataclasses.replace(s.run, **overrides)
    check_run_settings(run, "command line")
    out = out_dir or default_out(s.name)
    if dry_run:
        return _dry_run(s, out)
    BACKENDS[run.backend].require(run.address)   # before anything starts: no Ray, no cluster there: one line
    from ..sweep.driver import run_sweep
    from ..sweep.progress import make_display

    display = make_display(f"sweep {s.name} -> {out}")
    result = run_sweep(s, out, run, display=display, log=display.log, force=force, live_report=report)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(result.counts.items()))
    click.echo(f"[sweep] {out}: {summary}", err=True)
    for variant, reason in result.failed:
        click.echo(f"caffegen: error: run {variant} failed: {reason}", err=True)
    if report and not result.interrupted:
        from ..report import write_report

        paths = write_report(out)
        click.echo(f"[sweep] report: {paths['html']}")
    return result.exit_code


def _dry_run(s, out: Path) -> int:
    """What ``--dry-run`` prints: the variants (or the sampled trials) and where they would go."""
    if s.search is not None and s.search.sampled:
        space = "; ".join(f"{k} {v}" for k, v in s.search.space.items())
        click.echo(f"{s.source}: {s.search.trials} trials sampled by {s.search.sampler} (seed {s.search.seed}), "
                   f"pruner {s.search.pruner} -> {out}\n  space: {space}")
        return 0
    click.echo(f"{s.source}: {len(s.variants)} variants -> {out}"
               + (f" (pruner {s.search.pruner})" if s.search is not None and s.search.pruner != "none" else ""))
    for v in s.variants:
        click.echo(f"  {v.name:<28} " + " ".join(f"{k}={val}" for k, val in v.axes.items()))
    return 0


@click.command()
@click.argument("sweep_dir", type=click.Path(file_okay=False, path_type=Path), default=None, required=False)
def status(sweep_dir: Path | None) -> int:
    """Show every run of a sweep: status, iteration, loss, top-1, ETA.

    Works at any time, also while the sweep runs (it reads sweep.db and
    the running logs). SWEEP_DIR defaults to runs/default.
    """
    from rich.console import Console

    from ..sweep.progress import collect_views, status_table

    d = sweep_dir or default_out("default")
    if not d.exists():
        raise InputError(f"{d}: no such sweep folder")
    views, total, name = collect_views(d)
    Console().print(status_table(views, total, f"sweep {name} ({d})"))
    return 0


@click.command("lr-find")
@click.argument("spec", default="default", metavar="[SPEC]")
@click.option("--start", type=float, default=1e-7, show_default=True, help="First learning rate.")
@click.option("--end", type=float, default=10.0, show_default=True, help="Last learning rate.")
@click.option("--iters", type=click.IntRange(10), default=100, show_default=True,
              help="Iterations from --start to --end (the lr rises exponentially).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the run, lr_find.png and lr_find.csv [default: runs/<spec name>-lr-find].")
@click.option("--gpus", callback=_gpus, default=None, metavar="0", help="Run on this GPU (CUDA build).")
@click.option("--write-spec", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a copy of SPEC whose [grid] base_lr is the three rates around the suggestion.")
def lr_find(spec: str, start: float, end: float, iters: int, out_dir: Path | None, gpus, write_spec: Path | None) -> int:
    """The LR range test: one short real run whose lr rises from --start to --end.

    \b
    Caffe does it by itself: lr_policy "exp" with gamma = (end/start)^(1/iters)
    > 1, one raw loss per iteration (display 1, average_loss 1), no test pass.
    The loss is smoothed (debiased moving average, beta 0.98) and the run is
    stopped once it exceeds 4x its best or turns nan. On the smoothed curve
    (without its first 10% and last 5 points, as fastai's lr_find), three
    suggestions are marked on lr_find.png: valley (fastai's default, printed:
    the middle of the longest falling stretch), steep (the fastest fall per
    log-lr) and minimum/10. Then a grid of three base_lr around the
    suggestion, which --write-spec puts into a sweep spec. SPEC gives the net
    (the template's or yours), the data and the shared solver fields; its grid
    is ignored.

    \b
    Examples:
      caffegen lr-find                              # the default spec's net and data
      caffegen lr-find my.toml --iters 200 --write-spec my_lrs.toml
    """
    from ..probes.figures import lr_find_figure
    from ..probes.lrfind import lr_find as run_lr_find
    from ..probes.lrfind import spec_with_lrs
    from ..sweep.spec import load_spec, resolve_spec_path
    from ..toolchain import locate

    s = load_spec(spec)
    out = out_dir or default_out(f"{s.name}-lr-find")
    result = run_lr_find(s, out, locate(), start=start, end=end, iters=iters, gpus=gpus or (),
                         log=lambda line: click.echo(line, err=True))
    png = lr_find_figure(result, out / "lr_find.png", title=f"LR range test: {s.name}")
    blew = f", blew up at {result.blew_up_at:.3g}" if result.blew_up_at else ", never blew up (try a larger --end)"
    click.echo(f"lr {result.lrs[0]:.3g} -> {result.lrs[-1]:.3g} over {len(result.lrs)} iterations{blew}")
    if not result.suggestions:
        raise InputError("lr-find: too few finite losses to suggest a rate; try a smaller --start or more --iters")
    others = ", ".join(f"{k} {v:.3g}" for k, v in result.suggestions.items() if k != "valley")
    click.echo(f"suggested base_lr: {result.suggested:.3g} (valley; {others})")
    click.echo(f"grid: base_lr = [{', '.join(f'{lr:g}' for lr in result.grid)}]")
    click.echo(f"wrote {png} and {out / 'lr-find' / 'lr_find.csv'}")
    if write_spec is not None:
        text = resolve_spec_path(spec).read_text(encoding="utf-8")
        write_spec.write_text(spec_with_lrs(text, result.grid), encoding="utf-8")
        click.echo(f"wrote {write_spec} (run it with `caffegen sweep {write_spec}`)")
    return 0


@click.command("extend")
@click.argument("target", type=click.Path(file_okay=False, path_type=Path))
@click.option("--iters", type=click.IntRange(1), required=True, metavar="N", help="The new max_iter.")
@click.option("--best", is_flag=True, help="TARGET is a sweep folder: extend its winning variant (each repeat).")
@click.option("--gpus", callback=_gpus, default=None, metavar="0", help="Run on this GPU (CUDA build).")
def extend(target: Path, iters: int, best: bool, gpus) -> int:
    """Continue a run from its newest usable snapshot to max_iter N.

    \b
    TARGET is a run folder of a sweep (runs/NAME/lr0.01_step), or with --best
    the sweep folder itself. Only max_iter changes (the old solver is kept as
    solver.max_iterOLD.prototxt): every lr_policy keeps its parameters as
    written, so step keeps dividing every stepsize, multistep stays at its
    last rate, exp/inv/sigmoid run on along their curves. poly is the
    exception Caffe makes: it reads max_iter itself, so its remaining decay
    is stretched to N (the lr at the restore point rises; the command says by
    how much). The manifest records every extension; the sweep's store gets
    the run's new outcome (the report then ranks it with its longer curve).
    Ctrl-C asks caffe to snapshot and stop.

    \b
    Examples:
      caffegen extend runs/default/lr0.01_sigmoid --iters 1200
      caffegen extend runs/default --best --iters 2000
    """
    from ..probes.extend import extend_run
    from ..report.analysis import winner_runs
    from ..run.status import FAILED
    from ..toolchain import locate

    if not target.exists():
        raise InputError(f"{target}: no such run or sweep folder")
    runs = winner_runs(target) if best else [target]
    caffe = locate()
    results = [extend_run(run, iters, caffe, gpus=gpus or (), log=lambda line: click.echo(line, err=True))
               for run in runs]
    return 1 if any(r.status == FAILED for r in results) else 0


@click.command()
@click.argument("spec", default="default", metavar="[SPEC]")
@click.option("--per-class", type=click.IntRange(1), default=2, show_default=True,
              help="Images per class in the tiny subset (the first ones of the train list).")
@click.option("--max-iter", type=click.IntRange(10), default=300, show_default=True,
              help="Give up (FAIL) after this many iterations.")
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True), default=None,
              help="PASS once the train loss falls below it [default: 10% of ln(classes)].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="base_lr (fixed) [default: the spec's base_lr, else the middle of its grid].")
@click.option("--control", is_flag=True,
              help="Also train with the labels shuffled: with the real labels the loss must fall faster.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the runs and loss.png [default: runs/<spec name>-sanity].")
@click.option("--gpus", callback=_gpus, default=None, metavar="0", help="Run on this GPU (CUDA build).")
def sanity(spec: str, per_class: int, max_iter: int, threshold: float | None, lr: float | None, control: bool,
           out_dir: Path | None, gpus) -> int:
    """Overfit a tiny subset first: PASS or FAIL, exit 0 or 1.

    \b
    Trains SPEC's net on --per-class images of each class with no mirror,
    no weight decay and a fixed base_lr until the train loss (mean of 5
    iterations) falls below the threshold. A net and data wired right
    memorise a few images fast; one that cannot has a bug no sweep will
    tune away. On FAIL the likely causes, in the seeds' order: the labels
    or the list (a frozen classifier, one label for all), the learning
    rate far too low or high (the loss curve says which), the data layer
    and its transform. --control adds a run with the labels shuffled: it
    must need clearly longer (more than 1.5x the iterations) to get there.

    \b
    Examples:
      caffegen sanity                     # the default spec
      caffegen sanity my.toml --per-class 5 --control
    """
    from ..probes.figures import sanity_figure
    from ..probes.sanity import sanity as run_sanity, sparkline
    from ..sweep.spec import load_spec
    from ..toolchain import locate

    s = load_spec(spec)
    out = out_dir or default_out(f"{s.name}-sanity")
    log = lambda line: click.echo(line, err=True)  # noqa: E731
    result = run_sanity(s, out, locate(), per_class=per_class, max_iter=max_iter, threshold=threshold, lr=lr,
                        control=control, gpus=gpus or (), log=log)
    png = sanity_figure(result, out / "loss.png", title=f"sanity: {s.name}")
    click.echo(result.line)
    click.echo(f"  loss {sparkline(result.losses)}")
    if result.control is not None:
        c = result.control
        when = (f"below the threshold at iteration {c.reached_at}" if c.reached_at is not None else
                f"not below the threshold in {c.last_iter} iterations (loss {c.final_loss:.3g})")
        click.echo(f"  control (shuffled labels): {when} {sparkline(c.losses)}")
    for i, cause in enumerate(result.causes, 1):
        click.echo(f"  {i}. {cause}")
    click.echo(f"  {png}")
    return 0 if result.passed else 1
