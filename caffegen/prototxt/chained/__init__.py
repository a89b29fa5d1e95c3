"""The schedules Caffe lacks as plug-ins: one module each, one registry (the shape of :mod:`..policies`).

* :mod:`.base`    :class:`~.base.Chained`: its fields, defaults, check, its lr as defined, the chain that trains it;
* :mod:`.pieces`  what chains are made of: :class:`~.pieces.Piece`, a line, a polyline;
* :mod:`.linear`, :mod:`.cosine`, :mod:`.sgdr`, :mod:`.onecycle`, :mod:`.triangular`, :mod:`.plateau`: one each.

:data:`REGISTRY` maps a name to its schedule; :mod:`caffegen.prototxt.chains` (names, warm-ups, defaults, checks,
pieces, the ideal curve, the help table) reads it at every call and switches on no name. Adding a schedule is one
module and :func:`register` (docs/schedules.md walks through one); a schedule with a knob of its own (a ``Knobs``
field no other schedule has) comes in through the ``caffegen.schedules`` entry point of its package, loaded here,
before :class:`~caffegen.prototxt.options.SolverOptions` makes a field and a flag of each knob.
"""
from __future__ import annotations

import sys

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
    options = sys.modules.get("caffegen.prototxt.options")
    if options is not None and hasattr(options, "SolverOptions"):
        new = set(schedule.params) - set(options.SolverOptions.__dataclass_fields__)
        if new:
            raise ValueError(f"schedule {schedule.name!r}: its knobs {', '.join(sorted(new))} have no solver field: "
                             "a schedule with knobs of its own is registered through the caffegen.schedules entry "
                             "point (loaded before the options are built), not at run time")
    REGISTRY[schedule.name] = schedule
    return schedule


def unregister(name: str) -> None:
    """Forget a schedule (a test's own)."""
    REGISTRY.pop(name, None)


for _schedule in (Linear(), Cosine(), Sgdr(), OneCycle(), Triangular(), Plateau()):
    register(_schedule)


def _plugins() -> None:
    """The schedules other packages declare (``[project.entry-points."caffegen.schedules"]``: a Chained subclass or
    instance each). One that fails to load: one line naming it and exit 2."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="caffegen.schedules"):
        try:
            obj = ep.load()
            register(obj() if isinstance(obj, type) else obj)
        except Exception as exc:  # noqa: BLE001 - any plug-in failure is reported the same way
            print(f"caffegen: error: schedule plug-in {ep.name} ({ep.value}) does not load: {exc}", file=sys.stderr)
            raise SystemExit(2) from None


_plugins()
