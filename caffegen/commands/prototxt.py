"""``caffegen render``, ``solvers``, ``schedule`` and ``export netscope`` (``export tensorboard`` is in commands/report): thin wrappers over
:mod:`caffegen.prototxt`. Their net and solver options are generated from the option dataclasses
(:mod:`caffegen.commands.options`), defaults and help included.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import InputError
from ..prototxt.options import SCHEDULE_KNOBS, NetOptions, SolverOptions
from ..prototxt.chains import describe_chain_defaults
from ..prototxt.schedule import POLICIES, describe_policy_defaults
from .options import dataclass_options, pick

_SOLVER_FIXED = ("base_lr", "lr_policy", "net")  # given as --lr/--policy by each command; net is always train_val


def _policy_help() -> str:
    rows = describe_policy_defaults() + describe_chain_defaults()
    width = max(len(params) for _, params, _ in rows)
    lines = [f"  {policy:<12} {params:<{width}}  ends at {end}" for policy, params, end in rows]
    return "\n".join(["\b", "Policy parameters (defaults derived from --max-iter N; each one overridable):", *lines,
                      "A solver carries only the parameters its policy reads. The schedules after Caffe's seven are",
                      "chains of segments, each a caffe train resumed from the last snapshot (docs/schedules.md)."])


POLICY_HELP = _policy_help()

FILES_HELP = """\b
Paths in the files are relative to Caffe's working directory: run
  cd DIR && caffe train -solver solver.prototxt
