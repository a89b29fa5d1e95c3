"""``caffegen render``, ``solvers``, ``schedule`` and ``export netscope``: thin wrappers over
:mod:`caffegen.render`, :mod:`caffegen.schedule`, :mod:`caffegen.validate` and :mod:`caffegen.export`.

Options are taken as text and checked by the library's dataclasses, so every bad value becomes one
``caffegen: error: ...`` line and exit 2 (click's own type errors would print a usage block).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import InputError

POLICY_HELP = """\b
Policy parameters (defaults derived from --max-iter N; each one overridable):
  fixed      lr = base_lr
  step       --gamma 0.1, --stepsize ceil(N/3)           ends at base_lr/100
  exp        --gamma (1/1000)^(1/N)                      ends at base_lr/1000
  inv        --power 0.75, --gamma (10^(4/3) - 1)/N      ends at base_lr/10
  multistep  --gamma 0.1, --stepvalue N/2,3N/4           ends at base_lr/100
  poly       --power 1 (linear)                          ends at 0
  sigmoid    --stepsize N/2, --gamma -2 ln(999)/N        ends at ~base_lr/1000
A solver carries only the parameters its policy reads."""

FILES_HELP = """\b
Paths in the files are relative to Caffe's working directory: run
  cd DIR && caffe train -solver solver.prototxt
