"""Caffe's learning-rate policies, in Python: the math of ``SGDSolver::GetLearningRate`` (Caffe 1.0).

Why a port and not a formula sheet: the preview (``caffegen schedule``) and the sweep's default policy
parameters must show exactly what ``caffe train`` will do, including its quirks:

* solver parameters are protobuf ``float`` fields, so ``base_lr``, ``gamma`` and ``power`` are rounded
  to float32 before any math (``0.1`` is really ``0.100000001``);
* ``step`` uses integer division ``iter / stepsize``; ``pow(gamma, n)`` runs in double;
* ``multistep`` keeps a ``current_step_`` counter that advances by at most one per iteration when
  ``iter >= stepvalue[current_step_]`` (so a non-increasing list is honoured the way Caffe does);
* ``inv``, ``poly`` and ``sigmoid`` form their bases in float arithmetic;
* the result is stored in a float (``Dtype rate``) and printed by glog with 6 significant digits.

Everything here is pure: no Caffe, no files (``caffegen.report.figures.plot_schedules`` draws the curves).
"""
from __future__ import annotations

import math
import struct
from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..checks import as_choice

POLICIES: tuple[str, ...] = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")

# Which SolverParameter fields each policy reads (everything else is left out of its solver).
POLICY_PARAMS: dict[str, tuple[str, ...]] = {
    "fixed": (),
    "step": ("gamma", "stepsize"),
    "exp": ("gamma",),
    "inv": ("gamma", "power"),
    "multistep": ("gamma", "stepvalue"),
    "poly": ("power",),
    "sigmoid": ("gamma", "stepsize"),
}

# The targets the defaults are derived from; docs/render.md and the --help texts quote these.
STEP_GAMMA = 0.1            # step / multistep: divide by 10 at each step
EXP_END_RATIO = 1e-3        # exp: base_lr/1000 at max_iter
INV_POWER = 0.75            # inv: Caffe's LeNet example power ...
INV_END_RATIO = 0.1         # ... with gamma chosen so that lr reaches base_lr/10 at max_iter
POLY_POWER = 1.0            # poly: linear decay to 0 at max_iter
SIGMOID_END_RATIO = 1e-3    # sigmoid: centred at max_iter/2, ~base_lr at 0 and ~base_lr/1000 at max_iter


def resolve_policy(name: str) -> str:
    """The canonical name of one of Caffe's own seven policies (case-insensitive); an unknown name names the nearest
    one. Every schedule, the chained ones too: :func:`caffegen.prototxt.chains.resolve_schedule`."""
    return as_choice("lr_policy", name, POLICIES, also="or 'all'")


