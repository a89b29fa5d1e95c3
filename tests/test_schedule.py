"""The lr schedule preview: a port of Caffe's SGDSolver::GetLearningRate, checked against real `caffe train`."""
from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest

from caffegen.errors import InputError
from helpers import pixels_like
from caffegen.prototxt import SolverOptions, render_solver
from caffegen.prototxt.chains import parse_schedules
from caffegen.prototxt.schedule import POLICIES, format_lr, learning_rate, lr_curve, policy_defaults, resolve_policy
from caffegen.report.figures import plot_schedules


def test_policy_names_are_case_insensitive_and_typos_name_the_nearest():
    assert resolve_policy("MultiStep") == "multistep"
    with pytest.raises(InputError, match="did you mean 'step'"):
        resolve_policy("stpe")
    with pytest.raises(InputError, match="did you mean 'sigmoid'"):
        resolve_policy("sigmod")
    assert parse_schedules("all") == list(POLICIES)
    assert parse_schedules("exp, STEP,exp") == ["exp", "step"]


@pytest.mark.parametrize("policy, end_ratio", [
    ("fixed", 1.0), ("step", 1e-2), ("exp", 1e-3), ("inv", 1e-1), ("multistep", 1e-2), ("sigmoid", 1e-3),
])
def test_default_parameters_make_each_policy_a_fair_contender(policy, end_ratio):
    # Over a 9000-iteration run each policy starts at base_lr and ends where docs/render.md says
    # (Caffe's last update is iteration max_iter - 1).
    n, base = 9000, 0.01
    params = policy_defaults(policy, n)
    first = learning_rate(policy, 0, base, max_iter=n, **params)
    last = learning_rate(policy, n - 1, base, max_iter=n, **params)
    assert first == pytest.approx(base, rel=2e-3)
    assert last / base == pytest.approx(end_ratio, rel=2e-2)


def test_step_drops_twice_and_poly_is_linear():
    n = 9000
    its, lrs = lr_curve("step", 0.1, n, **policy_defaults("step", n))
    assert sorted(set(np.round(lrs / 0.1, 6))) == [0.01, 0.1, 1.0]
    assert its[np.argmax(lrs < 0.1)] == 3000
    _, poly = lr_curve("poly", 0.1, n, **policy_defaults("poly", n))
    assert poly[4500] == pytest.approx(0.05, rel=1e-6)


def test_multistep_advances_at_most_one_step_per_iteration_like_caffe():
    # Caffe compares iter with stepvalue[current_step] once per iteration, so [10, 3] steps at 10 and 11.
    lrs = [learning_rate("multistep", it, 1.0, gamma=0.5, stepvalue=[10, 3]) for it in range(13)]
    assert lrs[:10] == [1.0] * 10 and lrs[10:] == [0.5, 0.25, 0.25]


@pytest.mark.parametrize("policy", POLICIES)
def test_numpy_curve_equals_the_scalar_port(policy):
    n = 2000
    params = policy_defaults(policy, n)
    its, lrs = lr_curve(policy, 0.03, n, **params)
    scalar = np.array([learning_rate(policy, it, 0.03, max_iter=n, **params) for it in its])
    np.testing.assert_array_equal(lrs, scalar)


def test_plot_writes_a_png(tmp_path):
    n = 500
    curves = {p: lr_curve(p, 0.01, n, **policy_defaults(p, n)) for p in POLICIES}
    out = plot_schedules(curves, tmp_path / "lr.png")
    for colour in ("blue", "orange", "green", "tab:red", "purple"):   # one line per policy, in matplotlib's cycle
        assert pixels_like(out, colour, tol=30) > 50, colour


def test_schedule_command_prints_the_table_and_writes_the_png(tmp_path):
    from click.testing import CliRunner

    from caffegen.cli import cli

    result = CliRunner().invoke(cli, ["schedule", "--lr", "0.01", "--policy", "step,exp", "--max-iter", "300",
                                      "--out", str(tmp_path / "lr.png")])
    assert result.exit_code == 0, result.output
    step_row = next(line for line in result.output.splitlines() if line.startswith("step"))
    values = step_row.split(")", 1)[1].split()
    assert values[:5] == ["0.01", "0.01", "0.001", "0.0001", "0.0001"]  # its 0, 75, 150, 225, 299
    assert values[5] == "1" and values[6] == "0"    # one segment: Caffe's own policy, no gap to the ideal
    assert pixels_like(tmp_path / "lr.png", "blue", tol=30) > 50 and pixels_like(tmp_path / "lr.png", "orange",
                                                                                   tol=30) > 50


# A net that needs no data: Caffe trains it in milliseconds, which is all the lr check needs.
DUMMY_NET = """
layer { name: "data" type: "DummyData" top: "data" top: "label"
  dummy_data_param {
    shape { dim: 2 dim: 3 dim: 4 dim: 4 } shape { dim: 2 }
    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 0 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""

# Policy parameters chosen so that the lr changes inside a 30-iteration run.
SHORT_RUNS = {
    "fixed": {},
    "step": {"gamma": 0.5, "stepsize": 7},
    "exp": {"gamma": 0.9},
    "inv": {"gamma": 0.1, "power": 0.75},
    "multistep": {"gamma": 0.3, "stepvalue": (5, 12, 20)},
    "poly": {"power": 2.0},
    "sigmoid": {"gamma": -0.3, "stepsize": 15},
}
LR_LINE = re.compile(r"Iteration (\d+), lr = (\S+)")


@pytest.mark.caffe
@pytest.mark.parametrize("policy", POLICIES)
def test_schedule_math_matches_the_lr_real_caffe_prints(policy, caffe_install, tmp_path):
    (tmp_path / "net.prototxt").write_text(DUMMY_NET)
    opts = SolverOptions(base_lr=0.0123, lr_policy=policy, max_iter=30, net="net.prototxt", test_iter=1,
                         test_interval=1000, display=1, random_seed=1, **SHORT_RUNS[policy])
    (tmp_path / "solver.prototxt").write_text(render_solver(opts))
    proc = subprocess.run([str(caffe_install.binary), "train", "-solver", "solver.prototxt"], cwd=tmp_path,
                          capture_output=True, text=True, env=caffe_install.env(threads=1), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = {int(it): lr for it, lr in LR_LINE.findall(proc.stderr)}
    assert sorted(printed) == list(range(30))
    params = opts.policy_params()
    ours = {it: format_lr(learning_rate(policy, it, opts.base_lr, max_iter=30, **params)) for it in printed}
    assert ours == printed
    assert policy == "fixed" or len(set(printed.values())) > 3  # the run really exercised the schedule
