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

Each policy is a plug-in (:mod:`caffegen.prototxt.policies`: one module each, a registry); this module is what
callers use, and switches on no policy's name. Everything here is pure: no Caffe, no files
(``caffegen.report.figures.plot_schedules`` draws the curves).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..checks import as_choice
from ..errors import InputError
from .policies import REGISTRY, Params
from .policies.base import f32

POLICIES: tuple[str, ...] = tuple(REGISTRY)        # Caffe's order: fixed, step, exp, inv, multistep, poly, sigmoid

# Which SolverParameter fields each policy reads (everything else is left out of its solver), and all of them.
POLICY_PARAMS: dict[str, tuple[str, ...]] = {name: policy.fields for name, policy in REGISTRY.items()}
POLICY_FIELDS: tuple[str, ...] = tuple(dict.fromkeys(f for fields in POLICY_PARAMS.values() for f in fields))


def resolve_policy(name: str) -> str:
    """The canonical name of one of Caffe's own seven policies (case-insensitive); an unknown name names the nearest
    one. Every schedule, the chained ones too: :func:`caffegen.prototxt.chains.resolve_schedule`."""
    return as_choice("lr_policy", name, POLICIES, also="or 'all'")


def policy_defaults(policy: str, max_iter: int) -> dict:
    """Policy parameters that make ``policy`` a fair contender over ``max_iter`` iterations (each policy's
    ``defaults``: step divides by 10 after each third, exp and inv reach base_lr/1000 and /10 at the end,
    multistep divides by 10 at 1/2 and 3/4, poly is linear to 0, sigmoid is centred at max_iter/2)."""
    policy = resolve_policy(policy)
    n = int(max_iter)
    if n < 1:
        raise InputError(f"max_iter must be >= 1, got {max_iter}")
    return REGISTRY[policy].defaults(n)


def check_policy(policy: str, params: dict) -> None:
    """One InputError line for a parameter ``policy`` cannot use (its plug-in's ``check``)."""
    REGISTRY[resolve_policy(policy)].check(params)


def learning_rate(policy: str, it: int, base_lr: float, *, gamma: float = 0.0, stepsize: int = 0,
                  stepvalue: Sequence[int] = (), power: float = 0.0, max_iter: int = 0) -> float:
    """The lr Caffe's ``caffe train`` (float solver) uses at iteration ``it``; see the module docstring."""
    p = Params(base_lr, gamma, stepsize, stepvalue, power, max_iter)
    return f32(REGISTRY[resolve_policy(policy)].rate(int(it), p))


def lr_curve(policy: str, base_lr: float, max_iter: int, *, gamma: float = 0.0, stepsize: int = 0,
             stepvalue: Sequence[int] = (), power: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(iterations 0..max_iter-1, lr at each) computed with numpy, equal to :func:`learning_rate`."""
    policy = resolve_policy(policy)
    its = np.arange(int(max_iter), dtype=np.int64)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        rate = REGISTRY[policy].curve(its, Params(base_lr, gamma, stepsize, stepvalue, power, int(max_iter)))
    return its, np.asarray(rate).astype(np.float32).astype(np.float64)


def format_lr(value: float) -> str:
    """How glog prints a float lr (``ostream <<`` default: 6 significant digits, like ``%g``)."""
    return f"{value:g}"


def describe_policy_defaults() -> list[tuple[str, str, str]]:
    """(policy, its default parameters over N iterations, where lr ends) for each policy: the table ``--help`` and
    the docs print."""
    return [(name, *policy.describe_defaults()) for name, policy in REGISTRY.items()]
