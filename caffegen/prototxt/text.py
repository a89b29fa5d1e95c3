"""Strings and numbers as protobuf text format: every value a template writes goes through these filters, so no
path can end a string literal and inject a field."""
from __future__ import annotations

import math
import os
from typing import Any

from ..errors import InputError

__all__ = ["prototxt_string", "prototxt_number", "prototxt_bool"]


def prototxt_string(value: Any) -> str:
    """``value`` as a double-quoted protobuf text-format string literal (quotes included).

    Backslash, double quote and control characters are escaped, so no path can end the literal and
    inject a field; non-ASCII text stays as UTF-8, which both caffe_pb2 and Caffe's C++ parser read back
    unchanged. A NUL byte or text that is not valid Unicode (undecodable file names) cannot be a Caffe
    path, so it is refused.
    """
    s = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if "\x00" in s:
        raise InputError(f"{s!r} contains a NUL byte, which no Caffe path or name can hold")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{s!r} is not valid UTF-8 text ({exc.reason}); rename it") from None
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def prototxt_number(value: Any) -> str:
    """Shortest text that reads back as the same number (``0.01``, ``104.0``, ``1e-05``)."""
    if isinstance(value, bool):
        raise TypeError("booleans are not numbers in prototxt")
    if isinstance(value, int):
        return str(value)
    x = float(value)
    if not math.isfinite(x):
        raise InputError(f"{value!r} is not a finite number")
    return repr(x)


def prototxt_bool(value: Any) -> str:
    return "true" if value else "false"
