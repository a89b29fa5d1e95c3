"""Caffe training logs -> curves: the parse stage.

Two engines read one format. The reference (:mod:`.reference`) reads every dialect line by line and never
raises on odd text; the native scanner (:mod:`.native`, a small C library built with the system compiler) reads
the regular subset about 20x faster and declines everything else, which the reference then reads. Both give the
same :class:`Curves` (tested on every fixture and on mutated logs). :class:`LogFollower` runs the reference's
handlers one line at a time for live monitoring.

* :mod:`.reference`  the line-by-line parser (every dialect) and :class:`LogFollower`'s handlers;
* :mod:`.native`     the C scanner of the regular subset, through ctypes;
* :mod:`.curves`     :class:`Curves`: the train and test tables, their series, the metric names;
* :mod:`.follower`   :class:`LogFollower`: a growing log read as it is written (one parser for batch and live);
* :mod:`.writers`    the ``.train`` / ``.test`` CSV and JSON outputs.

    curves = parse_log("runs/default/lr0.01_step/train.log")            # engine="auto"
    curves.engine                                                       # "native" or "lines": which one read it
    write_outputs(curves, "train.log", "out/")                          # .train / .test CSV + .json
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from ..errors import InputError
from .curves import BASE_COLUMNS, TOP1, TOP5, Curves, Table, accuracy_name, best, is_loss_metric
from .follower import LogFollower, LogTail
from .reference import default_year, parse_file, parse_lines
from .writers import write_outputs

__all__ = ["parse_log", "write_outputs", "LogFollower", "LogTail", "Curves", "Table", "BASE_COLUMNS", "TOP1", "TOP5",
           "accuracy_name", "best", "is_loss_metric", "ENGINES", "NATIVE_MIN_BYTES"]

ENGINES = ("auto", "native", "lines")
NATIVE_MIN_BYTES = 1 << 20  # "auto" offers files this big to the native scanner (below, loading it costs more)


def parse_log(source: str | os.PathLike | Iterable[str], *, year: int | None = None,
              engine: Literal["auto", "native", "lines"] = "auto") -> Curves:
    """Parse a Caffe log (a path, or an iterable of lines) into :class:`Curves`.

    ``engine``: ``"lines"`` reads with the reference parser; ``"native"`` offers the file to the native scanner
    first, whatever its size; ``"auto"`` (the default) does that for files of :data:`NATIVE_MIN_BYTES` or more. A
    file the scanner declines, lines given as an iterable, and a machine where the scanner cannot be built all go
    to the reference; ``Curves.engine`` says which one read the log. ``year`` is used for glog prefixes without
    one (default: the file's ctime year, as parse_log.py takes it)."""
    if engine not in ENGINES:
        raise InputError(f"unknown log engine {engine!r} (valid: {', '.join(ENGINES)})")
    if not isinstance(source, (str, os.PathLike)):
        return parse_lines(source, year)
    path = Path(source)
    if not path.is_file():
        raise InputError(f"no such log file: {path}")
    try:
        year = year or default_year(path)
        if engine == "native" or (engine == "auto" and path.stat().st_size >= NATIVE_MIN_BYTES):
            from . import native

            lib = native.load()
            if lib is not None:
                from .native.scan import scan_file

                curves = scan_file(lib, path, year)
                if curves is not None:
                    return curves
        return parse_file(path, year)
    except OSError as exc:
        raise InputError(f"cannot read log {path}: {exc.strerror or exc}") from None
