"""Click options generated from the option dataclasses' fields, so ``--help`` shows each field's own default and
help (:func:`caffegen.prototxt.options.knob`) and never restates them.

Values arrive as text and are checked by the dataclass itself, so every bad value becomes one
``caffegen: error: ...`` line and exit 2 (click's own type errors would print a usage block). An option left out
is not passed at all: the dataclass default applies.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import click

__all__ = ["dataclass_options", "pick"]


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _shown_default(f: dataclasses.Field) -> str:
    if f.metadata.get("derived"):
        return f.metadata["derived"]
    value = f.default
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if value != "" else "empty"


def _metavar(f: dataclasses.Field) -> str:
    """What the value looks like, from the field's annotation (a string: the modules use postponed annotations)."""
    kind = str(f.type)
    if kind.startswith("Literal["):
        return "|".join(part.strip(" '\"") for part in kind[len("Literal["):-1].split(","))
    for word, metavar in (("tuple", "A,B,..."), ("int", "N"), ("float", "X"), ("str", "TEXT")):
        if kind.startswith(word):
            return metavar
    return "VALUE"


def _fields(cls: type, exclude: Iterable[str], include: Iterable[str] | None = None) -> list[dataclasses.Field]:
    skip, only = set(exclude), set(include) if include is not None else None
    return [f for f in dataclasses.fields(cls) if f.name not in skip and (only is None or f.name in only)]


def dataclass_options(cls: type, exclude: Iterable[str] = (), include: Iterable[str] | None = None) -> Callable:
    """A decorator adding one option per field of ``cls`` (booleans as ``--x/--no-x``), each defaulting to None
    (``include``: only these fields)."""
    def deco(fn: Callable) -> Callable:
        for f in reversed(_fields(cls, exclude, include)):
            help_ = f"{f.metadata.get('help', '')} [default: {_shown_default(f)}]"
            flag = _flag(f)
            if isinstance(f.default, bool) or str(f.type).startswith("bool"):
                fn = click.option(f"{flag}/--no-{flag[2:]}", f.name, default=None, help=help_)(fn)
            else:
                fn = click.option(flag, f.name, default=None, metavar=_metavar(f), help=help_)(fn)
        return fn
    return deco


def pick(kwargs: dict[str, Any], cls: type, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """Pop the options of ``cls``'s fields out of a command's kwargs; only those the user gave."""
    out = {}
    for f in _fields(cls, exclude):
        value = kwargs.pop(f.name, None)
        if value is not None:
            out[f.name] = value
    return out
