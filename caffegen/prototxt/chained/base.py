"""What a schedule Caffe lacks is, as a plug-in: the solver fields it reads, its defaults over a run of N
iterations, the check of its parameters, its lr as its formula defines it, and the chain of Caffe's own policies
that trains it (:class:`~.pieces.Piece` s). Pure: no Caffe, no files."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ...errors import InputError
from ..knobs import NoKnobs, knob, knob_names
from .pieces import Piece

__all__ = ["Chained", "ToMinLr", "ToMinLrKnobs"]


class Chained:
    """One chained schedule. Subclasses set ``name`` and ``Knobs`` and implement ``defaults``, ``ideal`` and
    ``pieces`` (``check`` when a parameter has a range); the registry (:mod:`caffegen.prototxt.chained`) makes every
    caller see it: ``--policy``, the spec's typing, ``caffegen schedule``, the report, the chain runner.

    ``Knobs``: its parameters, a dataclass of :func:`~caffegen.prototxt.knobs.knob` s (help, shown default, lowest
    value); :class:`~caffegen.prototxt.options.SolverOptions` has a field and the CLI a flag for each (``params``:
    their names); ``planned`` False: a schedule decided as the run goes (the chain runner asks
    :meth:`next_piece` at each segment's end); ``stretched``: an extension stretches what is left to the new end
    (a schedule defined by the run's length), else ``extends`` says how it goes on; ``warmup``: ``<name>+warmup``
    is allowed."""

    name: ClassVar[str] = ""
    Knobs: ClassVar[type] = NoKnobs
    params: ClassVar[tuple[str, ...]] = ()
    planned: ClassVar[bool] = True
    stretched: ClassVar[bool] = False
    extends: ClassVar[str] = "the schedule continues as it was defined"
    warmup: ClassVar[bool] = True

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.params = knob_names(cls.Knobs)

    def defaults(self, max_iter: int, base_lr: float) -> dict[str, Any]:
        """The parameters that make it a fair contender over ``max_iter`` iterations."""
        return {}

    def check(self, name: str, base_lr: float, max_iter: int, p: dict[str, Any]) -> None:
        """One InputError line for a parameter out of range (``name``: as the user wrote it, warm-up included)."""

    def ideal(self, base_lr: float, max_iter: int, p: dict[str, Any], its: np.ndarray) -> np.ndarray:
        """The lr as the formula defines it at iterations ``its`` (what the chain approximates)."""
        raise NotImplementedError

    def pieces(self, base_lr: float, max_iter: int, p: dict[str, Any], *, start: int, tol: float) -> list[Piece]:
        """The chain from iteration ``start`` (after a warm-up: 0 without one) to ``max_iter``; ``tol``: how far
        (in lr) a polyline may stray from a smooth curve."""
        raise NotImplementedError

    def next_piece(self, base_lr: float, p: dict[str, Any], tests, maximize: bool, *, at: int, max_iter: int,
                   test_interval: int) -> Piece:
        """An unplanned schedule's piece from iteration ``at``, given the test passes so far."""
        raise NotImplementedError

    def describe(self) -> tuple[str, str]:
        """(its default parameters over N iterations, where lr ends) as ``--help`` and the docs print them."""
        return ("", "")

    @staticmethod
    def check_min_lr(name: str, base_lr: float, p: dict[str, Any]) -> None:
        if not 0 <= p["min_lr"] < base_lr:
            raise InputError(f"{name}: min_lr {p['min_lr']:g} must be >= 0 and below base_lr {base_lr:g}")


@dataclass(frozen=True)
class ToMinLrKnobs:
    min_lr: float | None = knob(None, "the lr at the end (of each cycle).", derived="0", minimum=0)


class ToMinLr(Chained):
    """A schedule that decays to ``min_lr`` (0 by default, below base_lr): linear, cosine, sgdr's cycles."""

    Knobs = ToMinLrKnobs

    def defaults(self, max_iter: int, base_lr: float) -> dict[str, Any]:
        return {"min_lr": 0.0}

    def check(self, name: str, base_lr: float, max_iter: int, p: dict[str, Any]) -> None:
        self.check_min_lr(name, base_lr, p)
