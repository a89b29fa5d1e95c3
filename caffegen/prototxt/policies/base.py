"""What one of Caffe's lr policies is, as a plug-in: the fields of ``SolverParameter`` it reads, its default
parameters over a run of N iterations, the lr ``caffe train`` computes at an iteration (a scalar, and a vectorised
curve equal to it), and how its defaults read in ``--help``.

The math ports ``SGDSolver::GetLearningRate`` (Caffe 1.0) with its float32 quirks: solver parameters are protobuf
``float`` fields, so ``base_lr``, ``gamma`` and ``power`` are rounded to float32 before any math, and the result is
stored in a float (:func:`f32`). Pure: no Caffe, no files.
"""
from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..knobs import NoKnobs, knob_names

__all__ = ["Policy", "Params", "f32", "multistep_switches"]


@dataclass(frozen=True)
class Params:
    """The solver fields a policy may read (float32-rounded where Caffe's are floats)."""

    base_lr: float
    gamma: float = 0.0
    stepsize: int = 0
    stepvalue: Sequence[int] = ()
    power: float = 0.0
    max_iter: int = 0


def f32(x: float) -> float:
    """Round to float32 the way a protobuf float field / a C++ float variable does."""
    try:
        return struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:  # beyond float32 range: C++ gives +-inf
        return math.copysign(math.inf, x)


def multistep_switches(stepvalue: Sequence[int]) -> list[int]:
    """Iterations at which Caffe's ``current_step_`` advances (at most once per iteration)."""
    switches, prev = [], -1
    for value in stepvalue:
        prev = max(int(value), prev + 1)
        switches.append(prev)
    return switches


class Policy:
    """One of Caffe's ``lr_policy`` values. Subclasses set ``name`` and ``Knobs`` (a dataclass of
    :func:`~caffegen.prototxt.knobs.knob` s: the SolverParameter fields it reads, with their help) and implement
    ``defaults``, ``rate`` and ``curve`` (``check`` when a parameter has a range); the registry
    (:mod:`caffegen.prototxt.policies`) makes every caller see it."""

    name: ClassVar[str] = ""
    Knobs: ClassVar[type] = NoKnobs
    stretched: ClassVar[bool] = False     # Caffe computes it from max_iter: a longer run stretches what is left
    fields: ClassVar[tuple[str, ...]] = ()      # the Knobs' names: the fields its solver writes (the others are left out)

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.fields = knob_names(cls.Knobs)

    def check(self, p: dict[str, Any]) -> None:
        """One InputError line for a parameter Caffe would refuse or misread."""

    def defaults(self, max_iter: int) -> dict[str, Any]:
        """Parameters that make this policy a fair contender over ``max_iter`` iterations."""
        return {}

    def rate(self, it: int, p: Params) -> float:
        """The lr at iteration ``it`` (before the final float32 store)."""
        raise NotImplementedError

    def curve(self, its: np.ndarray, p: Params) -> np.ndarray:
        """The lr at each of ``its`` (float64, before the final float32 store), equal to :meth:`rate`."""
        raise NotImplementedError

    def describe_defaults(self) -> tuple[str, str]:
        """(its default parameters over N iterations, where lr ends) as ``--help`` and the docs print them."""
        return ("lr = base_lr", "base_lr")
