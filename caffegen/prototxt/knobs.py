"""A knob is a dataclass field with its one-line help: the CLI makes a flag of it (:mod:`caffegen.commands.options`),
``--help`` prints its default and help, the spec types its values, and its owner checks it.

Each schedule owns its parameters as a small dataclass of knobs (``Knobs`` on :class:`~.policies.base.Policy` and
:class:`~.chained.base.Chained`); :func:`merged` makes one solver field of each name the schedules declare, with the
help of each owner, so that :class:`~.options.SolverOptions` (and the flags) are built from the schedules and a
schedule with a parameter of its own is still one file. Pure.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from ..checks import as_float, as_int, as_tuple
from ..errors import InputError

__all__ = ["knob", "NoKnobs", "knob_names", "merged", "coerce"]


def knob(default: Any, help: str, *, flag: str | None = None, derived: str | None = None,  # noqa: A002
         minimum: float | None = None) -> Any:
    """A dataclass field with its CLI help: ``flag`` when it differs from ``--field-name``, ``derived`` the text
    shown as the default of a field whose ``None`` means "derived", ``minimum`` the lowest value it takes."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "derived": derived,
                                                        "minimum": minimum})


@dataclasses.dataclass(frozen=True)
class NoKnobs:
    """A schedule without parameters (fixed)."""


def knob_names(knobs: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(knobs))


def merged(owners: Iterable[tuple[str, type]]) -> list[tuple[str, str, dataclasses.Field]]:
    """One ``(name, type, field)`` per knob name that the ``(schedule, Knobs)`` pairs declare, in their order: its
    help names each schedule that reads it (``step, multistep: ...; exp: ...``), its shown default is theirs when
    they agree ("per schedule" when not). Two schedules that give one name two types: a ValueError (a plug-in bug)."""
    by_name: dict[str, list[tuple[str, dataclasses.Field]]] = {}
    for schedule, knobs in owners:
        for f in dataclasses.fields(knobs):
            by_name.setdefault(f.name, []).append((schedule, f))
    out = []
    for name, fields in by_name.items():
        types = {str(f.type) for _, f in fields}
        if len(types) > 1:
            raise ValueError(f"schedule knob {name!r} has two types: "
                             + ", ".join(f"{s} {f.type}" for s, f in fields))
        helps: dict[str, list[str]] = {}
        for schedule, f in fields:
            helps.setdefault(f.metadata.get("help", ""), []).append(schedule)
        text = "; ".join(f"{', '.join(s)}: {h.rstrip('.')}" if h else ", ".join(s) for h, s in helps.items()) + "."
        derived = {f.metadata.get("derived") for _, f in fields}
        minimum = {f.metadata.get("minimum") for _, f in fields}
        first = fields[0][1]
        out.append((name, str(first.type), knob(first.default, text, flag=first.metadata.get("flag"),
                                                 derived=derived.pop() if len(derived) == 1 else "per schedule",
                                                 minimum=min((m for m in minimum if m is not None), default=None))))
    return out


def coerce(name: str, kind: str, value: Any, minimum: float | None) -> Any:
    """A knob's value as its type (``int``, ``float``, ``tuple[int, ...]``), at least ``minimum``: one InputError
    line naming it otherwise."""
    if value is None:
        return None
    if kind.startswith("tuple"):
        values = tuple(as_int(name, v, int(minimum or 0)) for v in as_tuple(value))
        if not values:
            raise InputError(f"{name} needs at least one value")
        return values
    if kind.startswith("int"):
        return as_int(name, value, int(minimum) if minimum is not None else -(2 ** 63))
    if minimum is None:
        return as_float(name, value)
    return as_float(name, value, ge=minimum)