(the solver's net is "train_val.prototxt"; relative list sources resolve there too)."""


def _net_and_solver_options(fn):
    """``--no-pycaffe-check`` and every NetOptions / SolverOptions field as an option (render, solvers)."""
    fn = dataclass_options(SolverOptions, exclude=_SOLVER_FIXED)(fn)
    fn = dataclass_options(NetOptions)(fn)
    return click.option("--no-pycaffe-check", is_flag=True,
                        help="Skip building the net with pycaffe (the caffe_pb2 schema check still runs).")(fn)


def _net(kwargs: dict[str, Any]) -> NetOptions:
    return NetOptions(**pick(kwargs, NetOptions))


def _solver(kwargs: dict[str, Any], **fixed: Any) -> SolverOptions:
    return SolverOptions(**fixed, **pick(kwargs, SolverOptions, exclude=_SOLVER_FIXED))


def _notes(notes: list[str]) -> None:
    for msg in notes:
        click.echo(f"caffegen: note: {msg}", err=True)


def _one_lr(spec: str) -> float:
    from ..checks import parse_lrs

    values = parse_lrs(spec)
    if len(values) != 1:
        raise InputError(f"one --lr expected, got {spec!r}; use `caffegen solvers --lr {spec}` for several")
    return values[0]


@click.command(epilog=POLICY_HELP + "\n\n" + FILES_HELP)
@click.option("--lr", "lr", required=True, metavar="LR", help="base_lr (> 0), e.g. 0.01.")
@click.option("--policy", default="step", show_default=True, help=f"lr_policy: {', '.join(POLICIES)}.")
@click.option("--out", "out", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder for train_val.prototxt, solver.prototxt, deploy.prototxt.")
@_net_and_solver_options
def render(lr: str, policy: str, out: str, no_pycaffe_check: bool, **kwargs: Any) -> None:
    """Write DIR/train_val.prototxt, DIR/solver.prototxt and DIR/deploy.prototxt for one learning rate.

    \b
    At the defaults the net is the seed's baseline exactly (ImageData 256 -> crop
    224, conv1-5 64/64/128/128/256 stride 2, AVE pool 7, fc 20, top-1/top-5
    accuracy, SoftmaxWithLoss). Every file is checked against Caffe's schema and
    the net is built by pycaffe in TRAIN and TEST (pool 1x1, fc N x classes)
    before anything is written.

    \b
    Example:
      caffegen render --lr 0.01 --policy multistep --max-iter 20000 --out runs/lr0.01
    """
    from ..prototxt.files import write_variant

    from ..prototxt.chains import chained, resolve_schedule

    if "," in policy or policy.strip().lower() in ("all", "every"):
        raise InputError(f"render takes one --policy, got {policy!r}; use `caffegen solvers --policy {policy}`")
    if chained(resolve_schedule(policy)):
        raise InputError(f"{policy} is a chain of segments, not one solver: `caffegen solvers --lr {lr} --policy "
                         f"{policy}` writes its segment solvers and a script that runs them; `caffegen sweep` runs it")
    net = _net(kwargs)
    solver = _solver(kwargs, base_lr=_one_lr(lr), lr_policy=policy)
    written = write_variant(out, net, solver, validate=True, pycaffe_check=not no_pycaffe_check)
    _notes(written.notes)
    for path in written.paths.values():
        click.echo(str(path))


@click.command(epilog=POLICY_HELP + "\n\n" + FILES_HELP.replace("solver.prototxt", "<name>.prototxt"))
@click.option("--lr", "lr", required=True, metavar="LR[,LR...]", help="base_lr values, e.g. 0.1,0.01,0.001.")
@click.option("--policy", default="all", show_default=True,
              help=f"'all' (Caffe's seven), 'every' (those and the chained schedules) or a comma list of "
                   f"{', '.join(POLICIES)} and the chained ones (below).")
@click.option("--out", "out", default="solvers", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the solvers, train_val.prototxt and index.csv/index.json.")
@click.option("--net", "net_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Your own train_val.prototxt instead of the template net (the template's net options then do "
                   "not apply).")
@click.option("--base-solver", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --net: your solver.prototxt; every field the grid and the options do not set comes from it.")
@_net_and_solver_options
def solvers(lr: str, policy: str, out: str, net_file: Path | None, base_solver: Path | None, no_pycaffe_check: bool,
            **kwargs: Any) -> None:
    """Write one solver per learning rate x policy, e.g. solvers/lr0.01_step.prototxt.

    \b
    Each solver uses net "train_val.prototxt" (written beside them, shared) and
    snapshot_prefix "<name>"; index.csv and index.json list every variant's
    effective parameters. A non-SGD --type adds its name: lr0.001_fixed_adam.
    All files are validated with Caffe before the first one is written.

    \b
    With --net FILE (any Caffe train_val) the solvers name FILE by its absolute
    path instead (run caffe from the folder its relative paths expect, a Model
    Zoo net's Caffe root); --base-solver gives every other field. Policy
    parameters come from the base only for the base's own lr_policy.

    \b
    A chained schedule (cosine, onecycle, step+warmup...) is several solvers,
    <name>.segNN.prototxt, and <name>.sh that runs them in turn, each resumed
    from the previous one's snapshot (`caffegen sweep` also carries the TRAIN
    data stream across them; plateau needs the sweep: it is refused here).

    \b
    Examples:
      caffegen solvers --lr 0.1,0.01,0.001 --policy all      # 21 solvers
      caffegen solvers --lr 0.01 --policy cosine,onecycle     # 2 chains
      caffegen solvers --net models/finetune_flickr_style/train_val.prototxt \\
          --base-solver models/finetune_flickr_style/solver.prototxt --lr 0.001,0.0001
    """
    from ..checks import parse_lrs
    from ..prototxt.files import write_solver_set, write_user_solver_set
    from ..prototxt.chains import parse_schedules

    lrs = parse_lrs(lr)
    policies = parse_schedules(policy)
    if base_solver is not None and net_file is None:
        raise InputError("--base-solver goes with --net (the template net's solvers take the options directly)")
    if net_file is not None:
        template = pick(kwargs, NetOptions)
        if template:
            raise InputError(f"--net {net_file} is your own net: the template's net options "
                             f"({', '.join(sorted(template))}) do not apply to it")
        for path in (net_file, base_solver):
            if path is not None and not path.is_file():
                raise InputError(f"no such file: {path}")
        written = write_user_solver_set(out, net_file, lrs, policies, pick(kwargs, SolverOptions, _SOLVER_FIXED),
                                        base_path=base_solver)
    else:
        net = _net(kwargs)
        base = _solver(kwargs, base_lr=lrs[0], lr_policy=policies[0])
        written = write_solver_set(out, net, base, lrs, policies, validate=True, pycaffe_check=not no_pycaffe_check)
    _notes(written.notes)
    for row in written.rows:
        click.echo(str(Path(out) / row["file"]))
    click.echo(f"{len(written.rows)} solvers, index: {Path(out) / 'index.csv'}")


# every schedule's knobs (their owners declare them: caffegen.prototxt.knobs), the warm-up's, and the test passes
# plateau decides at
_SCHEDULE_OPTIONS = SCHEDULE_KNOBS + ("warmup_iter", "warmup_start", "test_interval")


@click.command(epilog=POLICY_HELP)
@click.option("--lr", "lr", default="0.01", show_default=True, metavar="LR", help="base_lr (> 0).")
@click.option("--policy", default="all", show_default=True,
              help="'all' (Caffe's seven), 'every' (those and the chained schedules) or a comma list, e.g. "
                   "step,cosine,onecycle,step+warmup.")
@click.option("--max-iter", "max_iter", default="10000", show_default=True, metavar="N", help="Iterations.")
@dataclass_options(SolverOptions, include=_SCHEDULE_OPTIONS)
@click.option("--out", "out", default="lr_schedule.png", show_default=True, type=click.Path(dir_okay=False),
              help="PNG to write.")
def schedule(lr: str, policy: str, max_iter: str, out: str, **overrides: Any) -> None:
    """Plot lr against iteration for each schedule, with Caffe's own math.

    \b
    Caffe's seven policies come from caffegen.prototxt.schedule, a port of
    Caffe 1.0's SGDSolver::GetLearningRate (float32 parameters, multistep
    bookkeeping), tested against the lr a real `caffe train` prints. The
    chained schedules (cosine, sgdr, onecycle, triangular, linear, plateau,
    <any>+warmup) are drawn twice: their ideal curve (dashed) and the lr
    Caffe uses along their segments (solid); the largest gap between the two
    is printed (0 for the piecewise-linear ones; within 1% of base_lr for
    cosine and sgdr). A plateau's drops depend on
    the run: only its start is drawn. Also prints the lr at 0, N/4, N/2, 3N/4
    and N-1 and each schedule's number of segments.

    \b
    Example:
      caffegen schedule --lr 0.01 --policy every --max-iter 600 --out lr.png
    """
    import numpy as np

    from ..prototxt.chains import chain_lr, ideal_lr, parse_schedules
    from ..prototxt.schedule import format_lr, lr_curve
    from ..report.figures import plot_schedules

    base_lr = _one_lr(lr)
    given = {k: v for k, v in overrides.items() if v is not None}
    curves, ideal, rows = {}, {}, []
    n = None
    for pol in parse_schedules(policy):
        opts = SolverOptions(base_lr=base_lr, lr_policy=pol, max_iter=max_iter, **given)
        n = opts.max_iter
        params = opts.policy_params()
        shown = ", ".join(f"{k} {','.join(map(str, v)) if isinstance(v, list) else format(v, 'g')}"
                          for k, v in params.items())
        label = f"{pol} ({shown})" if shown else pol
        its = np.arange(n)
        if opts.is_chain:
            pieces = opts.pieces()
            curves[label] = (its, chain_lr(pieces, its))
            ideal[label] = (its, ideal_lr(pol, opts.base_lr, n, params, its))
            gap = float(np.max(np.abs(curves[label][1] - ideal[label][1])))
            rows.append((label, len(pieces), gap))
        else:
            curves[label] = lr_curve(pol, opts.base_lr, n, **params)
            rows.append((label, 1, 0.0))
    assert n is not None
    marks = sorted({0, n // 4, n // 2, (3 * n) // 4, n - 1})
    width = max(len(k) for k in curves)
    click.echo(f"{'policy':<{width}}  " + "  ".join(f"{'it ' + str(m):>12}" for m in marks)
               + f"  {'segments':>8}  largest gap to the ideal curve")
    for (label, (_, lrs)), (_, segments, gap) in zip(curves.items(), rows):
        click.echo(f"{label:<{width}}  " + "  ".join(f"{format_lr(lrs[m]):>12}" for m in marks)
                   + f"  {segments:>8}  {format_lr(gap)} ({100 * gap / base_lr:.2f}% of base_lr)")
    click.echo(str(plot_schedules(curves, out, ideal=ideal or None,
                                  title=f"lr schedules, base_lr {base_lr:g}, max_iter {n}")))


@click.group()
def export() -> None:
    """Export the net, or a sweep's curves, for other tools.

    \b
    caffegen export netscope [NET] [--out FILE]    deploy-form prototxt for Netscope
    caffegen export tensorboard [SWEEP|RUN]        a TensorBoard log directory (scalars, HParams, PR curves)
    """


def _shape(ctx, param, value: str | None):  # noqa: ARG001
    if value is None:
        return None
    try:
        dims = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not N,C,H,W, e.g. 1,3,227,227") from None
    if len(dims) != 4 or min(dims) < 1:
        raise click.BadParameter(f"{value!r} is not N,C,H,W with every dimension >= 1")
    return dims


@export.command(epilog="Paste the output into http://ethereon.github.io/netscope/#/editor")
@click.argument("net_file", metavar="[NET]", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False),
              help="File to write [default: print to stdout].")
@click.option("--input-shape", callback=_shape, default=None, metavar="N,C,H,W",
              help="NET's input shape when its data layers do not say it (no crop_size) [default: from the TEST "
                   "data layer: 1, channels, crop, crop].")
@click.option("--no-pycaffe-check", is_flag=True, help="Skip loading the net with pycaffe.")
@dataclass_options(NetOptions)
def netscope(net_file: Path | None, out: str | None, input_shape, no_pycaffe_check: bool, **kwargs: Any) -> None:
    """Deploy-form prototxt that Netscope draws with every blob shape inferred.

    \b
    An Input layer, the net's layers and a Softmax "prob": no data layers,
    nothing phase-specific, no Accuracy or loss (Netscope's shape inference
    rejects them). With no NET it is the template net (the same net options as
    `caffegen render` apply). With NET (any Caffe train_val.prototxt) its data
    layers become one Input of shape [1, C, crop, crop] (C from is_color or
    the mean; or --input-shape), the layers that read the label and the
    TRAIN-only layers go, and each SoftmaxWithLoss becomes a Softmax ("prob"
    for the main output, "prob_1", "prob_2"... for auxiliary heads). The
    result is checked with caffe_pb2 and run forward once by pycaffe before it
    is written.

    \b
    Examples:
      caffegen export netscope --out net.prototxt
      caffegen export netscope models/bvlc_googlenet/train_val.prototxt --out googlenet.prototxt
    """
    from ..prototxt.netscope import netscope as to_netscope
    from ..prototxt.deploy import deploy_text
    from ..prototxt.netread import load_net
    from ..prototxt.validate import check_deploy, check_forward, check_text

    where = out or "<netscope export>"
    if net_file is not None:
        template = pick(kwargs, NetOptions)
        if template:
            raise InputError(f"{net_file} is your own net: the template's net options ({', '.join(sorted(template))}) "
                             "do not apply to it")
        if not net_file.is_file():
            raise InputError(f"no such net file: {net_file}")
        text = deploy_text(load_net(net_file), input_shape, where=str(net_file), root=net_file.parent)
        check_text(text, "net", where)
        if not no_pycaffe_check:
            check_forward(text, where)
    else:
        if input_shape is not None:
            raise InputError("--input-shape goes with a NET file (the template's input is set by --crop)")
        net = _net(kwargs)
        text = to_netscope(net)
        check_text(text, "net", where)
        if not no_pycaffe_check:
            check_deploy(text, net, where)
    if out is None:
        click.echo(text, nl=False)
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    click.echo(str(path))


def _add_tensorboard() -> None:
    from .report import tensorboard  # (click only: the exporter itself is imported when it runs)

    export.add_command(tensorboard)


_add_tensorboard()
