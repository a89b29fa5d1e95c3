"""One pass of ``logscan.c`` over a log file -> :class:`~caffegen.logs.curves.Curves`, or None when it declines.

C reads the file in 256 KB blocks (memory: one block plus the cells, not the file) and keeps the tables in C
memory: a :class:`NativeTable` reads columns out of it on demand, and writes its CSV/JSON rows with the C writer,
from each number's own text in the log (what makes a million-line log cheap to write out).
"""
from __future__ import annotations

import csv
import ctypes
import functools
import os
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from ..curves import BASE_COLUMNS, Curves, Table, is_loss_metric
from ..reference import CHUNK, Clock, end_micros, plain_cut_line, truncated_tail

__all__ = ["scan_file", "NativeTable"]

_PARTIAL_BAD = ("\r", "\0")


def scan_file(lib: ctypes.CDLL, path: Path, year: int) -> Curves | None:
    """The curves of the log at ``path``, or None when the scanner declines (anything it does not model exactly;
    see the comment atop logscan.c): then the reference parser reads it."""
    scan = _Scan(lib)
    pos = (ctypes.c_int64 * 2)()
    if lib.ls_scan_file(scan.ctx, os.fsencode(path), year, CHUNK, pos) != 0:
        return None
    total, whole_end = pos
    start = max(0, min(whole_end, total - 4096))
    with path.open("rb") as fh:  # the unterminated last line and the last 4 KB, as the scan read them
        fh.seek(start)
        tail = fh.read(total - start)
    if len(tail) != total - start or not tail.isascii():
        return None
    partial = tail[whole_end - start:].decode()
    if not plain_cut_line(partial) or any(b in partial for b in _PARTIAL_BAD):
        return None
    info, dinfo = (ctypes.c_int64 * 11)(), (ctypes.c_double * 2)()
    lib.ls_info(scan.ctx, info, dinfo)
    n_train, n_test, nc_train, nc_test, segment, max_iter, has_start, start_us, max_month, nonfinite, nloss = info
    clock = Clock(year)
    clock.last_month = max_month
    clock.start_us = start_us if has_start else None
    clock.last_us = end_micros(clock, tail[-4096:].decode(), total <= 4096)
    if clock.year != year:  # the last lines went back a month: a year roll-over is the reference parser's business
        return None
    its, vals = array("q", bytes(8 * nloss)), array("d", bytes(8 * nloss))
    if nloss:
        lib.ls_loss(scan.ctx, (ctypes.c_int64 * nloss).from_buffer(its), (ctypes.c_double * nloss).from_buffer(vals))
    tables = []
    for t, (n, ncols) in enumerate(((n_train, nc_train), (n_test, nc_test))):
        outs = [lib.ls_colname(scan.ctx, t, k).decode() for k in range(ncols)]
        tables.append(NativeTable(scan, t, n, outs, segment > 0))
    return Curves(train=tables[0], test=tables[1], segments=segment + 1, fatal_line=None,
                  truncated_tail=truncated_tail(partial), max_iter_seen=max_iter, seconds=clock.elapsed,
                  first_loss=dinfo[0] if nloss else None, last_loss=dinfo[1] if nloss else None,
                  nonfinite=bool(nonfinite), loss_log=_Pairs(its, vals), engine="native")


