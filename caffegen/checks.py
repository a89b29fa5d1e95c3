"""Coercion of user values (spec tables, CLI text, library arguments) into checked numbers and names.

Each function takes the name to report, so a bad value becomes one :class:`~caffegen.errors.InputError` line
that says which option and what was wrong (``base_lr (--lr) must be > 0, got '-1'``)."""
from __future__ import annotations

import difflib
import math
import re
from typing import Any

from .errors import InputError

__all__ = ["as_int", "as_float", "as_choice", "as_tuple", "parse_floats", "parse_lrs", "nearest"]


def as_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"{name} must be an integer, got {value!r}")
    try:
        f = float(value)
    except ValueError:
        raise InputError(f"{name} must be an integer, got {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if int(f) < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value!r}")
    return int(f)


def as_float(name: str, value: Any, *, gt: float | None = None, ge: float | None = None,
             lt: float | None = None) -> float:
    if isinstance(value, bool):
        raise InputError(f"{name} must be a number, got {value!r}")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(f):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if gt is not None and not f > gt:
        raise InputError(f"{name} must be > {gt:g}, got {value!r}")
    if ge is not None and not f >= ge:
        raise InputError(f"{name} must be >= {ge:g}, got {value!r}")
    if lt is not None and not f < lt:
        raise InputError(f"{name} must be < {lt:g}, got {value!r}")
    return f


def as_choice(name: str, value: Any, choices: tuple[str, ...], also: str = "") -> str:
    """The canonical spelling of ``value`` among ``choices`` (case-insensitive); else the nearest one in the error
    (``also``: more valid words, named in the error only, e.g. ``"or 'all'"``)."""
    by_lower = {c.lower(): c for c in choices}
    key = str(value).strip().lower()
    if key in by_lower:
        return by_lower[key]
    near = difflib.get_close_matches(key, list(by_lower), n=1, cutoff=0.0)
    hint = f"; did you mean {by_lower[near[0]]!r}?" if near else ""
    raise InputError(f"unknown {name} {value!r}{hint} (valid: {', '.join(choices)}{', ' + also if also else ''})")


def nearest(word: str, choices: set[str] | list[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing when none is close."""
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def as_tuple(value: Any) -> tuple:
    """``"64,64,128"``, a list, or one value -> a tuple (items are checked by the caller)."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    try:
        return tuple(value)
    except TypeError:
        return (value,)


def parse_floats(spec: str, what: str = "--lr") -> list[float]:
    """``"0.1,0.01,1e-3"`` -> floats; anything that is not a number is one clear InputError."""
    items = [s for s in re.split(r"[,\s]+", str(spec).strip()) if s]
    if not items:
        raise InputError(f"{what} needs at least one number")
    out = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise InputError(f"{what}: {item!r} is not a number") from None
        out.append(value)
    return out


def parse_lrs(spec: str) -> list[float]:
    """``"0.1,0.01,0.001"`` -> learning rates, each a finite number > 0 (else one InputError line)."""
    return [as_float("--lr", lr, gt=0) for lr in parse_floats(spec, "--lr")]
