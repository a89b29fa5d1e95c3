"""The schedules Caffe lacks as plug-ins: one module each, one registry (the shape of :mod:`..policies`).

* :mod:`.base`    :class:`~.base.Chained`: its fields, defaults, check, its lr as defined, the chain that trains it;
* :mod:`.pieces`  what chains are made of: :class:`~.pieces.Piece`, a line, a polyline;
* :mod:`.linear`, :mod:`.cosine`, :mod:`.sgdr`, :mod:`.onecycle`, :mod:`.triangular`, :mod:`.plateau`: one each.

:data:`REGISTRY` maps a name to its schedule; :mod:`caffegen.prototxt.chains` (names, warm-ups, defaults, checks,
pieces, the ideal curve, the help table) reads it at every call and switches on no name. Adding a schedule is one
module and :func:`register` (docs/schedules.md walks through one).
"""
from __future__ import annotations

from .base import Chained
from .cosine import Cosine
from .linear import Linear
from .onecycle import OneCycle
from .pieces import Piece
from .plateau import Plateau
from .sgdr import Sgdr
from .triangular import Triangular

__all__ = ["REGISTRY", "register", "unregister", "Chained", "Piece"]

REGISTRY: dict[str, Chained] = {}


def register(schedule: Chained) -> Chained:
    """Make ``schedule`` known to every caller (``--policy``, the spec, ``caffegen schedule``, the chain runner)."""
    from ..schedule import POLICIES

    if not schedule.name or schedule.name in POLICIES or "+" in schedule.name:
        raise ValueError(f"a chained schedule needs a new name (not one of Caffe's, no '+'): {schedule.name!r}")
    REGISTRY[schedule.name] = schedule
    return schedule


def unregister(name: str) -> None:
    """Forget a schedule (a test's own)."""
    REGISTRY.pop(name, None)


for _schedule in (Linear(), Cosine(), Sgdr(), OneCycle(), Triangular(), Plateau()):
    register(_schedule)