class _Scan:
    """One native scan's C memory (freed with the last table that reads it)."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib, self.ctx = lib, lib.ls_new()
        if not self.ctx:
            raise MemoryError("native log scanner")

    def __del__(self):
        ctx, self.ctx = getattr(self, "ctx", None), None
        if ctx:
            self.lib.ls_free(ctx)


class NativeTable(Table):
    """A :class:`~caffegen.logs.curves.Table` whose cells live in the scanner's C memory: read-only, columns read
    on demand; ``rows`` is built once on first use (``copy()`` gives an editable Table)."""

    def __init__(self, scan: _Scan, t: int, n: int, outs: list[str], segment: bool):
        self._scan, self._t, self._n = scan, t, n
        self.columns = (*BASE_COLUMNS, *outs, *(("Segment",) if segment else ()))
        # name -> (0 int / 1 float, index for ls_fetch_*): NumIters 0, Segment 1; Seconds -2, LearningRate -1
        self._index = {"NumIters": (0, 0), "Seconds": (1, -2), "LearningRate": (1, -1),
                       **{name: (1, k) for k, name in enumerate(outs)}}
        if segment:
            self._index["Segment"] = (0, 1)

    def __len__(self) -> int:
        return self._n

    def __reduce__(self):  # a pickled or deep-copied native table is a plain one: C memory does not travel
        return Table, (list(self.columns), self.rows)

    @functools.cached_property
    def rows(self) -> list[dict]:  # type: ignore[override]
        cols = [self.column(c) for c in self.columns]
        return [{k: v for k, v in zip(self.columns, vals) if v is not None} for vals in zip(*cols)]

    def column(self, name: str) -> list:
        if name not in self._index:
            return [None] * self._n
        kind, k = self._index[name]
        n, lib, ctx = self._n, self._scan.lib, self._scan.ctx
        if not n:
            return []
        if kind == 0:
            out = array("q", bytes(8 * n))
            lib.ls_fetch_int(ctx, self._t, k, (ctypes.c_int64 * n).from_buffer(out))
            return out.tolist()
        vals, present = array("d", bytes(8 * n)), bytearray(n)
        lib.ls_fetch_float(ctx, self._t, k, (ctypes.c_double * n).from_buffer(vals),
                           (ctypes.c_uint8 * n).from_buffer(present))
        if present.count(0) == 0:
            return vals.tolist()
        return [v if p else None for v, p in zip(vals.tolist(), present)]

    def series(self, name: str) -> list[tuple[int, float]]:
        if name not in self._index:
            return []
        return [(it, v) for it, v in zip(self.column("NumIters"), self.column(name)) if v is not None]

    def final_best(self, name: str) -> tuple[float | None, tuple[float, int] | None]:
        if self._index.get(name, (0, -1)) < (1, 0):  # not a net-output column: the generic way
            return super().final_best(name)
        flags, vals, at = (ctypes.c_int64 * 2)(), (ctypes.c_double * 2)(), ctypes.c_int64()
        self._scan.lib.ls_final_best(self._scan.ctx, self._t, self._index[name][1], int(is_loss_metric(name)), flags,
                                     vals, ctypes.byref(at))
        return (vals[0] if flags[0] else None), ((vals[1], at.value) if flags[1] else None)

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        with path.open("w", newline="") as fh:  # the header as the csv module writes it (quoted where needed)
            csv.writer(fh).writerow(self.columns)
        self._write(path, json=False)
        return path

    def write_json_rows(self, fh: IO[str], path: Path) -> None:
        fh.flush()
        self._write(path, json=True)  # appends one row a line, the last with its newline

    def _write(self, path: Path, json: bool) -> None:
        rc = self._scan.lib.ls_write(self._scan.ctx, self._t, int(json), os.fsencode(path))
        if rc:
            raise OSError(f"cannot write {path} (native writer: {rc})")


class _Pairs(Sequence):
    """``Curves.loss_log`` of a native scan: (iteration, loss) tuples made on access from two arrays (a
    1M-line log has a quarter million of them, and most callers never look)."""

    def __init__(self, its: array, vals: array):
        self._its, self._vals = its, vals

    def __len__(self) -> int:
        return len(self._its)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return list(zip(self._its[k].tolist(), self._vals[k].tolist()))
        return int(self._its[k]), float(self._vals[k])

    def __iter__(self):
        return zip(self._its.tolist(), self._vals.tolist())

    def __eq__(self, other) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    def __reduce__(self):
        return list, (list(self),)

    def __repr__(self) -> str:
        return repr(list(self))
