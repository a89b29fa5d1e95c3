"""Curves plots: a PNG for a healthy and for a diverged run, from the library and the CLI."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

from PIL import Image

from caffegen.logs import parse_log
from caffegen.plotting import ema
from caffegen.report.figures import plot_curves
from helpers import pixels_like

LOGS = Path(__file__).parent / "fixtures" / "logs"


def test_ema_skips_nan_and_smooths():
    out = ema([1.0, 3.0, float("nan"), 3.0], 0.5)
    assert out[:2] == [1.0, 2.0] and math.isnan(out[2]) and out[3] == 2.5


def test_plot_curves_draws_the_loss_and_top1_of_a_healthy_run(tmp_path):
    out = plot_curves(parse_log(LOGS / "late_jump.log"), tmp_path / "c.png", title="late jump")
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 400
    assert pixels_like(out, "blue") > 200 and pixels_like(out, "green") > 200   # train loss, test top-1
    assert pixels_like(out, "red", tol=30) == 0                                   # nothing diverged


def test_plot_of_a_diverged_run_marks_where_it_turned_nan(tmp_path):
    out = plot_curves(parse_log(LOGS / "diverged.log"), tmp_path / "d.png")
    assert pixels_like(out, "red", tol=30) > 20


def test_cli_plot_run_dir(tmp_path):
    from click.testing import CliRunner

    from caffegen.cli import cli

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(LOGS / "two_test_nets.log", run / "train.log")
    result = CliRunner().invoke(cli, ["plot", str(run)])
    assert result.exit_code == 0, result.output
    png = run / "curves.png"
    assert pixels_like(png, "blue") > 200 and pixels_like(png, "green") > 100   # train loss, net #0's top-1
