"""The spec typed once: every value of every table and every axis checked against the type of the field it sets,
before anything is written. A quoted number where Caffe expects a number, a float where it expects an integer, a
number where it expects a name: one line naming the table, the key and the value (exit 2), never a prototxt that
Caffe refuses at launch, nor a report that sorts strings against numbers after every run has finished.

The types come from the fields themselves (:class:`~caffegen.prototxt.options.NetOptions`, ``SolverOptions``,
``UserNet``, ``DataSpec``, ``RunSettings``), so a new option is typed by declaring it; a user net's other solver
fields are typed by Caffe's own schema (``SolverParameter``). Ranges (``base_lr > 0``, ``crop <= resize``) stay the
dataclasses' own checks. Pure functions.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..errors import InputError

__all__ = ["field_types", "typed", "typed_table", "typed_proto"]


def field_types(cls: type) -> dict[str, str]:
    """Each field of a dataclass and its annotation (a string: the modules use postponed annotations)."""
    return {f.name: str(f.type) for f in dataclasses.fields(cls)}


def _article(what: str) -> str:
    return "an" if what[0] in "aeiou" else "a"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _scalar(where: str, value: Any, kind: str) -> Any:
    def bad(what: str) -> InputError:
        return InputError(f"{where} = {_toml(value)} is not {_article(what)} {what}"
                          + (" (a quoted number is text: write it without quotes)" if isinstance(value, str) and
                             what in ("number", "integer") and _numeric_text(value) else ""))

    if kind == "int":
        if _number(value) and float(value).is_integer():
            return int(value)
        raise bad("integer")
    if kind == "float":
        if _number(value):
            return float(value)
        raise bad("number")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise bad("true or false")
    if kind == "str" or kind.startswith("Literal["):
        if isinstance(value, str):
            return value
        raise bad("name in quotes" if kind.startswith("Literal[") else "text in quotes")
    if kind.startswith("dict"):
        if isinstance(value, dict):
            return value
        raise bad("table")
    return value  # Any / object


def _toml(value: Any) -> str:
    """A value as the spec spells it (``"0.1"``, ``true``, ``[1, 2]``)."""
    import json

    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _numeric_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def typed(where: str, value: Any, annotation: str) -> Any:
    """``value`` checked against a field's annotation and normalised (an int for a float field becomes a float, an
    integral float for an int field an int, a list for a tuple field a tuple); one InputError line naming
    ``where`` (``"my.toml: [solver] base_lr"``) otherwise."""
    kinds = [k.strip() for k in annotation.split(" | ")]
    if value is None and "None" in kinds:
        return None
    kind = next(k for k in kinds if k != "None")
    if kind.startswith("tuple["):
        inner = kind[len("tuple["):].split(",")[0].strip()
        items = value if isinstance(value, (list, tuple)) else [value]
        if not items:
            raise InputError(f"{where} = {_toml(value)} is empty")
        return tuple(_scalar(where, v, inner) for v in items)
    return _scalar(where, value, kind)


def typed_table(where: str, values: dict[str, Any], types: dict[str, str]) -> dict[str, Any]:
    """Every known key of a table typed (:func:`typed`); keys not in ``types`` are left as they are (the caller
    names unknown keys with its own hint)."""
    return {k: typed(f"{where} {k}", v, types[k]) if k in types else v for k, v in values.items()}


_PROTO_KIND = {"CPPTYPE_INT32": "int", "CPPTYPE_INT64": "int", "CPPTYPE_UINT32": "int", "CPPTYPE_UINT64": "int",
               "CPPTYPE_FLOAT": "float", "CPPTYPE_DOUBLE": "float", "CPPTYPE_BOOL": "bool",
               "CPPTYPE_STRING": "str", "CPPTYPE_ENUM": "str"}


def typed_proto(where: str, value: Any, desc: Any, repeated: bool) -> Any:
    """A value for a protobuf field (a user net's solver field beyond caffegen's options), typed by Caffe's schema:
    an enum takes one of its names."""
    cpp = {v: k for k, v in vars(type(desc)).items() if k.startswith("CPPTYPE_")}.get(desc.cpp_type, "")
    kind = _PROTO_KIND.get(cpp, "Any")
    if repeated:
        items = value if isinstance(value, (list, tuple)) else [value]
        return [typed_proto(where, v, desc, False) for v in items]
    out = _scalar(where, value, kind)
    if desc.enum_type is not None:
        names = list(desc.enum_type.values_by_name)
        if out.upper() not in names:
            raise InputError(f"{where} = {_toml(value)} is not one of {', '.join(names)}")
    return out
