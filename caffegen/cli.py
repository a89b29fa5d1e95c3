"""The ``caffegen`` command: a thin wrapper over the library, one small command per pipeline stage.

Subcommands live in :mod:`caffegen.commands` and are imported only when invoked, so ``caffegen --help``
stays fast and never imports pycaffe.
"""
from __future__ import annotations

import importlib
import sys

import click

from . import __version__
from .errors import CaffegenError

# name -> (module in caffegen.commands, attribute, one-line help shown by `caffegen --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "doctor": ("doctor", "doctor", "Check the Caffe install: binary, version, pycaffe, GPU, BLAS, cache."),
    "build-caffe": ("doctor", "build_caffe", "Fetch, fix and build Caffe into the cache (what `make caffe` runs)."),
    "render": ("prototxt", "render", "Write train_val/solver/deploy prototxt for one learning rate."),
    "solvers": ("prototxt", "solvers", "Write one solver per base_lr x lr_policy into solvers/."),
    "schedule": ("prototxt", "schedule", "Plot the learning-rate schedule of each policy (Caffe's own math)."),
    "export": ("prototxt", "export", "Export the net (Netscope) or a sweep (TensorBoard) for other tools."),
    "lists": ("data", "lists", "Turn an image folder (or CSV) into shuffled, stratified list files."),
    "demo-data": ("data", "demo_data", "Generate the deterministic synthetic demo image set."),
    "prepare": ("data", "prepare", "Convert the list files to LMDB with Caffe's convert_imageset."),
    "tune": ("tune", "tune", "From a net and an image folder to a trusted answer: sanity, lr-find, search, confirm, "
                             "final."),
    "sweep": ("sweep", "sweep", "Run `caffe train` for every variant of a sweep spec."),
    "status": ("sweep", "status", "Show the state of a sweep, also while it runs."),
    "sanity": ("sweep", "sanity", "Overfit a tiny subset first (PASS/FAIL): are the net, labels and data wired right?"),
    "lr-find": ("sweep", "lr_find", "The LR range test: one short run with a rising lr, and a suggested base_lr."),
    "extend": ("sweep", "extend", "Continue a run (or a sweep's winner) from its snapshot to a new max_iter."),
    "parse": ("logs", "parse", "Turn a Caffe training log into train/test CSV and JSON curves."),
    "plot": ("logs", "plot", "Plot the curves of one run or log."),
    "report": ("report", "report", "Rank and diagnose a finished sweep: HTML, Markdown, CSV."),
    "evaluate": ("evaluate", "evaluate", "Score a run's (or a sweep winner's) snapshot: confusion, per class, PR/ROC."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(f"caffegen.commands.{module}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, helptext) for name, (_, _, helptext) in COMMANDS.items()])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="caffegen")
def cli() -> None:
    """Tune Caffe models with reproducible sweeps on the real Caffe.

    \b
    The expert workflow in one command:
      caffegen tune --data ~/my-images     sanity, lr-find, search, confirm, final
    \b
    The pipeline, one command per stage:
      caffegen render --lr 0.01            baseline train_val/solver/deploy prototxt
      caffegen solvers --lr 0.1,0.01 --policy all
      caffegen sweep default               run every variant (parallel, resumable)
      caffegen report runs/default         ranked, diagnosed HTML report
    \b
    Exit codes: 0 success, 1 a run-time failure (caffe crashed, no Caffe found),
    2 bad input (typo, bad number, missing file). Errors are one line on stderr.
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning caffegen errors into one line and their exit code."""
    try:
        rv = cli.main(args=argv, prog_name="caffegen", standalone_mode=False)
    except CaffegenError as exc:
        click.echo(f"caffegen: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("caffegen: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # bad option or value: one line, as for every other bad input
        where = f"{exc.ctx.command_path}: " if exc.ctx else ""
        click.echo(f"caffegen: error: {where}{exc.format_message()} (see --help)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"caffegen: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)
