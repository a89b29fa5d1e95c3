"""`caffegen lr-find`: the LR range test as one real Caffe run, and its pure parts."""
from __future__ import annotations

import math
import re
import subprocess
import sys
import tomllib

import pytest

from caffegen.probes.lrfind import gamma_for, grid_around, smooth, spec_with_lrs, suggest
from helpers import write_spec

CAFFEGEN = [sys.executable, "-m", "caffegen"]


def test_smoothing_is_the_debiased_moving_average_and_the_gamma_spans_the_range():
    assert smooth([2.0, 2.0, 2.0]) == pytest.approx([2.0, 2.0, 2.0])  # debiased: no pull towards 0 at the start
    s = smooth([1.0, 3.0])
    assert s[1] == pytest.approx((0.98 * 0.02 * 1 + 0.02 * 3) / (1 - 0.98 ** 2))
    assert 1e-7 * gamma_for(1e-7, 10, 100) ** 100 == pytest.approx(10)
    assert gamma_for(1e-7, 10, 100) == pytest.approx(10 ** 0.08)  # the anchor's 1.2023


def test_suggestions_on_a_known_curve():
    lrs = [10 ** (-6 + 6 * k / 99) for k in range(100)]  # 1e-6 .. 1
    loss = [2.0 if lr < 1e-4 else 2.0 - math.log10(lr / 1e-4) if lr < 1e-2 else 0.5 * math.exp(lr * 30)
            for lr in lrs]
    s = suggest(lrs, loss)
    assert 1e-4 < s["valley"] < 1e-2 and 1e-4 <= s["steep"] < 1e-2     # on the falling stretch
    assert s["minimum/10"] == pytest.approx(lrs[min(range(100), key=lambda i: loss[i])] / 10)
    assert grid_around(0.0063) == [0.002, 0.006, 0.02]


def test_a_written_spec_keeps_everything_but_the_grids_base_lr():
    text = '[data]\ndemo = {}\n[grid]\nbase_lr = [0.1, 0.01]\nlr_policy = "all"\n[run]\njobs = 2\n'
    out = tomllib.loads(spec_with_lrs(text, [0.002, 0.006, 0.02]))
    assert out["grid"] == {"base_lr": [0.002, 0.006, 0.02], "lr_policy": "all"} and out["run"] == {"jobs": 2}
    assert tomllib.loads(spec_with_lrs("[data]\ndemo = {}\n", [0.1]))["grid"]["base_lr"] == [0.1]


@pytest.mark.caffe
def test_lr_find_on_a_tiny_real_net(tmp_path, caffe_install):
    spec = write_spec(tmp_path, name="lrf")
    proc = subprocess.run(CAFFEGEN + ["lr-find", str(spec), "--start", "1e-5", "--end", "100", "--iters", "120",
                                      "--write-spec", "found.toml"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "runs" / "lrf-lr-find"
    log = (run / "lr-find" / "train.log").read_text()
    lrs = [float(x) for x in re.findall(r"Iteration \d+, lr = (\S+)", log)]
    assert len(lrs) > 10 and all(b > a for a, b in zip(lrs, lrs[1:]))  # strictly rising, as Caffe ran it
    last = max(int(x) for x in re.findall(r"Iteration (\d+), loss", log))
    assert last < 120 and "Optimization Done" not in log            # stopped once the loss blew up
    blew = float(re.search(r"blew up at (\S+)", proc.stdout).group(1))
    suggested = float(re.search(r"suggested base_lr: (\S+) \(valley", proc.stdout).group(1))
    assert 1e-5 <= suggested < blew <= 100                            # below the blow-up, inside the range
    grid = tomllib.loads((tmp_path / "found.toml").read_text())["grid"]["base_lr"]
    assert len(grid) == 3 and grid == sorted(grid) and grid[0] < suggested < grid[2]
    assert (run / "lr_find.png").read_bytes().startswith(b"\x89PNG") and (run / "lr-find" / "lr_find.csv").exists()
