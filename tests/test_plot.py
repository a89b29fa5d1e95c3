"""Curves plots: a PNG for a healthy and for a diverged run, from the library and the CLI."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

from PIL import Image

from caffegen.logs import parse_log
from caffegen.report.figures import ema, plot_curves

LOGS = Path(__file__).parent / "fixtures" / "logs"


def test_ema_skips_nan_and_smooths():
    out = ema([1.0, 3.0, float("nan"), 3.0], 0.5)
    assert out[:2] == [1.0, 2.0] and math.isnan(out[2]) and out[3] == 2.5


def test_plot_curves_writes_a_png(tmp_path):
    out = plot_curves(parse_log(LOGS / "late_jump.log"), tmp_path / "c.png", title="late jump")
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size[0] > 400


def test_plot_a_diverged_run(tmp_path):
    out = plot_curves(parse_log(LOGS / "diverged.log"), tmp_path / "d.png")
    assert out.stat().st_size > 1000


def test_cli_plot_run_dir(tmp_path):
    from click.testing import CliRunner

    from caffegen.cli import cli

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(LOGS / "two_test_nets.log", run / "train.log")
    result = CliRunner().invoke(cli, ["plot", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "curves.png").stat().st_size > 1000