def policy_defaults(policy: str, max_iter: int) -> dict:
    """Policy parameters that make ``policy`` a fair contender over ``max_iter`` iterations.

    step: gamma 0.1 after each third of the run (stepsize = ceil(max_iter / 3): two drops, ending at
    base_lr/100); exp: gamma with
    gamma**max_iter = 1/1000; inv: power 0.75, gamma with (1 + gamma*max_iter)**-0.75 = 1/10;
    multistep: gamma 0.1 at 1/2 and 3/4 of the run; poly: power 1 (linear to 0); sigmoid: centred at
    max_iter/2 (stepsize) with gamma = -2*ln(999)/max_iter (about base_lr at 0, base_lr/1000 at the end).
    """
    policy = resolve_policy(policy)
    n = int(max_iter)
    if n < 1:
        raise InputError(f"max_iter must be >= 1, got {max_iter}")
    if policy == "fixed":
        return {}
    if policy == "step":
        return {"gamma": STEP_GAMMA, "stepsize": max(1, math.ceil(n / 3))}
    if policy == "exp":
        return {"gamma": EXP_END_RATIO ** (1.0 / n)}
    if policy == "inv":
        return {"gamma": (INV_END_RATIO ** (-1.0 / INV_POWER) - 1.0) / n, "power": INV_POWER}
    if policy == "multistep":
        values = sorted({max(1, n // 2), max(1, (3 * n) // 4)})
        return {"gamma": STEP_GAMMA, "stepvalue": values}
    if policy == "poly":
        return {"power": POLY_POWER}
    # sigmoid: lr = base / (1 + exp(-gamma (it - stepsize))); at it = 0 and it = n the ratio is 999:1.
    return {"gamma": -2.0 * math.log(1.0 / SIGMOID_END_RATIO - 1.0) / n, "stepsize": max(1, n // 2)}


def _f32(x: float) -> float:
    """Round to float32 the way a protobuf float field / a C++ float variable does."""
    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:  # beyond float32 range: C++ gives +-inf
        return math.copysign(math.inf, x)


def _multistep_switches(stepvalue: Sequence[int]) -> list[int]:
    """Iterations at which Caffe's ``current_step_`` advances (at most once per iteration)."""
    switches, prev = [], -1
    for value in stepvalue:
        prev = max(int(value), prev + 1)
        switches.append(prev)
    return switches


def learning_rate(policy: str, it: int, base_lr: float, *, gamma: float = 0.0, stepsize: int = 0,
                  stepvalue: Sequence[int] = (), power: float = 0.0, max_iter: int = 0) -> float:
    """The lr Caffe's ``caffe train`` (float solver) uses at iteration ``it``; see the module docstring."""
    policy = resolve_policy(policy)
    base, g, p = _f32(base_lr), _f32(gamma), _f32(power)
    it = int(it)
    if policy == "fixed":
        rate = base
    elif policy == "step":
        if stepsize <= 0:
            raise InputError("lr_policy step needs stepsize >= 1")
        rate = base * g ** (it // int(stepsize))
    elif policy == "exp":
        rate = base * g ** it
    elif policy == "inv":
        rate = base * _f32(1.0 + _f32(g * it)) ** (-p)
    elif policy == "multistep":
        current = sum(1 for t in _multistep_switches(stepvalue) if t <= it)
        rate = base * g ** current
    elif policy == "poly":
        if max_iter <= 0:
            raise InputError("lr_policy poly needs max_iter >= 1")
        rate = base * _f32(1.0 - _f32(it / max_iter)) ** p
    else:  # sigmoid
        arg = _f32(-g * _f32(float(it) - float(stepsize)))
        e = _f32(math.exp(arg)) if arg < 700.0 else math.inf
        rate = base * _f32(1.0 / _f32(1.0 + e))
    return _f32(rate)


def lr_curve(policy: str, base_lr: float, max_iter: int, *, gamma: float = 0.0, stepsize: int = 0,
             stepvalue: Sequence[int] = (), power: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(iterations 0..max_iter-1, lr at each) computed with numpy, equal to :func:`learning_rate`."""
    policy = resolve_policy(policy)
    f32 = np.float32
    its = np.arange(int(max_iter), dtype=np.int64)
    base, g, p = float(f32(base_lr)), float(f32(gamma)), float(f32(power))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        if policy == "fixed":
            rate = np.full(its.shape, base)
        elif policy == "step":
            if stepsize <= 0:
                raise InputError("lr_policy step needs stepsize >= 1")
            rate = base * np.power(g, (its // int(stepsize)).astype(np.float64))
        elif policy == "exp":
            rate = base * np.power(g, its.astype(np.float64))
        elif policy == "inv":
            inner = (f32(1.0) + (f32(g) * its.astype(f32))).astype(np.float64)
            rate = base * np.power(inner, -p)
        elif policy == "multistep":
            switches = np.asarray(_multistep_switches(stepvalue), dtype=np.int64)
            current = np.searchsorted(switches, its, side="right")
            rate = base * np.power(g, current.astype(np.float64))
        elif policy == "poly":
            if max_iter <= 0:
                raise InputError("lr_policy poly needs max_iter >= 1")
            frac = (its.astype(np.float64) / max_iter).astype(f32)
            inner = (f32(1.0) - frac).astype(np.float64)
            rate = base * np.power(inner, p)
        else:
            arg = (f32(-g) * (its.astype(f32) - f32(stepsize))).astype(np.float64)
            e = np.exp(arg).astype(f32)
            denom = (f32(1.0) + e).astype(np.float64)
            rate = base * (1.0 / denom).astype(f32).astype(np.float64)
    return its, rate.astype(f32).astype(np.float64)


def format_lr(value: float) -> str:
    """How glog prints a float lr (``ostream <<`` default: 6 significant digits, like ``%g``)."""
    return f"{value:g}"


def describe_policy_defaults() -> list[tuple[str, str, str]]:
    """(policy, its default parameters over N iterations, where lr ends) for each policy, from the constants
    above: the table ``--help`` and the docs print."""
    def ratio(r: float) -> str:
        return f"base_lr/{1 / r:g}"

    inv_gamma = f"({1 / INV_END_RATIO:g}^(1/{INV_POWER:g}) - 1)/N"
    return [
        ("fixed", "lr = base_lr", "base_lr"),
        ("step", f"--gamma {STEP_GAMMA:g}, --stepsize ceil(N/3)", ratio(STEP_GAMMA ** 2)),
        ("exp", f"--gamma ({EXP_END_RATIO:g})^(1/N)", ratio(EXP_END_RATIO)),
        ("inv", f"--power {INV_POWER:g}, --gamma {inv_gamma}", ratio(INV_END_RATIO)),
        ("multistep", f"--gamma {STEP_GAMMA:g}, --stepvalue N/2,3N/4", ratio(STEP_GAMMA ** 2)),
        ("poly", f"--power {POLY_POWER:g} (linear)" if POLY_POWER == 1 else f"--power {POLY_POWER:g}", "0"),
        ("sigmoid", f"--stepsize N/2, --gamma -2 ln({1 / SIGMOID_END_RATIO - 1:g})/N", "~" + ratio(SIGMOID_END_RATIO)),
    ]