(the solver's net is "train_val.prototxt"; relative list sources resolve there too)."""

# (flag, NetOptions field, default shown in --help, help)
NET_OPTIONS: list[tuple[str, str, str, str]] = [
    ("--classes", "num_classes", "20", "Number of classes: fc outputs (>= 2)."),
    ("--resize", "resize", "256", "TRAIN ImageData new_height/new_width; the random crop is taken from it."),
    ("--test-resize", "test_resize", "224", "TEST ImageData new_height/new_width (the seed resizes straight to 224)."),
    ("--crop", "crop", "224", "crop_size, <= both resizes; pool5 kernel = feature side after the convs (7 at 224)."),
    ("--train-batch", "train_batch", "16", "TRAIN batch_size."),
    ("--test-batch", "test_batch", "16", "TEST batch_size (also sets the derived test_iter)."),
    ("--mean", "mean", "104,117,124", "mean_value per channel (B,G,R), or one value."),
    ("--train-source", "train_source", "list_train_shuffle.txt", "TRAIN list file (LMDB folder with --backend lmdb)."),
    ("--val-source", "val_source", "list_val_shuffle.txt", "TEST list file (LMDB folder with --backend lmdb)."),
    ("--root-folder", "root_folder", "", "ImageData root_folder prefixed to list paths (written only when set)."),
    ("--conv-widths", "conv_widths", "64,64,128,128,256", "num_output of conv1..convK (3x3, pad 1, stride 2)."),
    ("--filler-std", "filler_std", "0.01", "std of the conv weights' gaussian filler."),
    ("--dropout", "dropout", "0", "Dropout ratio before fc; 0 writes no Dropout layer."),
    ("--accuracy-phase", "accuracy_phase", "both", "Accuracy layers in 'both' phases (the seed) or 'test' only."),
    ("--top-k", "accuracy_top_k", "1,5", "Accuracy top_k values; k >= --classes are left out (always 1)."),
    ("--backend", "backend", "imagedata", "'imagedata' (list files) or 'lmdb' (Caffe Data layers, resized beforehand)."),
    ("--name", "name", "", "Net name (no name: line when empty, like the seed)."),
]

# (flag, SolverOptions field, default shown in --help, help)
SOLVER_OPTIONS: list[tuple[str, str, str, str]] = [
    ("--max-iter", "max_iter", "10000", "Iterations (>= 1); the policy defaults scale with it."),
    ("--gamma", "gamma", "per policy", "lr_policy gamma (see the table below)."),
    ("--stepsize", "stepsize", "per policy", "step/sigmoid stepsize."),
    ("--stepvalue", "stepvalue", "N/2,3N/4", "multistep iterations, strictly increasing, e.g. 5000,7500."),
    ("--power", "power", "per policy", "inv/poly power."),
    ("--test-iter", "test_iter", "ceil(val lines/test batch)",
     "Test batches per test pass; derived from the val list so the whole set is covered; "
     "ceil(1000/test batch) when the list is not readable (the seed's 1000 val images)."),
    ("--test-interval", "test_interval", "max(1, N//20)", "Test every this many iterations."),
    ("--momentum", "momentum", "0.9 (AdaDelta 0.95)", "SGD/Nesterov/Adam/AdaDelta momentum; AdaGrad/RMSProp take none."),
    ("--momentum2", "momentum2", "0.999", "Adam's second moment decay."),
    ("--delta", "delta", "1e-8 (AdaDelta 1e-6)", "AdaGrad/RMSProp/AdaDelta/Adam delta."),
    ("--rms-decay", "rms_decay", "0.99", "RMSProp rms_decay."),
    ("--weight-decay", "weight_decay", "0.0005", "weight_decay."),
    ("--type", "type", "SGD", "Solver type: SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam."),
    ("--display", "display", "20", "Log train loss and lr every this many iterations (0: never)."),
    ("--average-loss", "average_loss", "1", "Displayed loss averaged over this many iterations."),
    ("--iter-size", "iter_size", "1", "Accumulate gradients over this many batches per iteration."),
    ("--snapshot", "snapshot", "0", "Snapshot every this many iterations (0: only the final one)."),
    ("--snapshot-prefix", "snapshot_prefix", "snapshot", "Snapshot file prefix (relative to caffe's cwd)."),
    ("--solver-mode", "solver_mode", "CPU", "CPU or GPU."),
    ("--device-id", "device_id", "0", "GPU id (written only with --solver-mode GPU)."),
    ("--random-seed", "random_seed", "unset", "Seed for weight init and shuffling; unset: Caffe picks one."),
]


def _add_options(table: list[tuple[str, str, str, str]]) -> Callable:
    def deco(f: Callable) -> Callable:
        for flag, field, shown, help_ in reversed(table):
            suffix = f" [default: {shown}]" if shown else " [default: empty]"
            f = click.option(flag, field, default=None, metavar="TEXT" if "source" in field or field in
                             ("root_folder", "name", "snapshot_prefix") else "VALUE", help=help_ + suffix)(f)
        return f
    return deco


def _net_flags(f: Callable) -> Callable:
    f = click.option("--batchnorm/--no-batchnorm", default=False,
                     help="BatchNorm + Scale after each conv (conv bias dropped). [default: no]")(f)
    f = click.option("--mirror/--no-mirror", default=True, help="Random mirror in TRAIN. [default: mirror]")(f)
    return _add_options(NET_OPTIONS)(f)


def _pick(kwargs: dict[str, Any], table: list[tuple[str, str, str, str]]) -> dict[str, Any]:
    return {field: kwargs.pop(field) for _, field, _, _ in table if kwargs.get(field) is not None}


def _net(kwargs: dict[str, Any]):
    from ..render import NetOptions

    picked = _pick(kwargs, NET_OPTIONS)
    for key in ("mirror", "batchnorm"):
        picked[key] = kwargs.pop(key)
    return NetOptions(**picked)


def _note(msg: str | None) -> None:
    if msg:
        click.echo(f"caffegen: note: {msg}", err=True)


def _one_lr(spec: str) -> float:
    from ..render import parse_lrs

    values = parse_lrs(spec)
    if len(values) != 1:
        raise InputError(f"one --lr expected, got {spec!r}; use `caffegen solvers --lr {spec}` for several")
    return values[0]


@click.command(epilog=POLICY_HELP + "\n\n" + FILES_HELP)
@click.option("--lr", "lr", required=True, metavar="LR", help="base_lr (> 0), e.g. 0.01.")
@click.option("--policy", default="step", show_default=True,
              help="lr_policy: fixed, step, exp, inv, multistep, poly, sigmoid.")
@click.option("--out", "out", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Folder for train_val.prototxt, solver.prototxt, deploy.prototxt.")
@click.option("--no-pycaffe-check", is_flag=True,
              help="Skip building the net with pycaffe (the caffe_pb2 schema check still runs).")
@_net_flags
@_add_options(SOLVER_OPTIONS)
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
    from ..render import SolverOptions, resolve_test_iter, write_variant

    if "," in policy or policy.strip().lower() == "all":
        raise InputError(f"render takes one --policy, got {policy!r}; use `caffegen solvers --policy {policy}`")
    net = _net(kwargs)
    solver = SolverOptions(base_lr=_one_lr(lr), lr_policy=policy, **_pick(kwargs, SOLVER_OPTIONS))
    solver, note = resolve_test_iter(solver, net, Path(out))
    _note(note)
    paths = write_variant(out, net, solver, validate=True, pycaffe_check=not no_pycaffe_check)
    for path in paths.values():
        click.echo(str(path))


@click.command(epilog=POLICY_HELP + "\n\n" + FILES_HELP.replace("solver.prototxt", "<name>.prototxt"))
@click.option("--lr", "lr", required=True, metavar="LR[,LR...]", help="base_lr values, e.g. 0.1,0.01,0.001.")
@click.option("--policy", default="all", show_default=True,
              help="'all' or a comma list of fixed, step, exp, inv, multistep, poly, sigmoid.")
@click.option("--out", "out", default="solvers", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the solvers, train_val.prototxt and index.csv/index.json.")
@click.option("--no-pycaffe-check", is_flag=True,
              help="Skip building the net with pycaffe (the caffe_pb2 schema check still runs).")
@_net_flags
@_add_options(SOLVER_OPTIONS)
def solvers(lr: str, policy: str, out: str, no_pycaffe_check: bool, **kwargs: Any) -> None:
    """Write one solver per learning rate x policy, e.g. solvers/lr0.01_step.prototxt.

    \b
    Each solver uses net "train_val.prototxt" (written beside them, shared) and
    snapshot_prefix "<name>"; index.csv and index.json list every variant's
    effective parameters. A non-SGD --type adds its name: lr0.001_fixed_adam.
    All files are validated with Caffe before the first one is written.

    \b
    Example:
      caffegen solvers --lr 0.1,0.01,0.001 --policy all      # 21 solvers
    """
    from ..render import SolverOptions, parse_lrs, resolve_test_iter, write_solver_set
    from ..schedule import parse_policies

    net = _net(kwargs)
    lrs = parse_lrs(lr)
    policies = parse_policies(policy)
    base = SolverOptions(base_lr=lrs[0], lr_policy=policies[0],
                         **_pick(kwargs, SOLVER_OPTIONS))
    base, note = resolve_test_iter(base, net, Path(out))
    _note(note)
    rows = write_solver_set(out, net, base, lrs, policies, validate=True, pycaffe_check=not no_pycaffe_check)
    for row in rows:
        click.echo(str(Path(out) / row["file"]))
    click.echo(f"{len(rows)} solvers, index: {Path(out) / 'index.csv'}")


@click.command(epilog=POLICY_HELP)
@click.option("--lr", "lr", default="0.01", show_default=True, metavar="LR", help="base_lr (> 0).")
@click.option("--policy", default="all", show_default=True, help="'all' or a comma list of policies.")
@click.option("--max-iter", "max_iter", default="10000", show_default=True, metavar="N", help="Iterations.")
@click.option("--gamma", default=None, metavar="VALUE", help="Override gamma for every plotted policy that reads it.")
@click.option("--stepsize", default=None, metavar="VALUE", help="Override stepsize (step, sigmoid).")
@click.option("--stepvalue", default=None, metavar="VALUE", help="Override stepvalue (multistep), e.g. 5000,7500.")
@click.option("--power", default=None, metavar="VALUE", help="Override power (inv, poly).")
@click.option("--out", "out", default="lr_schedule.png", show_default=True, type=click.Path(dir_okay=False),
              help="PNG to write (log y axis).")
def schedule(lr: str, policy: str, max_iter: str, out: str, **overrides: Any) -> None:
    """Plot lr against iteration for each policy, with Caffe's own math.

    \b
    The curves come from caffegen.schedule, a port of Caffe 1.0's
    SGDSolver::GetLearningRate (float32 parameters, multistep bookkeeping),
    tested against the lr that a real `caffe train` prints. Also prints the lr
    at 0, N/4, N/2, 3N/4 and N-1 for each policy.

    \b
    Example:
      caffegen schedule --lr 0.01 --policy all --max-iter 10000 --out lr.png
    """
    from ..schedule import format_lr, lr_curve, parse_policies, plot_schedules
    from ..render import SolverOptions

    base_lr = _one_lr(lr)
    given = {k: v for k, v in overrides.items() if v is not None}
    curves = {}
    n = None
    for pol in parse_policies(policy):
        opts = SolverOptions(base_lr=base_lr, lr_policy=pol, max_iter=max_iter, **given)
        n = opts.max_iter
        params = opts.policy_params()
        shown = ", ".join(f"{k} {','.join(map(str, v)) if isinstance(v, list) else format(v, 'g')}"
                          for k, v in params.items())
        curves[f"{pol} ({shown})" if shown else pol] = lr_curve(pol, opts.base_lr, n, **params)
    assert n is not None
    marks = sorted({0, n // 4, n // 2, (3 * n) // 4, n - 1})
    width = max(len(k) for k in curves)
    click.echo(f"{'policy':<{width}}  " + "  ".join(f"{'it ' + str(m):>12}" for m in marks))
    for label, (_, lrs) in curves.items():
        click.echo(f"{label:<{width}}  " + "  ".join(f"{format_lr(lrs[m]):>12}" for m in marks))
    click.echo(str(plot_schedules(curves, out, title=f"lr schedules, base_lr {base_lr:g}, max_iter {n}")))


@click.group()
def export() -> None:
    """Export the net for other tools.

    \b
    caffegen export netscope [--out FILE]    deploy-form prototxt for Netscope
    """


@export.command(epilog="Paste the output into http://ethereon.github.io/netscope/#/editor")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False),
              help="File to write [default: print to stdout].")
@click.option("--no-pycaffe-check", is_flag=True, help="Skip loading the net with pycaffe.")
@_net_flags
def netscope(out: str | None, no_pycaffe_check: bool, **kwargs: Any) -> None:
    """Deploy-form prototxt that Netscope draws with every blob shape inferred.

    \b
    An Input layer of shape [1, 3, crop, crop], the conv trunk, pool, fc and a
    Softmax "prob": no data layers, nothing phase-specific, no Accuracy or loss
    (Netscope's shape inference rejects them). The same net options as
    `caffegen render` apply; the net is checked with caffe_pb2 and loaded with
    pycaffe before it is written.
    """
    from ..export import netscope as to_netscope
    from ..validate import check_deploy, check_text

    net = _net(kwargs)
    text = to_netscope(net)
    where = out or "<netscope export>"
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
